// French and English. Each page module exports `messages = { fr: {...}, en: {...} }`; the shell registers
// them, so a page's strings live next to its code. t('key', {n: 3}) fills {n}; a missing key shows itself.
const dictionaries = { fr: {}, en: {} };
const listeners = new Set();
let current = null;

export const LANGUAGES = ['fr', 'en'];

export function register(messages) {
  for (const lang of LANGUAGES) Object.assign(dictionaries[lang], (messages && messages[lang]) || {});
}

export function language() {
  return current || 'fr';
}

export function setLanguage(lang) {
  if (!LANGUAGES.includes(lang)) return;
  current = lang;
  localStorage.setItem('socle.lang', lang);
  document.documentElement.lang = lang;
  for (const listener of listeners) listener(lang);
}

export function initLanguage(fallback) {
  const saved = localStorage.getItem('socle.lang');
  const browser = (navigator.language || '').slice(0, 2);
  const lang = [saved, browser, fallback].find((l) => LANGUAGES.includes(l)) || 'fr';
  setLanguage(lang);
}

export function onLanguage(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function t(key, params) {
  const text = dictionaries[language()][key] ?? dictionaries.en[key] ?? key;
  if (!params) return text;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in params ? String(params[name]) : `{${name}}`));
}

// Locale-aware formatting, used by every page so figures read the same everywhere.
export function fmtNumber(value, options) {
  return value == null ? '—' : new Intl.NumberFormat(language(), options).format(value);
}

export function fmtDate(value) {
  if (!value) return '—';
  const date = typeof value === 'number' ? new Date(value * 1000) : new Date(value);
  return new Intl.DateTimeFormat(language(), { dateStyle: 'medium', timeStyle: 'short' }).format(date);
}

export function fmtMoney(value, currency = 'EUR') {
  return value == null ? '—' : new Intl.NumberFormat(language(), { style: 'currency', currency }).format(Number(value));
}
