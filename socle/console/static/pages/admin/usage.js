// Usage: requests, tokens, cost, errors and P95 latency per UTC day, by team or by model, from GET /v1/usage
// (daily rollups). The API decides what the caller sees: their own usage, their team's, or everyone's.
import { html, useState } from '../../lib/html.js';
import { api } from '../../lib/api.js';
import { useApp, can } from '../../lib/context.js';
import { t, fmtNumber } from '../../lib/i18n.js';
import { Page, Async, useAsync, Table, Field, Icon, ErrorBox } from '../../lib/ui.js';
import { Chart, PALETTE_SIZE } from './chart.js';

export const messages = {
  fr: {
    'usage.title': 'Consommation', 'usage.subtitle': 'Par jour (UTC), par équipe ou par modèle. Vous voyez ce que votre rôle permet : votre usage, celui de votre équipe ou celui de tous.',
    'usage.metric': 'Mesure', 'usage.group': 'Regrouper par', 'usage.period': 'Période', 'usage.mode': 'Graphique',
    'usage.metric.cost': 'Coût', 'usage.metric.tokens': 'Jetons', 'usage.metric.requests': 'Requêtes',
    'usage.metric.p95': 'Latence P95', 'usage.metric.errors': 'Erreurs',
    'usage.group.team': 'Équipe', 'usage.group.model': 'Modèle', 'usage.days': '{n} jours',
    'usage.mode.stacked': 'Barres empilées', 'usage.mode.lines': 'Courbes', 'usage.mode.p95': 'Une latence ne s’additionne pas : courbes.',
    'usage.export': 'Exporter en CSV', 'usage.refresh': 'Actualiser', 'usage.other': 'Autres',
    'usage.total.requests': 'Requêtes', 'usage.total.tokens': 'Jetons', 'usage.total.cost': 'Coût',
    'usage.total.errors': 'Erreurs', 'usage.total.p95': 'Latence P95', 'usage.tokens_split': '{prompt} en entrée, {completion} en sortie',
    'usage.error_rate': '{rate} des requêtes', 'usage.p95_hint': 'sur toute la période',
    'usage.chart_title': '{metric} par jour, par {group}', 'usage.table_title': 'Sur la période, par {group}',
    'usage.summary': '{metric} par jour et par {group} sur {n} jours. {parts}.', 'usage.summary_max': '{name} : jusqu’à {value}',
    'usage.summary_total': '{name} : {value} au total', 'usage.none': 'Aucune requête sur la période.',
    'usage.col.requests': 'Requêtes', 'usage.col.errors': 'Erreurs', 'usage.col.prompt': 'Jetons entrée',
    'usage.col.completion': 'Jetons sortie', 'usage.col.cost': 'Coût', 'usage.col.p95': 'P95', 'usage.col.avg': 'Moyenne',
  },
  en: {
    'usage.title': 'Usage', 'usage.subtitle': 'Per UTC day, by team or by model. You see what your role allows: your own usage, your team’s, or everyone’s.',
    'usage.metric': 'Metric', 'usage.group': 'Group by', 'usage.period': 'Period', 'usage.mode': 'Chart',
    'usage.metric.cost': 'Cost', 'usage.metric.tokens': 'Tokens', 'usage.metric.requests': 'Requests',
    'usage.metric.p95': 'P95 latency', 'usage.metric.errors': 'Errors',
    'usage.group.team': 'Team', 'usage.group.model': 'Model', 'usage.days': '{n} days',
    'usage.mode.stacked': 'Stacked bars', 'usage.mode.lines': 'Lines', 'usage.mode.p95': 'Latencies do not add up: lines.',
    'usage.export': 'Export CSV', 'usage.refresh': 'Refresh', 'usage.other': 'Others',
    'usage.total.requests': 'Requests', 'usage.total.tokens': 'Tokens', 'usage.total.cost': 'Cost',
    'usage.total.errors': 'Errors', 'usage.total.p95': 'P95 latency', 'usage.tokens_split': '{prompt} in, {completion} out',
    'usage.error_rate': '{rate} of requests', 'usage.p95_hint': 'over the whole period',
    'usage.chart_title': '{metric} per day, by {group}', 'usage.table_title': 'Over the period, by {group}',
    'usage.summary': '{metric} per day by {group} over {n} days. {parts}.', 'usage.summary_max': '{name}: up to {value}',
    'usage.summary_total': '{name}: {value} in total', 'usage.none': 'No request in this period.',
    'usage.col.requests': 'Requests', 'usage.col.errors': 'Errors', 'usage.col.prompt': 'Input tokens',
    'usage.col.completion': 'Output tokens', 'usage.col.cost': 'Cost', 'usage.col.p95': 'P95', 'usage.col.avg': 'Average',
  },
};

const PERIODS = [7, 30, 90];
const GROUPS = ['team', 'model'];

function money(value) {
  if (value == null) return '—';
  const small = value !== 0 && Math.abs(value) < 0.01;
  return fmtNumber(value, { style: 'currency', currency: 'EUR', ...(small ? { maximumSignificantDigits: 2 } : {}) });
}

function ms(value) {
  return value == null ? '—' : `${fmtNumber(value, { maximumFractionDigits: value < 10 ? 1 : 0 })} ms`;
}

const METRICS = {
  cost: { value: (l) => Number(l.cost_eur), format: money, additive: true },
  tokens: { value: (l) => l.prompt_tokens + l.completion_tokens, format: (v) => fmtNumber(v), additive: true },
  requests: { value: (l) => l.requests, format: (v) => fmtNumber(v), additive: true },
  p95: { value: (l) => l.p95_latency_ms, format: ms, additive: false },
  errors: { value: (l) => l.errors, format: (v) => fmtNumber(v), additive: true },
};

// UTC days of the period, oldest first ('YYYY-MM-DD').
function periodDays(days) {
  const today = new Date();
  const start = Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate());
  return Array.from({ length: days }, (_, i) => new Date(start - (days - 1 - i) * 86400000).toISOString().slice(0, 10));
}

function dayLabel(day) {
  return new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short', timeZone: 'UTC' }).format(new Date(`${day}T00:00:00Z`));
}

// Team ids to names: every team for admins, the caller's own teams otherwise.
async function teamNames(me) {
  const names = Object.fromEntries((me.teams || [me.team]).map((team) => [team.id, team.name]));
  if (can(me, 'admin')) {
    for (const team of (await api('/v1/admin/teams')).data) names[team.id] = team.name;
  }
  return names;
}

async function load(me, group, days) {
  const labels = periodDays(days);
  const since = `${labels[0]}T00:00:00Z`;
  const [perDay, perGroup, totals, names] = await Promise.all([
    api('/v1/usage', { query: { group_by: `day,${group}`, since } }),
    api('/v1/usage', { query: { group_by: group, since } }),
    api('/v1/usage?group_by=', { query: { since } }),
    group === 'team' ? teamNames(me) : Promise.resolve({}),
  ]);
  const name = (key) => (group === 'team' ? names[key] || key.slice(0, 8) : key);
  return { group, labels, since, perDay: perDay.data, perGroup: perGroup.data, totals: totals.data[0] || null, name };
}

// One series per group, largest first; beyond the palette, additive metrics fold the rest into "Others".
function buildSeries(data, group, metric) {
  const { value, additive } = METRICS[metric];
  const index = Object.fromEntries(data.labels.map((day, i) => [day, i]));
  const byKey = new Map();
  for (const line of data.perDay) {
    const key = line[group];
    if (!byKey.has(key)) byKey.set(key, { key, name: data.name(key), values: data.labels.map(() => (additive ? 0 : null)) });
    if (line.day in index) byKey.get(key).values[index[line.day]] = value(line);
  }
  const weight = Object.fromEntries(data.perGroup.map((l) => [l[group], additive ? value(l) : l.requests]));
  const series = [...byKey.values()].sort((a, b) => (weight[b.key] || 0) - (weight[a.key] || 0) || a.name.localeCompare(b.name));
  if (series.length <= PALETTE_SIZE) return series;
  if (!additive) return series.slice(0, PALETTE_SIZE);
  const kept = series.slice(0, PALETTE_SIZE - 1);
  const rest = series.slice(PALETTE_SIZE - 1);
  kept.push({ key: '__other', name: t('usage.other'), values: data.labels.map((_, i) => rest.reduce((s, r) => s + r.values[i], 0)) });
  return kept;
}

function summary(series, metric, group, days) {
  const { format, additive } = METRICS[metric];
  const parts = series.map((s) => {
    const values = s.values.filter((v) => v != null);
    return additive
      ? t('usage.summary_total', { name: s.name, value: format(values.reduce((a, b) => a + b, 0)) })
      : t('usage.summary_max', { name: s.name, value: format(Math.max(...values)) });
  });
  return t('usage.summary', {
    metric: t(`usage.metric.${metric}`), group: t(`usage.group.${group}`).toLowerCase(), n: days,
    parts: parts.join(' ; ') || t('usage.none'),
  });
}

function Totals({ totals }) {
  const line = totals || { requests: 0, errors: 0, prompt_tokens: 0, completion_tokens: 0, cost_eur: '0', p95_latency_ms: null };
  const rate = line.requests ? fmtNumber(line.errors / line.requests, { style: 'percent', maximumFractionDigits: 1 }) : '—';
  const cards = [
    ['requests', fmtNumber(line.requests), null],
    ['tokens', fmtNumber(line.prompt_tokens + line.completion_tokens),
      t('usage.tokens_split', { prompt: fmtNumber(line.prompt_tokens), completion: fmtNumber(line.completion_tokens) })],
    ['cost', money(Number(line.cost_eur)), null],
    ['errors', fmtNumber(line.errors), t('usage.error_rate', { rate })],
    ['p95', ms(line.p95_latency_ms), t('usage.p95_hint')],
  ];
  return html`<div class="grid usage-totals">${cards.map(([key, value, hint]) => html`<div class="card stat" data-testid=${`usage-total-${key}`}>
    <span class="muted">${t(`usage.total.${key}`)}</span><span class="value">${value}</span>${hint && html`<span class="muted ops-small">${hint}</span>`}
  </div>`)}</div>`;
}

function GroupTable({ data, group }) {
  const columns = [
    { key: group, label: t(`usage.group.${group}`), render: (l) => data.name(l[group]) },
    { key: 'requests', label: t('usage.col.requests'), numeric: true, render: (l) => fmtNumber(l.requests) },
    { key: 'errors', label: t('usage.col.errors'), numeric: true, render: (l) => fmtNumber(l.errors) },
    { key: 'prompt', label: t('usage.col.prompt'), numeric: true, render: (l) => fmtNumber(l.prompt_tokens) },
    { key: 'completion', label: t('usage.col.completion'), numeric: true, render: (l) => fmtNumber(l.completion_tokens) },
    { key: 'cost', label: t('usage.col.cost'), numeric: true, render: (l) => money(Number(l.cost_eur)) },
    { key: 'avg', label: t('usage.col.avg'), numeric: true, render: (l) => ms(l.avg_latency_ms) },
    { key: 'p95', label: t('usage.col.p95'), numeric: true, render: (l) => ms(l.p95_latency_ms) },
  ];
  const rows = [...data.perGroup].sort((a, b) => b.requests - a.requests);
  const title = t('usage.table_title', { group: t(`usage.group.${group}`).toLowerCase() });
  return html`<section class="card" aria-label=${title}><h2>${title}</h2>
    <${Table} columns=${columns} rows=${rows} rowKey=${(l) => l[group]} label=${title} empty=${t('usage.none')} /></section>`;
}

async function exportCsv(since, labels) {
  const response = await api('/v1/usage', { query: { group_by: 'day,team,model', since, format: 'csv' }, raw: true });
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement('a');
  link.href = url;
  link.download = `socle-usage-${labels[0]}-${labels[labels.length - 1]}.csv`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function Select({ label, value, onChange, options, disabled, hint }) {
  return html`<${Field} label=${label} hint=${hint}>
    <select aria-label=${label} value=${value} disabled=${disabled} onChange=${(e) => onChange(e.currentTarget.value)}>
      ${options.map(([v, text]) => html`<option value=${v}>${text}</option>`)}
    </select><//>`;
}

export default function UsagePage({ route }) {
  const { me } = useApp();
  const params = route.params || {};
  const [metric, setMetric] = useState(params.metric in METRICS ? params.metric : 'cost');
  const [group, setGroup] = useState(GROUPS.includes(params.group) ? params.group : 'team');
  const [days, setDays] = useState(PERIODS.includes(Number(params.days)) ? Number(params.days) : 30);
  const [mode, setMode] = useState('stacked');
  const [exportError, setExportError] = useState(null);
  const state = useAsync(() => load(me, group, days), [group, days]);
  const effective = METRICS[metric].additive ? mode : 'lines';
  const actions = html`
    <button class="btn" onClick=${state.reload}><${Icon} name="refresh-cw" />${t('usage.refresh')}</button>
    <button class="btn" disabled=${!state.data} onClick=${() => exportCsv(state.data.since, state.data.labels).catch(setExportError)}>
      <${Icon} name="file-text" />${t('usage.export')}</button>`;
  return html`<${Page} title=${t('usage.title')} subtitle=${t('usage.subtitle')} actions=${actions}>
    <div class="toolbar">
      <${Select} label=${t('usage.metric')} value=${metric} onChange=${setMetric}
        options=${Object.keys(METRICS).map((m) => [m, t(`usage.metric.${m}`)])} />
      <${Select} label=${t('usage.group')} value=${group} onChange=${setGroup} options=${GROUPS.map((g) => [g, t(`usage.group.${g}`)])} />
      <${Select} label=${t('usage.period')} value=${String(days)} onChange=${(v) => setDays(Number(v))}
        options=${PERIODS.map((n) => [String(n), t('usage.days', { n })])} />
      <${Select} label=${t('usage.mode')} value=${effective} onChange=${setMode} disabled=${!METRICS[metric].additive}
        options=${[['stacked', t('usage.mode.stacked')], ['lines', t('usage.mode.lines')]]} />
    </div>
    ${!METRICS[metric].additive && html`<p class="muted ops-small usage-note">${t('usage.mode.p95')}</p>`}
    <${ErrorBox} error=${exportError} />
    <${Async} state=${state}>${(data) => {
      const { group } = data; // what was loaded (the selector may be ahead of it while the next load runs)
      const days = data.labels.length;
      const series = buildSeries(data, group, metric);
      const title = t('usage.chart_title', { metric: t(`usage.metric.${metric}`), group: t(`usage.group.${group}`).toLowerCase() });
      return html`<${Totals} totals=${data.totals} />
        <section class="card" aria-label=${title}><h2>${title}</h2>
          <${Chart} labels=${data.labels} series=${series} mode=${effective} format=${METRICS[metric].format}
            formatLabel=${dayLabel} summary=${summary(series, metric, group, days)} testId="usage-chart" />
        </section>
        <${GroupTable} data=${data} group=${group} />`;
    }}<//>
  <//>`;
}
