// The console's shell: configuration, sign-in (API key or SSO), the navigation the caller's roles allow,
// the language switch and a hash router that loads each page's module on first visit.
import { html, render, useState, useEffect } from './lib/html.js';
import { AppContext, navigate } from './lib/context.js';
import { api } from './lib/api.js';
import { session } from './lib/session.js';
import { startSso, finishSso } from './lib/sso.js';
import { t, register, initLanguage, setLanguage, language, onLanguage, LANGUAGES } from './lib/i18n.js';
import { ErrorBox, Loading, Field, Icon } from './lib/ui.js';
import { PAGES, NAV_MESSAGES, visiblePages } from './pages/registry.js';

register(NAV_MESSAGES);
register({
  fr: {
    'app.tagline': 'Plateforme d’IA souveraine', 'login.title': 'Connexion', 'login.key': 'Clé d’API',
    'login.key_hint': 'Commence par sk-socle-. Elle reste dans cet onglet et disparaît à sa fermeture.',
    'login.submit': 'Se connecter', 'login.sso': 'Se connecter avec l’annuaire de l’organisation', 'login.or': 'ou',
    'login.expired': 'Votre session a expiré : reconnectez-vous.', 'app.logout': 'Se déconnecter',
    'app.language': 'Langue', 'app.team': 'Équipe', 'app.menu': 'Menu principal', 'app.skip': 'Aller au contenu',
    'app.not_found': 'Cette page n’existe pas ou ne vous est pas ouverte.', 'app.page_failed': 'Cette page n’a pas pu être chargée.',
    'app.signed_in_as': 'Connecté en tant que', 'lang.fr': 'Français', 'lang.en': 'English',
  },
  en: {
    'app.tagline': 'Sovereign AI platform', 'login.title': 'Sign in', 'login.key': 'API key',
    'login.key_hint': 'Starts with sk-socle-. It stays in this tab and is gone when you close it.',
    'login.submit': 'Sign in', 'login.sso': 'Sign in with your organisation account', 'login.or': 'or',
    'login.expired': 'Your session has expired: please sign in again.', 'app.logout': 'Sign out',
    'app.language': 'Language', 'app.team': 'Team', 'app.menu': 'Main menu', 'app.skip': 'Skip to content',
    'app.not_found': 'This page does not exist or is not open to you.', 'app.page_failed': 'This page could not be loaded.',
    'app.signed_in_as': 'Signed in as', 'lang.fr': 'Français', 'lang.en': 'English',
  },
});

function currentRoute() {
  const hash = location.hash.replace(/^#\/?/, '');
  const [path, query = ''] = hash.split('?');
  return { path, params: Object.fromEntries(new URLSearchParams(query)) };
}

function LanguageSwitch() {
  return html`<label class="lang-switch">
    <span class="sr-only">${t('app.language')}</span>
    <select value=${language()} onChange=${(e) => setLanguage(e.currentTarget.value)} aria-label=${t('app.language')}>
      ${LANGUAGES.map((l) => html`<option value=${l}>${t(`lang.${l}`)}</option>`)}
    </select>
  </label>`;
}

function Login({ config, notice, onSignedIn }) {
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  async function submit(event) {
    event.preventDefault();
    const key = new FormData(event.currentTarget).get('key').trim();
    setBusy(true);
    setError(null);
    session.set({ token: key, team: null });
    try {
      onSignedIn(await api('/v1/me'));
    } catch (err) {
      session.clear();
      setError(err);
    } finally {
      setBusy(false);
    }
  }
  return html`<main class="login" id="main">
    <div class="login-card">
      <div class="brand big"><img src="/console/static/favicon.svg" alt="" /><div><strong>Socle</strong><span>${t('app.tagline')}</span></div></div>
      <h1>${t('login.title')}</h1>
      ${notice && html`<p class="notice" role="status">${notice}</p>`}
      <form onSubmit=${submit} class="form">
        <${Field} label=${t('login.key')} hint=${t('login.key_hint')}>
          <input name="key" type="password" autocomplete="off" required spellcheck="false" autofocus />
        <//>
        <${ErrorBox} error=${error} />
        <button class="btn primary wide" type="submit" disabled=${busy}>${t('login.submit')}</button>
      </form>
      ${config.sso && html`<div class="or"><span>${t('login.or')}</span></div>
        <button class="btn wide" onClick=${() => startSso(config.sso).catch(setError)}>${t('login.sso')}</button>`}
      <div class="login-foot"><${LanguageSwitch} /></div>
    </div>
  </main>`;
}

function TeamSwitch({ me, onChange }) {
  if (!me.teams || me.teams.length < 2) return html`<span class="team-name" title=${t('app.team')}>${me.team.name}</span>`;
  return html`<label><span class="sr-only">${t('app.team')}</span>
    <select aria-label=${t('app.team')} value=${me.team.id} onChange=${(e) => onChange(e.currentTarget.value)}>
      ${me.teams.map((team) => html`<option value=${team.id}>${team.name}</option>`)}
    </select></label>`;
}

function PageHost({ page, route }) {
  const [loaded, setLoaded] = useState(null);
  useEffect(() => {
    let live = true;
    setLoaded(null);
    import(new URL(page.module, new URL('./pages/', import.meta.url)).href).then(
      (module) => {
        register(module.messages);
        if (live) setLoaded({ Component: module.default });
      },
      (error) => live && setLoaded({ error }),
    );
    return () => {
      live = false;
    };
  }, [page.module]);
  if (!loaded) return html`<${Loading} />`;
  if (loaded.error) return html`<${ErrorBox} error=${{ message: t('app.page_failed') }} />`;
  return html`<${loaded.Component} route=${route} />`;
}

function Shell({ me, config, onSignOut, onTeam }) {
  const [route, setRoute] = useState(currentRoute());
  useEffect(() => {
    const update = () => setRoute(currentRoute());
    addEventListener('hashchange', update);
    return () => removeEventListener('hashchange', update);
  }, []);
  const pages = visiblePages(me);
  const page = pages.find((p) => p.path === route.path);
  useEffect(() => {
    if (!page && pages.length && !PAGES.some((p) => p.path === route.path)) navigate(pages[0].path);
  }, [route.path]);
  const sections = ['main', 'admin'].filter((s) => pages.some((p) => p.section === s));
  return html`<${AppContext.Provider} value=${{ me, config }}>
    <a class="skip" href="#main" onClick=${(e) => { e.preventDefault(); document.getElementById('main').focus(); }}>${t('app.skip')}</a>
    <div class="layout">
      <nav class="sidebar" aria-label=${t('app.menu')}>
        <div class="brand"><img src="/console/static/favicon.svg" alt="" /><div><strong>Socle</strong><span>${t('app.tagline')}</span></div></div>
        ${sections.map((section) => html`<div class="nav-section">
          <h2>${t(`nav.${section}`)}</h2>
          <ul>${pages.filter((p) => p.section === section).map((p) => html`<li>
            <a href=${`#/${p.path}`} aria-current=${p === page ? 'page' : undefined} data-page=${p.path}>
              <${Icon} name=${p.icon} />${t(p.label)}</a></li>`)}</ul>
        </div>`)}
      </nav>
      <div class="main-col">
        <header class="topbar">
          <div class="who"><span class="muted">${t('app.signed_in_as')}</span> <strong data-testid="me-name">${me.name}</strong>
            <${TeamSwitch} me=${me} onChange=${onTeam} /></div>
          <div class="top-actions"><${LanguageSwitch} />
            <button class="btn ghost" onClick=${onSignOut}><${Icon} name="log-out" />${t('app.logout')}</button></div>
        </header>
        <main id="main" tabindex="-1">
          ${page ? html`<${PageHost} key=${page.path} page=${page} route=${route} />`
            : pages.length ? html`<${ErrorBox} error=${{ message: t('app.not_found') }} />` : null}
        </main>
      </div>
    </div>
  <//>`;
}

function App({ config }) {
  const [me, setMe] = useState(null);
  const [state, setState] = useState({ checking: true, notice: null, error: null });
  const [, setLang] = useState(language());
  useEffect(() => onLanguage(setLang), []);
  useEffect(() => session.subscribe((s) => {
    if (!s.token) {
      setMe(null);
      setState({ checking: false, notice: s.reason === 'expired' ? t('login.expired') : null });
    }
  }), []);
  useEffect(() => {
    (async () => {
      try {
        const returned = await finishSso(config.sso);
        if (returned) session.set({ token: returned.token, team: null });
        if (session.get().token) setMe(await api('/v1/me'));
        setState({ checking: false });
      } catch (error) {
        session.clear();
        setState({ checking: false, error });
      }
    })();
  }, []);
  async function switchTeam(team) {
    session.set({ team });
    setMe(await api('/v1/me'));
  }
  if (state.checking) return html`<${Loading} />`;
  if (!me) {
    return html`<div>${state.error && html`<${ErrorBox} error=${state.error} />`}
      <${Login} config=${config} notice=${state.notice} onSignedIn=${setMe} /></div>`;
  }
  return html`<${Shell} me=${me} config=${config} onTeam=${switchTeam} onSignOut=${() => session.clear()} />`;
}

async function boot() {
  const config = await fetch('/console/config.json').then((r) => r.json());
  initLanguage(config.default_language);
  render(html`<${App} config=${config} />`, document.getElementById('app'));
}

boot();
