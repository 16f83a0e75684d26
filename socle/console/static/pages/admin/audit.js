// The audit log for auditors: entries filtered by time, actor, team and type (GET /v1/audit/events, in log
// order, a page at a time), each entry's content, one answer's full trace (#/admin/audit?request=ID), and
// verification of the whole log on demand (POST /v1/audit/verify).
import { html, useState } from '../../lib/html.js';
import { api } from '../../lib/api.js';
import { navigate } from '../../lib/context.js';
import { t, fmtNumber } from '../../lib/i18n.js';
import { Page, Async, useAsync, Table, Badge, Dialog, Field, Icon, ErrorBox, CopyButton } from '../../lib/ui.js';
import { TraceView } from './trace.js';

export const messages = {
  fr: {
    'audit.title': 'Journal d’audit', 'audit.subtitle': 'Journal inviolable : chaque requête, refus et changement d’administration, dans l’ordre. Les contenus n’y figurent que sous forme d’empreintes.',
    'audit.verify': 'Vérifier le journal', 'audit.verifying': 'Vérification…', 'audit.open_trace': 'Ouvrir une trace',
    'audit.request_id': 'Identifiant de requête', 'audit.request_hint': 'L’en-tête x-request-id de la réponse.', 'audit.open': 'Ouvrir',
    'audit.filters': 'Filtres', 'audit.since': 'Depuis', 'audit.until': 'Jusqu’à', 'audit.actor': 'Acteur (id)', 'audit.team': 'Équipe (nom ou id)',
    'audit.type': 'Type', 'audit.apply': 'Filtrer', 'audit.reset': 'Effacer', 'audit.any': 'tous',
    'audit.col.seq': 'N°', 'audit.col.time': 'Date (UTC)', 'audit.col.type': 'Type', 'audit.col.actor': 'Acteur', 'audit.col.team': 'Équipe',
    'audit.col.what': 'Détail', 'audit.col.actions': 'Actions', 'audit.details': 'Détails',
    'audit.trace': 'Trace', 'audit.entry_title': 'Entrée {seq}', 'audit.leaf': 'Empreinte (feuille)', 'audit.none': 'Aucune entrée ne correspond.',
    'audit.prev': 'Page précédente', 'audit.next': 'Page suivante', 'audit.page': 'Entrées {first} à {last}', 'audit.table': 'Entrées du journal',
    'audit.verified': 'Vérifié', 'audit.failed': 'Échec de la vérification',
    'audit.verified_text': '{entries} entrée(s) et {checkpoints} point(s) de contrôle signé(s) vérifiés (signé jusqu’à {signed}{unsigned}), en {duration}.',
    'audit.unsigned': ', {n} entrées récentes pas encore signées', 'audit.root': 'Racine',
    'audit.first_bad': 'Première entrée en défaut : {seq}', 'audit.show_entry': 'Voir cette entrée', 'audit.more_problems': '… et {n} autre(s) problème(s).',
    'audit.failed_text': '{entries} entrée(s) lue(s), {checkpoints} point(s) de contrôle vérifié(s), en {duration}.', 'audit.verify_result': 'Résultat de la vérification',
  },
  en: {
    'audit.title': 'Audit log', 'audit.subtitle': 'Tamper-evident log: every request, refusal and admin change, in order. Contents appear only as keyed hashes.',
    'audit.verify': 'Verify the log', 'audit.verifying': 'Verifying…', 'audit.open_trace': 'Open a trace',
    'audit.request_id': 'Request id', 'audit.request_hint': 'The response’s x-request-id header.', 'audit.open': 'Open',
    'audit.filters': 'Filters', 'audit.since': 'From', 'audit.until': 'Until', 'audit.actor': 'Actor (id)', 'audit.team': 'Team (name or id)',
    'audit.type': 'Type', 'audit.apply': 'Filter', 'audit.reset': 'Clear', 'audit.any': 'any',
    'audit.col.seq': 'Seq', 'audit.col.time': 'Time (UTC)', 'audit.col.type': 'Type', 'audit.col.actor': 'Actor', 'audit.col.team': 'Team',
    'audit.col.what': 'Detail', 'audit.col.actions': 'Actions', 'audit.details': 'Details',
    'audit.trace': 'Trace', 'audit.entry_title': 'Entry {seq}', 'audit.leaf': 'Leaf hash', 'audit.none': 'No entry matches.',
    'audit.prev': 'Previous page', 'audit.next': 'Next page', 'audit.page': 'Entries {first} to {last}', 'audit.table': 'Log entries',
    'audit.verified': 'Verified', 'audit.failed': 'Verification failed',
    'audit.verified_text': '{entries} entries and {checkpoints} signed checkpoint(s) verified (signed up to {signed}{unsigned}), in {duration}.',
    'audit.unsigned': ', {n} recent entries not signed yet', 'audit.root': 'Root',
    'audit.first_bad': 'First bad entry: {seq}', 'audit.show_entry': 'Show this entry', 'audit.more_problems': '… and {n} more problem(s).',
    'audit.failed_text': '{entries} entries read, {checkpoints} checkpoint(s) verified, in {duration}.', 'audit.verify_result': 'Verification result',
  },
};

const PAGE = 50;
const TYPES = ['inference.request', 'knowledge.request', 'auth.failure', 'access.denied', 'admin.change', 'audit.export',
  'data.erasure', 'egress.refused', 'audit.prune', 'audit.outage'];
const TONES = { 'auth.failure': 'warn', 'access.denied': 'warn', 'admin.change': 'info', 'audit.outage': 'danger', 'egress.refused': 'danger' };
const EMPTY = { since: '', until: '', actor: '', team: '', type: '' };

// datetime-local values are local times; the API takes ISO 8601.
function iso(local) {
  return local ? new Date(local).toISOString() : undefined;
}

function time(value) {
  return value ? value.replace('T', ' ').replace(/\.\d+Z$|Z$/, '') : '—';
}

function duration(seconds) {
  if (seconds >= 1) return `${fmtNumber(seconds, { maximumFractionDigits: 1 })} s`;
  return seconds < 0.001 ? '< 1 ms' : `${fmtNumber(seconds * 1000, { maximumFractionDigits: 0 })} ms`;
}

function Short({ value }) {
  return value ? html`<code class="audit-id" title=${value}>${value.length > 14 ? `${value.slice(0, 12)}…` : value}</code>` : '—';
}

// The gist of an entry, by type.
function what(entry) {
  const d = entry.data || {};
  if (entry.type === 'inference.request' || entry.type === 'knowledge.request') {
    return [d.model, d.engine && `${d.engine} · ${d.zone}`, d.status && `HTTP ${d.status}`].filter(Boolean).join(' — ');
  }
  if (entry.type === 'admin.change') return [d.operation, d.object_id].filter(Boolean).join(' ');
  if (entry.type === 'access.denied') return [d.reason, d.code || d.action, d.model].filter(Boolean).join(' · ');
  if (entry.type === 'auth.failure') return [d.reason, d.key_prefix].filter(Boolean).join(' · ');
  return Object.entries(d).slice(0, 3).map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : v}`).join(' · ');
}

function openTrace(requestId) {
  navigate('admin/audit', { request: requestId });
}

function VerifyResult({ report, onShow }) {
  if (report.ok) {
    const unsigned = report.unsigned_entries ? t('audit.unsigned', { n: fmtNumber(report.unsigned_entries) }) : '';
    return html`<div class="card audit-verify ok" role="status" aria-label=${t('audit.verify_result')} data-testid="verify-result">
      <p><${Badge} tone="ok">✓ ${t('audit.verified')}<//> ${t('audit.verified_text', {
        entries: fmtNumber(report.entries), checkpoints: fmtNumber(report.checkpoints_verified), signed: fmtNumber(report.signed_size),
        unsigned, duration: duration(report.seconds) })}</p>
      <p class="muted ops-small">${t('audit.root')} <code>${report.root_hash}</code></p>
    </div>`;
  }
  const [first, ...rest] = report.problems;
  return html`<div class="card audit-verify bad" role="alert" aria-label=${t('audit.verify_result')} data-testid="verify-result">
    <p><${Badge} tone="danger">✗ ${t('audit.failed')}<//> <strong>${first ? first.text : ''}</strong></p>
    ${report.first_bad_seq != null && html`<p>${t('audit.first_bad', { seq: report.first_bad_seq })}
      <button class="btn small" onClick=${() => onShow(report.first_bad_seq)}>${t('audit.show_entry')}</button></p>`}
    ${rest.length > 0 && html`<ul class="audit-problems">${rest.map((p) => html`<li>${p.text}</li>`)}</ul>`}
    ${report.more_problems > 0 && html`<p class="muted">${t('audit.more_problems', { n: report.more_problems })}</p>`}
    <p class="muted ops-small">${t('audit.failed_text', { entries: fmtNumber(report.entries), checkpoints: fmtNumber(report.checkpoints_verified), duration: duration(report.seconds) })}</p>
  </div>`;
}

function useVerify() {
  const [state, setState] = useState({ busy: false, report: null, error: null });
  async function run() {
    setState({ busy: true, report: null, error: null });
    try {
      setState({ busy: false, report: await api('/v1/audit/verify', { method: 'POST' }), error: null });
    } catch (error) {
      setState({ busy: false, report: null, error });
    }
  }
  return { run, state };
}

function OpenTrace() {
  function submit(event) {
    event.preventDefault();
    const id = new FormData(event.currentTarget).get('request').trim();
    if (id) openTrace(id);
  }
  return html`<form class="audit-open" onSubmit=${submit} aria-label=${t('audit.open_trace')}>
    <${Field} label=${t('audit.request_id')} hint=${t('audit.request_hint')}>
      <input name="request" required spellcheck="false" autocomplete="off" placeholder="req_…" /><//>
    <button class="btn" type="submit"><${Icon} name="search" />${t('audit.open')}</button>
  </form>`;
}

function Filters({ value, onApply }) {
  function submit(event) {
    event.preventDefault();
    onApply(Object.fromEntries(new FormData(event.currentTarget)));
  }
  return html`<form class="toolbar audit-filters" onSubmit=${submit} aria-label=${t('audit.filters')}>
    <${Field} label=${t('audit.since')}><input type="datetime-local" name="since" value=${value.since} /><//>
    <${Field} label=${t('audit.until')}><input type="datetime-local" name="until" value=${value.until} /><//>
    <${Field} label=${t('audit.actor')}><input name="actor" value=${value.actor} spellcheck="false" /><//>
    <${Field} label=${t('audit.team')}><input name="team" value=${value.team} spellcheck="false" /><//>
    <${Field} label=${t('audit.type')}><input name="type" list="audit-types" value=${value.type} placeholder=${t('audit.any')} spellcheck="false" />
      <datalist id="audit-types">${TYPES.map((type) => html`<option value=${type} />`)}</datalist><//>
    <div class="audit-filter-actions">
      <button class="btn primary" type="submit">${t('audit.apply')}</button>
      <button class="btn ghost" type="button" onClick=${() => onApply(EMPTY)}>${t('audit.reset')}</button>
    </div>
  </form>`;
}

function EntryDialog({ entry, onClose }) {
  const content = entry && entry.entry;
  return html`<${Dialog} open=${Boolean(entry)} wide title=${entry ? t('audit.entry_title', { seq: entry.seq }) : ''} onClose=${onClose}>
    ${entry && html`<p class="muted ops-small">${t('audit.leaf')} <code>${entry.leaf_hash}</code> <${CopyButton} text=${entry.leaf_hash} /></p>
      <pre class="audit-json" tabindex="0">${JSON.stringify(content, null, 2)}</pre>
      ${content.request_id && html`<p><button class="btn" onClick=${() => { onClose(); openTrace(content.request_id); }}>
        <${Icon} name="external-link" />${t('audit.trace')}</button></p>`}`}
  <//>`;
}

export default function AuditPage({ route }) {
  const requestId = (route.params || {}).request;
  const [filters, setFilters] = useState(EMPTY);
  const [cursors, setCursors] = useState([undefined]); // `after` of each page visited; the last is the current page
  const [open, setOpen] = useState(null);
  const verify = useVerify();
  const after = cursors[cursors.length - 1];
  const state = useAsync(() => api('/v1/audit/events', { query: {
    since: iso(filters.since), until: iso(filters.until), actor: filters.actor.trim(), team: filters.team.trim(),
    type: filters.type.trim(), after, limit: PAGE,
  } }), [filters, after]);
  function apply(next) {
    setFilters({ ...EMPTY, ...next });
    setCursors([undefined]);
  }
  function show(seq) {
    setFilters(EMPTY);
    setCursors([undefined, seq - 1]);
  }
  const columns = [
    { key: 'seq', label: t('audit.col.seq'), numeric: true },
    { key: 'time', label: t('audit.col.time'), render: (e) => html`<time class="ops-nowrap" datetime=${e.entry.time}>${time(e.entry.time)}</time>` },
    { key: 'type', label: t('audit.col.type'), render: (e) => html`<${Badge} tone=${TONES[e.entry.type] || 'neutral'}>${e.entry.type}<//>` },
    { key: 'actor', label: t('audit.col.actor'), render: (e) => html`<${Short} value=${e.entry.actor} />` },
    { key: 'team', label: t('audit.col.team'), render: (e) => html`<${Short} value=${e.entry.team} />` },
    { key: 'what', label: t('audit.col.what'), render: (e) => what(e.entry) },
    { key: 'actions', label: t('audit.col.actions'), render: (e) => html`<div class="audit-row-actions">
      <button class="btn small" onClick=${() => setOpen(e)} aria-label=${`${t('audit.details')} ${e.seq}`}>${t('audit.details')}</button>
      ${e.entry.request_id && html`<a class="btn small" href=${`#/admin/audit?request=${encodeURIComponent(e.entry.request_id)}`}
        aria-label=${`${t('audit.trace')} ${e.entry.request_id}`}>${t('audit.trace')}</a>`}</div>` },
  ];
  const actions = html`<button class="btn primary" onClick=${verify.run} disabled=${verify.state.busy}>
    <${Icon} name="shield-check" />${verify.state.busy ? t('audit.verifying') : t('audit.verify')}</button>`;
  return html`<${Page} title=${t('audit.title')} subtitle=${t('audit.subtitle')} actions=${actions}>
    <${ErrorBox} error=${verify.state.error} />
    ${verify.state.report && html`<${VerifyResult} report=${verify.state.report} onShow=${show} />`}
    ${requestId ? html`<${TraceView} key=${requestId} requestId=${requestId} onClose=${() => navigate('admin/audit')} />` : html`<${OpenTrace} />`}
    <${Filters} value=${filters} onApply=${apply} />
    <${Async} state=${state}>${(page) => html`
      <${Table} columns=${columns} rows=${page.data} rowKey=${(e) => e.seq} label=${t('audit.table')} empty=${t('audit.none')} />
      <nav class="audit-pager" aria-label=${t('audit.table')}>
        <button class="btn" disabled=${cursors.length < 2} onClick=${() => setCursors(cursors.slice(0, -1))}>${t('audit.prev')}</button>
        ${page.data.length > 0 && html`<span class="muted">${t('audit.page', { first: page.data[0].seq, last: page.data[page.data.length - 1].seq })}</span>`}
        <button class="btn" disabled=${!page.has_more} onClick=${() => setCursors([...cursors, page.next_after])}>${t('audit.next')}</button>
      </nav>`}<//>
    <${EntryDialog} entry=${open} onClose=${() => setOpen(null)} />
  <//>`;
}
