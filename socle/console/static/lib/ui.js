// Shared building blocks: every page uses these, so the console looks and behaves the same everywhere
// (labelled controls, keyboard-reachable dialogs, errors shown in words, not codes).
import { html, useState, useEffect, useRef, useCallback } from './html.js';
import { t, register, fmtNumber } from './i18n.js';
import { ICONS } from '../vendor/icons.js';

register({
  fr: {
    'ui.loading': 'Chargement…', 'ui.empty': 'Rien à afficher.', 'ui.close': 'Fermer', 'ui.cancel': 'Annuler',
    'ui.retry': 'Réessayer', 'ui.copy': 'Copier', 'ui.copied': 'Copié', 'ui.error': 'Erreur',
    'ui.confirm': 'Confirmer', 'ui.save': 'Enregistrer', 'ui.delete': 'Supprimer', 'ui.create': 'Créer',
  },
  en: {
    'ui.loading': 'Loading…', 'ui.empty': 'Nothing to show.', 'ui.close': 'Close', 'ui.cancel': 'Cancel',
    'ui.retry': 'Retry', 'ui.copy': 'Copy', 'ui.copied': 'Copied', 'ui.error': 'Error',
    'ui.confirm': 'Confirm', 'ui.save': 'Save', 'ui.delete': 'Delete', 'ui.create': 'Create',
  },
});

// Load data; reload() to refresh. `deps` re-run it (e.g. filters).
export function useAsync(load, deps = []) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const counter = useRef(0);
  const reload = useCallback(() => {
    const run = ++counter.current;
    setState((s) => ({ ...s, loading: true, error: null }));
    Promise.resolve()
      .then(load)
      .then(
        (data) => run === counter.current && setState({ data, error: null, loading: false }),
        (error) => run === counter.current && setState({ data: null, error, loading: false }),
      );
  }, deps);
  useEffect(reload, [reload]);
  return { ...state, reload };
}

export function Page({ title, subtitle, actions, children }) {
  useEffect(() => {
    document.title = `${title} · Socle`;
  }, [title]);
  return html`<section class="page" aria-labelledby="page-title">
    <header class="page-head">
      <div>
        <h1 id="page-title">${title}</h1>
        ${subtitle && html`<p class="muted">${subtitle}</p>`}
      </div>
      ${actions && html`<div class="page-actions">${actions}</div>`}
    </header>
    ${children}
  </section>`;
}

export function ErrorBox({ error, onRetry }) {
  if (!error) return null;
  return html`<div class="error-box" role="alert">
    <strong>${t('ui.error')}${error.status ? ` ${error.status}` : ''}</strong>
    <span>${error.message || String(error)}</span>
    ${onRetry && html`<button class="btn small" onClick=${onRetry}>${t('ui.retry')}</button>`}
  </div>`;
}

export function Loading() {
  return html`<p class="muted loading" role="status">${t('ui.loading')}</p>`;
}

// Data loaded by useAsync: spinner, error with retry, or the content.
export function Async({ state, children }) {
  if (state.error) return html`<${ErrorBox} error=${state.error} onRetry=${state.reload} />`;
  if (state.loading && state.data == null) return html`<${Loading} />`;
  return children(state.data);
}

// columns: [{key, label, render?(row), numeric?}]
export function Table({ columns, rows, empty, label, rowKey = (r) => r.id }) {
  if (!rows || rows.length === 0) return html`<p class="muted empty">${empty || t('ui.empty')}</p>`;
  return html`<div class="table-wrap"><table aria-label=${label}>
    <thead><tr>${columns.map((c) => html`<th scope="col" class=${c.numeric ? 'num' : ''}>${c.label}</th>`)}</tr></thead>
    <tbody>${rows.map(
      (row) => html`<tr key=${rowKey(row)}>${columns.map(
        (c) => html`<td class=${c.numeric ? 'num' : ''} data-label=${c.label}>${c.render ? c.render(row) : row[c.key] ?? '—'}</td>`,
      )}</tr>`,
    )}</tbody>
  </table></div>`;
}

// A modal dialog (native <dialog>: focus trapped, Escape closes).
export function Dialog({ open, title, onClose, children, wide }) {
  const ref = useRef(null);
  useEffect(() => {
    const dialog = ref.current;
    if (!dialog) return;
    if (open && !dialog.open) dialog.showModal();
    if (!open && dialog.open) dialog.close();
  }, [open]);
  return html`<dialog ref=${ref} class=${wide ? 'wide' : ''} aria-labelledby="dialog-title" onClose=${onClose}
      onCancel=${(e) => { e.preventDefault(); onClose(); }}>
    ${open && html`<header class="dialog-head">
        <h2 id="dialog-title">${title}</h2>
        <button class="icon-btn" aria-label=${t('ui.close')} onClick=${onClose}>×</button>
      </header>
      <div class="dialog-body">${children}</div>`}
  </dialog>`;
}

export function Field({ label, hint, children }) {
  return html`<label class="field"><span class="field-label">${label}</span>${children}${
    hint && html`<span class="field-hint">${hint}</span>`
  }</label>`;
}

// A form that submits once at a time and shows the API's error message.
export function Form({ onSubmit, submitLabel, children, onCancel }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  async function submit(event) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await onSubmit(new FormData(event.currentTarget));
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }
  return html`<form class="form" onSubmit=${submit}>
    ${children}
    <${ErrorBox} error=${error} />
    <div class="form-actions">
      ${onCancel && html`<button type="button" class="btn ghost" onClick=${onCancel}>${t('ui.cancel')}</button>`}
      <button type="submit" class="btn primary" disabled=${busy}>${submitLabel || t('ui.save')}</button>
    </div>
  </form>`;
}

// Consumption of a budget: a meter that turns amber at 80 % and red at 100 %.
export function Bar({ value, max, label }) {
  const ratio = max > 0 ? Math.min(value / max, 1) : 0;
  const level = ratio >= 1 ? 'over' : ratio >= 0.8 ? 'warn' : 'ok';
  return html`<div class="bar ${level}" role="meter" aria-label=${label} aria-valuemin="0" aria-valuemax=${max}
      aria-valuenow=${value} title=${`${fmtNumber(ratio * 100, { maximumFractionDigits: 1 })} %`}>
    <span style=${{ width: `${(ratio * 100).toFixed(2)}%` }}></span>
  </div>`;
}

export function Badge({ tone = 'neutral', children }) {
  return html`<span class="badge ${tone}">${children}</span>`;
}

export function CopyButton({ text }) {
  const [done, setDone] = useState(false);
  async function copy() {
    await navigator.clipboard.writeText(text);
    setDone(true);
    setTimeout(() => setDone(false), 1500);
  }
  return html`<button type="button" class="btn small" onClick=${copy}>${done ? t('ui.copied') : t('ui.copy')}</button>`;
}

// A Lucide icon by name (vendor/icons.js); decorative unless given a label.
export function Icon({ name, label, size = 18 }) {
  return html`<svg class="icon" width=${size} height=${size} viewBox="0 0 24 24" fill="none" stroke="currentColor"
    stroke-width="2" stroke-linecap="round" stroke-linejoin="round" role=${label ? 'img' : undefined}
    aria-label=${label} aria-hidden=${label ? undefined : 'true'} dangerouslySetInnerHTML=${{ __html: ICONS[name] || '' }} />`;
}
