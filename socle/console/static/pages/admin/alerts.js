// Alerts: budget thresholds, budgets exceeded, rate limits hit and audit-log outages (GET /v1/admin/alerts),
// newest first, each raised once per threshold and period and delivered to the configured sinks.
import { html, useState } from '../../lib/html.js';
import { api } from '../../lib/api.js';
import { t, fmtDate } from '../../lib/i18n.js';
import { Page, Async, useAsync, Table, Badge, Field, Icon } from '../../lib/ui.js';

export const messages = {
  fr: {
    'alerts.title': 'Alertes', 'alerts.subtitle': 'Seuils de budget, budgets dépassés, limites de débit atteintes, journal d’audit indisponible. Chaque alerte est émise une fois par seuil et par période.',
    'alerts.kind': 'Type', 'alerts.all': 'Tous', 'alerts.refresh': 'Actualiser', 'alerts.none': 'Aucune alerte.',
    'alerts.col.severity': 'Gravité', 'alerts.col.time': 'Date', 'alerts.col.kind': 'Type', 'alerts.col.message': 'Message',
    'alerts.col.period': 'Période', 'alerts.col.sinks': 'Envoyée à', 'alerts.not_delivered': 'en attente',
    'alerts.severity.critical': 'Critique', 'alerts.severity.warning': 'Avertissement', 'alerts.severity.info': 'Information',
    'alerts.severity.resolved': 'Résolue', 'alerts.threshold': 'seuil {n} %', 'alerts.table': 'Alertes',
    'alerts.kind.budget.threshold': 'Seuil de budget', 'alerts.kind.budget.exceeded': 'Budget dépassé',
    'alerts.kind.limit.hit': 'Limite de débit atteinte', 'alerts.kind.audit.unavailable': 'Journal d’audit indisponible',
    'alerts.kind.audit.recovered': 'Journal d’audit rétabli', 'alerts.count': '{n} alerte(s) affichée(s)',
  },
  en: {
    'alerts.title': 'Alerts', 'alerts.subtitle': 'Budget thresholds, budgets exceeded, rate limits hit, audit log unavailable. Each alert is raised once per threshold and period.',
    'alerts.kind': 'Kind', 'alerts.all': 'All', 'alerts.refresh': 'Refresh', 'alerts.none': 'No alerts.',
    'alerts.col.severity': 'Severity', 'alerts.col.time': 'Time', 'alerts.col.kind': 'Kind', 'alerts.col.message': 'Message',
    'alerts.col.period': 'Period', 'alerts.col.sinks': 'Delivered to', 'alerts.not_delivered': 'pending',
    'alerts.severity.critical': 'Critical', 'alerts.severity.warning': 'Warning', 'alerts.severity.info': 'Info',
    'alerts.severity.resolved': 'Resolved', 'alerts.threshold': '{n} % threshold', 'alerts.table': 'Alerts',
    'alerts.kind.budget.threshold': 'Budget threshold', 'alerts.kind.budget.exceeded': 'Budget exceeded',
    'alerts.kind.limit.hit': 'Rate limit hit', 'alerts.kind.audit.unavailable': 'Audit log unavailable',
    'alerts.kind.audit.recovered': 'Audit log recovered', 'alerts.count': '{n} alert(s) shown',
  },
};

const KINDS = ['budget.threshold', 'budget.exceeded', 'limit.hit', 'audit.unavailable', 'audit.recovered'];
const TONES = { critical: 'danger', warning: 'warn', info: 'info', resolved: 'ok' };

// The API has no severity: it follows from the kind and, for budget thresholds, how far the budget is used.
export function severity(alert) {
  if (alert.kind === 'audit.unavailable' || alert.kind === 'budget.exceeded') return 'critical';
  if (alert.kind === 'audit.recovered') return 'resolved';
  if (alert.kind === 'limit.hit') return 'warning';
  if (alert.kind === 'budget.threshold') return alert.threshold >= 100 ? 'critical' : alert.threshold >= 80 ? 'warning' : 'info';
  return 'info';
}

function kindLabel(kind) {
  const label = t(`alerts.kind.${kind}`);
  return label.startsWith('alerts.kind.') ? kind : label;
}

export default function AlertsPage() {
  const [kind, setKind] = useState('');
  const state = useAsync(() => api('/v1/admin/alerts', { query: { kind, limit: 500 } }).then((r) => r.data), [kind]);
  const columns = [
    { key: 'severity', label: t('alerts.col.severity'), render: (a) => {
      const level = severity(a);
      return html`<${Badge} tone=${TONES[level]}>${t(`alerts.severity.${level}`)}<//>`;
    } },
    { key: 'created_at', label: t('alerts.col.time'), render: (a) => html`<time class="ops-nowrap" datetime=${a.created_at}>${fmtDate(a.created_at)}</time>` },
    { key: 'kind', label: t('alerts.col.kind'), render: (a) => html`<span class="ops-nowrap">${kindLabel(a.kind)}</span>
      ${a.kind === 'budget.threshold' && html`<br /><span class="muted ops-small">${t('alerts.threshold', { n: a.threshold })}</span>`}` },
    { key: 'message', label: t('alerts.col.message'), render: (a) => html`${a.message}<br /><code class="muted ops-small">${a.subject}</code>` },
    { key: 'period', label: t('alerts.col.period'), render: (a) => html`<span class="ops-nowrap">${a.period}</span>` },
    { key: 'sinks', label: t('alerts.col.sinks'), render: (a) => (a.delivered_to && a.delivered_to.length
      ? a.delivered_to.map((s) => html`<span class="ops-chip">${s}</span> `)
      : html`<span class="muted">${t('alerts.not_delivered')}</span>`) },
  ];
  const actions = html`<button class="btn" onClick=${state.reload}><${Icon} name="refresh-cw" />${t('alerts.refresh')}</button>`;
  return html`<${Page} title=${t('alerts.title')} subtitle=${t('alerts.subtitle')} actions=${actions}>
    <div class="toolbar">
      <${Field} label=${t('alerts.kind')}>
        <select aria-label=${t('alerts.kind')} value=${kind} onChange=${(e) => setKind(e.currentTarget.value)}>
          <option value="">${t('alerts.all')}</option>
          ${KINDS.map((k) => html`<option value=${k}>${kindLabel(k)}</option>`)}
        </select><//>
    </div>
    <${Async} state=${state}>${(alerts) => html`
      <p class="muted ops-small" role="status">${t('alerts.count', { n: alerts.length })}</p>
      <${Table} columns=${columns} rows=${alerts} label=${t('alerts.table')} empty=${t('alerts.none')} />`}<//>
  <//>`;
}
