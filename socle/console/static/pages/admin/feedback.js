// User feedback: the thumbs up/down (and comments) users gave answers in the chat (GET /v1/admin/feedback),
// newest first, with the share of helpful answers and a link from each rating to its answer's audit trace.
import { html, useState, useEffect } from '../../lib/html.js';
import { api } from '../../lib/api.js';
import { t, fmtNumber, fmtDate } from '../../lib/i18n.js';
import { Page, Table, Field, Icon, ErrorBox, Loading } from '../../lib/ui.js';

export const messages = {
  fr: {
    'feedback.title': 'Avis des utilisateurs', 'feedback.subtitle': 'Les votes « utile » / « pas utile » et les commentaires donnés aux réponses dans la discussion. Chaque avis mène à la trace de sa réponse.',
    'feedback.unavailable': 'Les avis ne sont pas disponibles sur ce serveur (version sans l’API des avis).',
    'feedback.total': 'Avis', 'feedback.up': 'Utiles', 'feedback.down': 'Pas utiles', 'feedback.share': 'Part d’avis positifs',
    'feedback.rating': 'Vote', 'feedback.all': 'Tous', 'feedback.model': 'Modèle', 'feedback.team': 'Équipe (nom ou id)',
    'feedback.since': 'Depuis le', 'feedback.until': 'Jusqu’au (inclus)', 'feedback.apply': 'Filtrer', 'feedback.reset': 'Effacer',
    'feedback.col.time': 'Date', 'feedback.col.rating': 'Vote', 'feedback.col.comment': 'Commentaire', 'feedback.col.model': 'Modèle',
    'feedback.col.team': 'Équipe', 'feedback.col.user': 'Utilisateur', 'feedback.col.answer': 'Réponse', 'feedback.trace': 'Trace',
    'feedback.trace_of': 'Trace de la réponse {id}', 'feedback.none': 'Aucun avis ne correspond.', 'feedback.more': 'Afficher plus',
    'feedback.table': 'Avis des utilisateurs', 'feedback.no_comment': 'sans commentaire', 'feedback.filters': 'Filtres', 'feedback.refresh': 'Actualiser',
  },
  en: {
    'feedback.title': 'User feedback', 'feedback.subtitle': 'The helpful / not helpful votes and comments users gave answers in the chat. Each one leads to its answer’s trace.',
    'feedback.unavailable': 'Feedback is not available on this server (a version without the feedback API).',
    'feedback.total': 'Ratings', 'feedback.up': 'Helpful', 'feedback.down': 'Not helpful', 'feedback.share': 'Share of helpful ratings',
    'feedback.rating': 'Rating', 'feedback.all': 'All', 'feedback.model': 'Model', 'feedback.team': 'Team (name or id)',
    'feedback.since': 'From', 'feedback.until': 'Until (included)', 'feedback.apply': 'Filter', 'feedback.reset': 'Clear',
    'feedback.col.time': 'Time', 'feedback.col.rating': 'Rating', 'feedback.col.comment': 'Comment', 'feedback.col.model': 'Model',
    'feedback.col.team': 'Team', 'feedback.col.user': 'User', 'feedback.col.answer': 'Answer', 'feedback.trace': 'Trace',
    'feedback.trace_of': 'Trace of answer {id}', 'feedback.none': 'No feedback matches.', 'feedback.more': 'Show more',
    'feedback.table': 'User feedback', 'feedback.no_comment': 'no comment', 'feedback.filters': 'Filters', 'feedback.refresh': 'Refresh',
  },
};

const EMPTY = { rating: '', model: '', team: '', since: '', until: '' };
const PAGE = 100;

// Local dates to the API's instants: from the start of `since` to the end of `until`.
function range(filters) {
  const day = (value, offset) => {
    if (!value) return undefined;
    const date = new Date(`${value}T00:00:00`);
    date.setDate(date.getDate() + offset);
    return date.toISOString();
  };
  return { since: day(filters.since, 0), until: day(filters.until, 1) };
}

// Teams and users come as {id, name}; tolerate a bare id.
function named(value) {
  if (value == null) return '—';
  if (typeof value === 'string') return value;
  return value.name || value.id || '—';
}

function Rating({ rating }) {
  const up = rating === 'up';
  return html`<span class=${`feedback-rating ${up ? 'up' : 'down'}`}>
    <${Icon} name=${up ? 'thumbs-up' : 'thumbs-down'} />${up ? t('feedback.up') : t('feedback.down')}</span>`;
}

function Totals({ totals }) {
  const up = totals.up || 0;
  const down = totals.down || 0;
  const share = up + down ? fmtNumber(up / (up + down), { style: 'percent', maximumFractionDigits: 0 }) : '—';
  return html`<div class="grid feedback-totals">
    ${[['total', fmtNumber(up + down)], ['up', fmtNumber(up)], ['down', fmtNumber(down)], ['share', share]].map(([key, value]) =>
      html`<div class="card stat" data-testid=${`feedback-${key}`}><span class="muted">${t(`feedback.${key}`)}</span><span class="value">${value}</span></div>`)}
  </div>`;
}

function Filters({ value, onApply }) {
  function submit(event) {
    event.preventDefault();
    onApply({ ...EMPTY, ...Object.fromEntries(new FormData(event.currentTarget)) });
  }
  return html`<form class="toolbar" onSubmit=${submit} aria-label=${t('feedback.filters')}>
    <${Field} label=${t('feedback.rating')}><select name="rating" aria-label=${t('feedback.rating')} value=${value.rating}>
      <option value="">${t('feedback.all')}</option><option value="up">${t('feedback.up')}</option><option value="down">${t('feedback.down')}</option>
    </select><//>
    <${Field} label=${t('feedback.model')}><input name="model" value=${value.model} spellcheck="false" /><//>
    <${Field} label=${t('feedback.team')}><input name="team" value=${value.team} spellcheck="false" /><//>
    <${Field} label=${t('feedback.since')}><input type="date" name="since" value=${value.since} /><//>
    <${Field} label=${t('feedback.until')}><input type="date" name="until" value=${value.until} /><//>
    <div class="feedback-actions">
      <button class="btn primary" type="submit">${t('feedback.apply')}</button>
      <button class="btn ghost" type="button" onClick=${() => onApply(EMPTY)}>${t('feedback.reset')}</button>
    </div>
  </form>`;
}

export default function FeedbackPage() {
  const [filters, setFilters] = useState(EMPTY);
  const [state, setState] = useState({ items: [], totals: null, cursor: null, loading: true, error: null, missing: false });
  async function load(cursor) {
    setState((s) => ({ ...s, loading: true, error: null }));
    try {
      const page = await api('/v1/admin/feedback', { query: {
        rating: filters.rating, model: filters.model.trim(), team: filters.team.trim(), ...range(filters), limit: PAGE, cursor,
      } });
      setState((s) => ({
        items: cursor ? [...s.items, ...page.data] : page.data,
        totals: page.totals || null,
        cursor: page.has_more ? page.next_cursor : null,
        loading: false, error: null, missing: false,
      }));
    } catch (error) {
      setState((s) => ({ ...s, loading: false, error: error.status === 404 ? null : error, missing: error.status === 404 }));
    }
  }
  useEffect(() => { load(null); }, [filters]);
  const columns = [
    { key: 'created_at', label: t('feedback.col.time'), render: (f) => html`<time class="ops-nowrap" datetime=${f.created_at}>${fmtDate(f.created_at)}</time>` },
    { key: 'rating', label: t('feedback.col.rating'), render: (f) => html`<${Rating} rating=${f.rating} />` },
    { key: 'comment', label: t('feedback.col.comment'), render: (f) => (f.comment ? html`<q class="feedback-comment">${f.comment}</q>` : html`<span class="muted">${t('feedback.no_comment')}</span>`) },
    { key: 'model', label: t('feedback.col.model') },
    { key: 'team', label: t('feedback.col.team'), render: (f) => named(f.team) },
    { key: 'principal', label: t('feedback.col.user'), render: (f) => named(f.principal) },
    { key: 'answer', label: t('feedback.col.answer'), render: (f) => html`<a class="btn small feedback-trace" href=${`#/admin/audit?request=${encodeURIComponent(f.request_id)}`}
      aria-label=${t('feedback.trace_of', { id: f.request_id })}><${Icon} name="external-link" size=${14} />${t('feedback.trace')}</a>` },
  ];
  const actions = html`<button class="btn" onClick=${() => load(null)} disabled=${state.loading}><${Icon} name="refresh-cw" />${t('feedback.refresh')}</button>`;
  return html`<${Page} title=${t('feedback.title')} subtitle=${t('feedback.subtitle')} actions=${state.missing ? null : actions}>
    ${state.missing ? html`<p class="notice" role="status" data-testid="feedback-unavailable">${t('feedback.unavailable')}</p>` : html`
      ${state.totals && html`<${Totals} totals=${state.totals} />`}
      <${Filters} value=${filters} onApply=${setFilters} />
      <${ErrorBox} error=${state.error} onRetry=${() => load(null)} />
      ${state.loading && state.items.length === 0 ? html`<${Loading} />`
        : html`<${Table} columns=${columns} rows=${state.items} label=${t('feedback.table')} empty=${t('feedback.none')}
          rowKey=${(f) => f.id || `${f.request_id}-${f.created_at}`} />`}
      ${state.cursor && html`<p class="feedback-more"><button class="btn" disabled=${state.loading} onClick=${() => load(state.cursor)}>${t('feedback.more')}</button></p>`}`}
  <//>`;
}
