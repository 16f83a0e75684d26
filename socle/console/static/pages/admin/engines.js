// Engine health: every engine the router knows (GET /v1/admin/engines), what it serves, where, and how it is.
import { html, useEffect } from '../../lib/html.js';
import { api } from '../../lib/api.js';
import { t, fmtNumber, fmtDate } from '../../lib/i18n.js';
import { Page, Async, useAsync, Badge, Bar, Icon, CopyButton } from '../../lib/ui.js';

export const messages = {
  fr: {
    'engines.title': 'Moteurs', 'engines.subtitle': 'Chaque moteur d’inférence : ce qu’il sert, où il tourne, son état et sa charge. Sondé toutes les quelques secondes.',
    'engines.refresh': 'Actualiser', 'engines.healthy': 'Disponible', 'engines.unhealthy': 'Indisponible',
    'engines.summary': '{ok} sur {n} disponibles', 'engines.kind': 'Type', 'engines.zone': 'Zone',
    'engines.model_ref': 'Modèle exécuté', 'engines.models': 'Modèles publics servis', 'engines.capabilities': 'Capacités',
    'engines.load': 'Charge', 'engines.load_value': '{in_flight} en cours sur {capacity}', 'engines.checked': 'Dernier sondage',
    'engines.never': 'pas encore', 'engines.detail': 'État', 'engines.last_error': 'Dernière erreur', 'engines.none': 'Aucun moteur configuré.',
    'engines.kind.llamacpp': 'llama.cpp (local)', 'engines.kind.openai_compat': 'Compatible OpenAI (distant)',
    'engines.kind.embeddings': 'Plongements (local)', 'engines.kind.fake': 'Factice (tests)', 'engines.load_label': 'Charge de {name}',
  },
  en: {
    'engines.title': 'Engines', 'engines.subtitle': 'Every inference engine: what it serves, where it runs, its health and load. Probed every few seconds.',
    'engines.refresh': 'Refresh', 'engines.healthy': 'Healthy', 'engines.unhealthy': 'Unhealthy',
    'engines.summary': '{ok} of {n} healthy', 'engines.kind': 'Kind', 'engines.zone': 'Zone',
    'engines.model_ref': 'Model run', 'engines.models': 'Public models served', 'engines.capabilities': 'Capabilities',
    'engines.load': 'Load', 'engines.load_value': '{in_flight} in flight of {capacity}', 'engines.checked': 'Last probe',
    'engines.never': 'not yet', 'engines.detail': 'Status', 'engines.last_error': 'Last error', 'engines.none': 'No engine is configured.',
    'engines.kind.llamacpp': 'llama.cpp (local)', 'engines.kind.openai_compat': 'OpenAI-compatible (remote)',
    'engines.kind.embeddings': 'Embeddings (local)', 'engines.kind.fake': 'Fake (tests)', 'engines.load_label': 'Load of {name}',
  },
};

const REFRESH_MS = 10000;

function EngineCard({ engine }) {
  const kind = t(`engines.kind.${engine.kind}`);
  return html`<article class="card engine-card" aria-labelledby=${`engine-${engine.name}`} data-testid=${`engine-${engine.name}`}>
    <header class="engine-head">
      <h2 id=${`engine-${engine.name}`}>${engine.name}</h2>
      <${Badge} tone=${engine.healthy ? 'ok' : 'danger'}>${engine.healthy ? t('engines.healthy') : t('engines.unhealthy')}<//>
    </header>
    <dl class="engine-facts">
      <dt>${t('engines.kind')}</dt><dd>${kind.startsWith('engines.kind.') ? engine.kind : kind}</dd>
      <dt>${t('engines.zone')}</dt><dd><${Badge} tone="info">${engine.zone}<//></dd>
      <dt>${t('engines.model_ref')}</dt><dd class="engine-ref"><code title=${engine.model_ref}>${engine.model_ref}</code>
        ${engine.model_ref.startsWith('sha256:') && html`<${CopyButton} text=${engine.model_ref} />`}</dd>
      <dt>${t('engines.models')}</dt><dd>${engine.models.length ? engine.models.map((m) => html`<span class="ops-chip">${m}</span>`) : '—'}</dd>
      <dt>${t('engines.capabilities')}</dt><dd>${engine.capabilities.join(', ')}</dd>
      <dt>${t('engines.load')}</dt><dd>
        <${Bar} value=${engine.in_flight} max=${engine.capacity} label=${t('engines.load_label', { name: engine.name })} />
        <span class="muted ops-small">${t('engines.load_value', { in_flight: fmtNumber(engine.in_flight), capacity: fmtNumber(engine.capacity) })}</span></dd>
      <dt>${t('engines.checked')}</dt><dd>${engine.checked_at ? fmtDate(engine.checked_at) : t('engines.never')}</dd>
      ${engine.detail && html`<dt>${t('engines.detail')}</dt><dd>${engine.detail}</dd>`}
      ${engine.last_error && html`<dt>${t('engines.last_error')}</dt>
        <dd class="engine-error">${engine.last_error}<span class="muted ops-small"> · ${fmtDate(engine.last_error_at)}</span></dd>`}
    </dl>
  </article>`;
}

export default function EnginesPage() {
  const state = useAsync(() => api('/v1/admin/engines').then((r) => r.data), []);
  useEffect(() => {
    const timer = setInterval(() => document.visibilityState === 'visible' && state.reload(), REFRESH_MS);
    return () => clearInterval(timer);
  }, [state.reload]);
  const engines = state.data || [];
  const ok = engines.filter((e) => e.healthy).length;
  const actions = html`<button class="btn" onClick=${state.reload} disabled=${state.loading}>
    <${Icon} name="refresh-cw" />${t('engines.refresh')}</button>`;
  return html`<${Page} title=${t('engines.title')} subtitle=${t('engines.subtitle')} actions=${actions}>
    <${Async} state=${state}>${(list) => list.length === 0
      ? html`<p class="muted empty">${t('engines.none')}</p>`
      : html`<p class="engine-summary" role="status"><${Badge} tone=${ok === engines.length ? 'ok' : 'warn'}>
          ${t('engines.summary', { ok, n: engines.length })}<//></p>
        <div class="engine-grid">${list.map((engine) => html`<${EngineCard} key=${engine.name} engine=${engine} />`)}</div>`}<//>
  <//>`;
}
