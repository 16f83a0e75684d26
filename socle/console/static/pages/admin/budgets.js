// Budgets (organisation, team, user or key; daily, monthly or total; euros and/or tokens) with what the
// current period has spent and holds in reservations, and rate limits (requests and tokens per minute per
// key, team, model or team on a model). Admins set them all; a team admin those of their team's users and
// keys (the API refuses the rest, and its message is shown).
import { html, useState } from '../../lib/html.js';
import { api } from '../../lib/api.js';
import { useApp, can } from '../../lib/context.js';
import { t, fmtNumber, fmtDate } from '../../lib/i18n.js';
import { Page, Table, Dialog, Field, Form, Async, useAsync, Badge, Bar, Icon } from '../../lib/ui.js';
import { ConfirmButton, byId, loadDirectory, nameOf, numberOrNull } from './identity-lib.js';

export const messages = {
  fr: {
    'budgets.title': 'Budgets et limites', 'budgets.subtitle': 'Plafonds de dépense par période et limites de débit.',
    'budgets.budgets': 'Budgets', 'budgets.limits': 'Limites de débit', 'budgets.new': 'Nouveau budget',
    'budgets.new_limit': 'Nouvelle limite', 'budgets.scope': 'Portée', 'budgets.target': 'Cible', 'budgets.period': 'Période',
    'budgets.limit': 'Plafond', 'budgets.consumption': 'Consommation de la période', 'budgets.actions': 'Actions',
    'budgets.scope.organisation': 'Organisation', 'budgets.scope.team': 'Équipe', 'budgets.scope.user': 'Utilisateur',
    'budgets.scope.key': 'Clé', 'budgets.scope.model': 'Modèle', 'budgets.scope.team_model': 'Équipe sur un modèle',
    'budgets.period.daily': 'Jour', 'budgets.period.monthly': 'Mois', 'budgets.period.total': 'Total',
    'budgets.limit_eur': 'Plafond en euros', 'budgets.limit_tokens': 'Plafond en jetons',
    'budgets.limits_hint': 'Au moins l’un des deux. Laisser vide : pas de plafond de ce type.',
    'budgets.spent': '{spent} dépensés + {reserved} réservés sur {limit}', 'budgets.tokens': 'jetons',
    'budgets.bar_eur': 'Euros consommés : {name}', 'budgets.bar_tokens': 'Jetons consommés : {name}',
    'budgets.until': 'jusqu’au {date}', 'budgets.edit': 'Modifier', 'budgets.edit_title': 'Modifier le budget',
    'budgets.delete_q': 'Supprimer ce budget ({name}) ? Ses compteurs sont effacés.',
    'budgets.list': 'Budgets', 'budgets.limit_list': 'Limites de débit', 'budgets.rpm': 'Requêtes / min', 'budgets.tpm': 'Jetons / min',
    'budgets.rate_hint': 'Laisser vide : pas de limite de ce type.', 'budgets.edit_limit': 'Modifier la limite',
    'budgets.delete_limit_q': 'Supprimer cette limite ({name}) ?', 'budgets.pick': 'Choisir…', 'budgets.model': 'Modèle',
    'budgets.none': 'aucun', 'budgets.no_budgets': 'Aucun budget : rien n’est plafonné.', 'budgets.no_limits': 'Aucune limite propre (les valeurs par défaut s’appliquent).',
    'budgets.team_admin_note': 'Vous fixez les budgets et limites des utilisateurs et des clés de votre équipe ; ceux de l’équipe relèvent d’un administrateur.',
  },
  en: {
    'budgets.title': 'Budgets and limits', 'budgets.subtitle': 'Spending caps per period, and rate limits.',
    'budgets.budgets': 'Budgets', 'budgets.limits': 'Rate limits', 'budgets.new': 'New budget',
    'budgets.new_limit': 'New limit', 'budgets.scope': 'Scope', 'budgets.target': 'Target', 'budgets.period': 'Period',
    'budgets.limit': 'Limit', 'budgets.consumption': 'This period’s consumption', 'budgets.actions': 'Actions',
    'budgets.scope.organisation': 'Organisation', 'budgets.scope.team': 'Team', 'budgets.scope.user': 'User',
    'budgets.scope.key': 'Key', 'budgets.scope.model': 'Model', 'budgets.scope.team_model': 'Team on a model',
    'budgets.period.daily': 'Day', 'budgets.period.monthly': 'Month', 'budgets.period.total': 'Total',
    'budgets.limit_eur': 'Limit in euros', 'budgets.limit_tokens': 'Limit in tokens',
    'budgets.limits_hint': 'At least one of the two. Empty: no limit of that kind.',
    'budgets.spent': '{spent} spent + {reserved} reserved of {limit}', 'budgets.tokens': 'tokens',
    'budgets.bar_eur': 'Euros used: {name}', 'budgets.bar_tokens': 'Tokens used: {name}',
    'budgets.until': 'until {date}', 'budgets.edit': 'Edit', 'budgets.edit_title': 'Edit budget',
    'budgets.delete_q': 'Delete this budget ({name})? Its counters are erased.',
    'budgets.list': 'Budgets', 'budgets.limit_list': 'Rate limits', 'budgets.rpm': 'Requests / min', 'budgets.tpm': 'Tokens / min',
    'budgets.rate_hint': 'Empty: no limit of that kind.', 'budgets.edit_limit': 'Edit limit',
    'budgets.delete_limit_q': 'Delete this limit ({name})?', 'budgets.pick': 'Choose…', 'budgets.model': 'Model',
    'budgets.none': 'none', 'budgets.no_budgets': 'No budget: nothing is capped.', 'budgets.no_limits': 'No limit of its own (the defaults apply).',
    'budgets.team_admin_note': 'You set the budgets and limits of your team’s users and keys; the team’s own are set by an administrator.',
  },
};

const BUDGET_SCOPES = ['organisation', 'team', 'user', 'key'];
const LIMIT_SCOPES = ['key', 'team', 'model', 'team_model'];
const PERIODS = ['daily', 'monthly', 'total'];
const enc = encodeURIComponent;

function euros(value) {
  const n = Number(value);
  return fmtNumber(n, { style: 'currency', currency: 'EUR', maximumFractionDigits: n !== 0 && Math.abs(n) < 1 ? 4 : 2 });
}

async function loadAll(me) {
  const admin = can(me, 'admin');
  const [budgets, limits, directory, keys, orgs, models] = await Promise.all([
    api('/v1/admin/budgets'), api('/v1/admin/limits'), loadDirectory(me),
    can(me, 'keys.manage') ? api('/v1/admin/keys') : Promise.resolve({ data: [] }),
    admin ? api('/v1/admin/organisations') : Promise.resolve({ data: [] }),
    admin ? api('/v1/admin/model-access') : Promise.resolve({ data: [] }),
  ]);
  const names = { organisation: byId(orgs.data), team: byId(directory.teams), user: byId(directory.principals), key: byId(keys.data) };
  return { admin, budgets: budgets.data, limits: limits.data, directory, keys: keys.data, orgs: orgs.data, models: models.data.map((m) => m.model), names };
}

// "team research", "key laptop", "research on fake-chat".
function targetName(names, scope, id) {
  if (scope === 'model') return id;
  if (scope === 'team_model') {
    const [team, ...model] = id.split(':');
    return `${nameOf(names.team, team)} · ${model.join(':')}`;
  }
  return nameOf(names[scope], id);
}

function Usage({ status, name }) {
  const b = status.budget;
  const parts = [];
  if (b.limit_eur != null) {
    const used = Number(status.spent_eur) + Number(status.reserved_eur);
    parts.push(html`<div class="usage">
      <${Bar} value=${used} max=${Number(b.limit_eur)} label=${t('budgets.bar_eur', { name })} />
      <span class="usage-text" data-testid="budget-spent-eur">${t('budgets.spent', { spent: euros(status.spent_eur), reserved: euros(status.reserved_eur), limit: euros(b.limit_eur) })}</span>
    </div>`);
  }
  if (b.limit_tokens != null) {
    const used = status.spent_tokens + status.reserved_tokens;
    parts.push(html`<div class="usage">
      <${Bar} value=${used} max=${b.limit_tokens} label=${t('budgets.bar_tokens', { name })} />
      <span class="usage-text" data-testid="budget-spent-tokens">${t('budgets.spent', { spent: fmtNumber(status.spent_tokens), reserved: fmtNumber(status.reserved_tokens), limit: `${fmtNumber(b.limit_tokens)} ${t('budgets.tokens')}` })}</span>
    </div>`);
  }
  return parts;
}

function TargetField({ scope, data, label }) {
  const { names, directory, keys, orgs, models } = data;
  const pick = html`<option value="">${t('budgets.pick')}</option>`;
  if (scope === 'organisation') return html`<${Field} label=${label}><select name="target" required>${orgs.map((o) => html`<option value=${o.id}>${o.name}</option>`)}</select><//>`;
  if (scope === 'team') return html`<${Field} label=${label}><select name="target" required>${pick}${directory.teams.map((x) => html`<option value=${x.id}>${x.name}</option>`)}</select><//>`;
  if (scope === 'user') return html`<${Field} label=${label}><select name="target" required>${pick}${directory.principals.map((p) => html`<option value=${p.id}>${p.name}</option>`)}</select><//>`;
  if (scope === 'key') {
    return html`<${Field} label=${label}><select name="target" required>${pick}${keys.filter((k) => !k.revoked_at).map((k) => html`<option value=${k.id}>${k.name} (${k.prefix}…, ${nameOf(names.team, k.team_id)})</option>`)}</select><//>`;
  }
  const modelSelect = html`<${Field} label=${t('budgets.model')}><select name="model" required>${pick}${models.map((m) => html`<option value=${m}>${m}</option>`)}</select><//>`;
  if (scope === 'model') return modelSelect;
  return html`<div class="form-row"><${Field} label=${t('budgets.scope.team')}><select name="team" required>${pick}${directory.teams.map((x) => html`<option value=${x.id}>${x.name}</option>`)}</select><//>${modelSelect}</div>`;
}

function target(scope, form) {
  if (scope === 'model') return form.get('model');
  if (scope === 'team_model') return `${form.get('team')}:${form.get('model')}`;
  return form.get('target');
}

function BudgetForm({ data, status, onDone, onCancel }) {
  const scopes = data.admin ? BUDGET_SCOPES : ['user', 'key'];
  const [scope, setScope] = useState(scopes[0] === 'organisation' ? 'team' : scopes[0]);
  const b = status && status.budget;
  async function submit(form) {
    const limits = { limit_eur: numberOrNull(form.get('limit_eur')) === null ? null : form.get('limit_eur').trim(), limit_tokens: numberOrNull(form.get('limit_tokens')) };
    if (b) await api(`/v1/admin/budgets/${enc(b.id)}`, { method: 'PATCH', body: limits });
    else await api('/v1/admin/budgets', { method: 'POST', body: { scope, target: target(scope, form), period: form.get('period'), ...limits } });
    onDone();
  }
  return html`<${Form} onSubmit=${submit} onCancel=${onCancel} submitLabel=${b ? t('ui.save') : t('ui.create')}>
    ${!b && html`<div class="form-row">
      <${Field} label=${t('budgets.scope')}><select name="scope" value=${scope} onChange=${(e) => setScope(e.currentTarget.value)}>
        ${scopes.map((s) => html`<option value=${s}>${t(`budgets.scope.${s}`)}</option>`)}</select><//>
      <${Field} label=${t('budgets.period')}><select name="period">${PERIODS.map((p) => html`<option value=${p} selected=${p === 'monthly'}>${t(`budgets.period.${p}`)}</option>`)}</select><//>
    </div>
    <${TargetField} scope=${scope} data=${data} label=${t('budgets.target')} />`}
    <div class="form-row">
      <${Field} label=${t('budgets.limit_eur')}><input name="limit_eur" type="number" min="0" step="0.01" inputmode="decimal" value=${b ? b.limit_eur ?? '' : ''} /><//>
      <${Field} label=${t('budgets.limit_tokens')}><input name="limit_tokens" type="number" min="0" step="1" value=${b ? b.limit_tokens ?? '' : ''} /><//>
    </div>
    <p class="field-hint">${t('budgets.limits_hint')}</p>
  <//>`;
}

function LimitForm({ data, limit, onDone, onCancel }) {
  const scopes = data.admin ? LIMIT_SCOPES : ['key'];
  const [scope, setScope] = useState(scopes[0] === 'key' && data.admin ? 'team' : scopes[0]);
  async function submit(form) {
    const rates = { requests_per_minute: numberOrNull(form.get('rpm')), tokens_per_minute: numberOrNull(form.get('tpm')) };
    if (limit) await api(`/v1/admin/limits/${enc(limit.id)}`, { method: 'PATCH', body: rates });
    else await api('/v1/admin/limits', { method: 'POST', body: { scope, target: target(scope, form), ...rates } });
    onDone();
  }
  return html`<${Form} onSubmit=${submit} onCancel=${onCancel} submitLabel=${limit ? t('ui.save') : t('ui.create')}>
    ${!limit && html`<${Field} label=${t('budgets.scope')}><select name="scope" value=${scope} onChange=${(e) => setScope(e.currentTarget.value)}>
        ${scopes.map((s) => html`<option value=${s}>${t(`budgets.scope.${s}`)}</option>`)}</select><//>
      <${TargetField} scope=${scope} data=${data} label=${t('budgets.target')} />`}
    <div class="form-row">
      <${Field} label=${t('budgets.rpm')}><input name="rpm" type="number" min="1" step="1" value=${limit ? limit.requests_per_minute ?? '' : ''} /><//>
      <${Field} label=${t('budgets.tpm')}><input name="tpm" type="number" min="1" step="1" value=${limit ? limit.tokens_per_minute ?? '' : ''} /><//>
    </div>
    <p class="field-hint">${t('budgets.rate_hint')}</p>
  <//>`;
}

function budgetColumns(data, edit, reload) {
  const name = (b) => `${t(`budgets.scope.${b.scope}`)} ${targetName(data.names, b.scope, b.scope_id)}`;
  return [
    { key: 'scope', label: t('budgets.scope'), render: (s) => html`<${Badge} tone="info">${t(`budgets.scope.${s.budget.scope}`)}<//>` },
    { key: 'target', label: t('budgets.target'), render: (s) => html`<strong>${targetName(data.names, s.budget.scope, s.budget.scope_id)}</strong>` },
    { key: 'period', label: t('budgets.period'), render: (s) => html`${t(`budgets.period.${s.budget.period}`)}
        ${s.period_end && html`<div class="muted small">${t('budgets.until', { date: fmtDate(s.period_end) })}</div>`}` },
    { key: 'limit', label: t('budgets.limit'), render: (s) => html`${s.budget.limit_eur != null && html`<div>${euros(s.budget.limit_eur)}</div>`}
        ${s.budget.limit_tokens != null && html`<div>${fmtNumber(s.budget.limit_tokens)} ${t('budgets.tokens')}</div>`}` },
    { key: 'usage', label: t('budgets.consumption'), render: (s) => html`<${Usage} status=${s} name=${name(s.budget)} />` },
    { key: 'actions', label: t('budgets.actions'), render: (s) => html`<div class="row-actions">
        <button type="button" class="btn small" aria-label=${`${t('budgets.edit')} ${name(s.budget)}`} onClick=${() => edit(s)}>${t('budgets.edit')}</button>
        <${ConfirmButton} label=${t('ui.delete')} confirmLabel=${t('ui.delete')} question=${t('budgets.delete_q', { name: name(s.budget) })}
          onConfirm=${async () => { await api(`/v1/admin/budgets/${enc(s.budget.id)}`, { method: 'DELETE' }); reload(); }} /></div>` },
  ];
}

function limitColumns(data, edit, reload) {
  const name = (x) => `${t(`budgets.scope.${x.scope}`)} ${targetName(data.names, x.scope, x.scope_id)}`;
  const rate = (v) => (v == null ? html`<span class="muted">${t('budgets.none')}</span>` : fmtNumber(v));
  return [
    { key: 'scope', label: t('budgets.scope'), render: (x) => html`<${Badge} tone="info">${t(`budgets.scope.${x.scope}`)}<//>` },
    { key: 'target', label: t('budgets.target'), render: (x) => html`<strong>${targetName(data.names, x.scope, x.scope_id)}</strong>` },
    { key: 'rpm', label: t('budgets.rpm'), numeric: true, render: (x) => rate(x.requests_per_minute) },
    { key: 'tpm', label: t('budgets.tpm'), numeric: true, render: (x) => rate(x.tokens_per_minute) },
    { key: 'actions', label: t('budgets.actions'), render: (x) => html`<div class="row-actions">
        <button type="button" class="btn small" aria-label=${`${t('budgets.edit')} ${name(x)}`} onClick=${() => edit(x)}>${t('budgets.edit')}</button>
        <${ConfirmButton} label=${t('ui.delete')} confirmLabel=${t('ui.delete')} question=${t('budgets.delete_limit_q', { name: name(x) })}
          onConfirm=${async () => { await api(`/v1/admin/limits/${enc(x.id)}`, { method: 'DELETE' }); reload(); }} /></div>` },
  ];
}

export default function BudgetsPage() {
  const { me } = useApp();
  const state = useAsync(() => loadAll(me), []);
  const [dialog, setDialog] = useState(null);
  const done = () => {
    setDialog(null);
    state.reload();
  };
  const close = () => setDialog(null);
  const actions = html`
    <button class="btn primary" onClick=${() => setDialog({ kind: 'budget' })}><${Icon} name="plus" />${t('budgets.new')}</button>
    <button class="btn" onClick=${() => setDialog({ kind: 'limit' })}><${Icon} name="plus" />${t('budgets.new_limit')}</button>`;
  const titles = { budget: t('budgets.new'), limit: t('budgets.new_limit') };
  return html`<${Page} title=${t('budgets.title')} subtitle=${t('budgets.subtitle')} actions=${actions}>
    <${Async} state=${state}>${(data) => html`
      ${!data.admin && html`<p class="notice">${t('budgets.team_admin_note')}</p>`}
      <h2 class="section-title">${t('budgets.budgets')}</h2>
      <${Table} label=${t('budgets.list')} rows=${data.budgets} rowKey=${(s) => s.budget.id} empty=${t('budgets.no_budgets')}
        columns=${budgetColumns(data, (s) => setDialog({ kind: 'budget', status: s }), state.reload)} />
      <h2 class="section-title">${t('budgets.limits')}</h2>
      <${Table} label=${t('budgets.limit_list')} rows=${data.limits} empty=${t('budgets.no_limits')}
        columns=${limitColumns(data, (x) => setDialog({ kind: 'limit', limit: x }), state.reload)} />
      <${Dialog} open=${dialog !== null} onClose=${close}
        title=${dialog && (dialog.status ? t('budgets.edit_title') : dialog.limit ? t('budgets.edit_limit') : titles[dialog.kind])}>
        ${dialog && dialog.kind === 'budget' && html`<${BudgetForm} data=${data} status=${dialog.status} onDone=${done} onCancel=${close} />`}
        ${dialog && dialog.kind === 'limit' && html`<${LimitForm} data=${data} limit=${dialog.limit} onDone=${done} onCancel=${close} />`}
      <//>`}<//>
  <//>`;
}
