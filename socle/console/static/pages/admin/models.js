// Model access: which teams may use which public models. A model with grants is for the teams granted; one
// without follows the platform default (open to every team, or denied to all). Admins grant and revoke;
// revoking a model's last grant under "open" would open it to everyone, so the API refuses unless asked.
import { html, useState } from '../../lib/html.js';
import { api } from '../../lib/api.js';
import { t } from '../../lib/i18n.js';
import { Page, Table, Dialog, ErrorBox, Async, useAsync, Badge, Field, Icon } from '../../lib/ui.js';
import { byId, nameOf } from './identity-lib.js';

export const messages = {
  fr: {
    'models.title': 'Accès aux modèles', 'models.subtitle': 'Quelles équipes peuvent utiliser quels modèles.',
    'models.default_open': 'Par défaut : ouvert. Un modèle sans autorisation est utilisable par toutes les équipes ; l’autoriser à une première équipe le ferme aux autres.',
    'models.default_deny': 'Par défaut : refusé. Un modèle sans autorisation n’est utilisable par aucune équipe.',
    'models.list': 'Modèles et équipes autorisées', 'models.model': 'Modèle', 'models.access': 'Accès', 'models.teams': 'Équipes autorisées',
    'models.grant': 'Autoriser', 'models.grant_to': 'Autoriser {model} à une équipe', 'models.team': 'Équipe', 'models.pick': 'Choisir une équipe…',
    'models.open': 'ouvert à toutes les équipes', 'models.closed': 'fermé à toutes les équipes', 'models.restricted': 'réservé',
    'models.revoke': 'Retirer {model} à {team}', 'models.revoke_q': 'Retirer l’accès à {model} à l’équipe {team} ? Ses requêtes sur ce modèle seront refusées.',
    'models.reopen': 'Retirer et ouvrir à toutes les équipes', 'models.none': 'aucune',
    'models.team_view': 'Ce qu’une équipe peut utiliser', 'models.allowed': 'autorisé', 'models.denied': 'refusé',
    'models.why_granted': 'autorisation explicite', 'models.why_open': 'modèle ouvert', 'models.why_other': 'réservé à d’autres équipes',
    'models.why_deny': 'refus par défaut', 'models.why': 'Pourquoi', 'models.not_configured': 'non configuré', 'models.team_models': 'Modèles de l’équipe',
  },
  en: {
    'models.title': 'Model access', 'models.subtitle': 'Which teams may use which models.',
    'models.default_open': 'Default: open. A model without grants may be used by every team; granting it to a first team closes it to the others.',
    'models.default_deny': 'Default: deny. A model without grants may be used by no team.',
    'models.list': 'Models and granted teams', 'models.model': 'Model', 'models.access': 'Access', 'models.teams': 'Teams granted',
    'models.grant': 'Grant', 'models.grant_to': 'Grant {model} to a team', 'models.team': 'Team', 'models.pick': 'Choose a team…',
    'models.open': 'open to every team', 'models.closed': 'closed to every team', 'models.restricted': 'restricted',
    'models.revoke': 'Revoke {model} from {team}', 'models.revoke_q': 'Take {model} away from team {team}? Its requests for this model will be refused.',
    'models.reopen': 'Revoke and open to every team', 'models.none': 'none',
    'models.team_view': 'What a team may use', 'models.allowed': 'allowed', 'models.denied': 'denied',
    'models.why_granted': 'granted', 'models.why_open': 'open model', 'models.why_other': 'restricted to other teams',
    'models.why_deny': 'denied by default', 'models.why': 'Why', 'models.not_configured': 'not configured', 'models.team_models': 'The team’s models',
  },
};

const enc = encodeURIComponent;

function access(policy) {
  if (!policy.restricted) return html`<${Badge} tone="ok">${t('models.open')}<//>`;
  if (!policy.teams.length) return html`<${Badge} tone="danger">${t('models.closed')}<//>`;
  return html`<${Badge} tone="info">${t('models.restricted')}<//>`;
}

// Revoke with a confirmation; a refusal to reopen the model (409 last_grant) offers to do so explicitly.
function RevokeChip({ model, team, onDone }) {
  const [open, setOpen] = useState(false);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  async function revoke(reopen) {
    setBusy(true);
    setError(null);
    try {
      await api(`/v1/admin/teams/${enc(team.id)}/models/${enc(model)}`, { method: 'DELETE', query: reopen ? { reopen: true } : undefined });
      setOpen(false);
      onDone();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }
  const label = t('models.revoke', { model, team: team.name });
  return html`<li class="chip"><span>${team.name}</span>
    <button type="button" class="chip-x" aria-label=${label} title=${label} onClick=${() => { setError(null); setOpen(true); }}>
      <${Icon} name="x" size=${14} /></button>
    <${Dialog} open=${open} title=${label} onClose=${() => setOpen(false)}>
      <p>${t('models.revoke_q', { model, team: team.name })}</p>
      <${ErrorBox} error=${error} />
      <div class="form-actions">
        <button type="button" class="btn ghost" onClick=${() => setOpen(false)}>${t('ui.cancel')}</button>
        ${error && error.code === 'last_grant'
          ? html`<button type="button" class="btn danger" disabled=${busy} onClick=${() => revoke(true)}>${t('models.reopen')}</button>`
          : html`<button type="button" class="btn danger" disabled=${busy} onClick=${() => revoke(false)}>${t('ui.confirm')}</button>`}
      </div>
    <//></li>`;
}

function GrantForm({ model, teams, granted, onDone }) {
  const [error, setError] = useState(null);
  async function submit(event) {
    event.preventDefault();
    const form = event.currentTarget;
    const team = new FormData(form).get('team');
    setError(null);
    try {
      await api(`/v1/admin/teams/${enc(team)}/models/${enc(model)}`, { method: 'PUT' });
      form.reset();
      onDone();
    } catch (err) {
      setError(err);
    }
  }
  const candidates = teams.filter((x) => !granted.includes(x.id));
  return html`<form class="inline-form" onSubmit=${submit}>
    <select name="team" required aria-label=${t('models.grant_to', { model })}>
      <option value="">${t('models.pick')}</option>
      ${candidates.map((x) => html`<option value=${x.id}>${x.name}</option>`)}
    </select>
    <button type="submit" class="btn small"><${Icon} name="check" size=${16} />${t('models.grant')}</button>
    <${ErrorBox} error=${error} />
  </form>`;
}

// Why a team may or may not use a model, from the team's view and the model's policy.
function why(row, policy) {
  if (!row.configured) return t('models.not_configured');
  if (row.granted) return t('models.why_granted');
  if (!row.restricted) return t('models.why_open');
  return policy && policy.teams.length ? t('models.why_other') : t('models.why_deny');
}

function TeamView({ teams, policies, version }) {
  const [team, setTeam] = useState(teams[0] ? teams[0].id : '');
  const state = useAsync(() => (team ? api(`/v1/admin/teams/${enc(team)}/models`) : Promise.resolve({ data: [] })), [team, version]);
  const columns = [
    { key: 'model', label: t('models.model'), render: (r) => html`<code>${r.model}</code>` },
    { key: 'allowed', label: t('models.access'), render: (r) => (r.allowed
        ? html`<${Badge} tone="ok">${t('models.allowed')}<//>` : html`<${Badge} tone="danger">${t('models.denied')}<//>`) },
    { key: 'why', label: t('models.why'), render: (r) => html`<span class="muted">${why(r, policies.get(r.model))}</span>` },
  ];
  return html`<section class="card spaced" aria-labelledby="team-view-title">
    <h2 id="team-view-title">${t('models.team_view')}</h2>
    <div class="toolbar"><${Field} label=${t('models.team')}>
      <select value=${team} onChange=${(e) => setTeam(e.currentTarget.value)}>
        ${teams.map((x) => html`<option value=${x.id}>${x.name}</option>`)}</select><//></div>
    <${Async} state=${state}>${(data) => html`<${Table} label=${t('models.team_models')} columns=${columns} rows=${data.data} rowKey=${(r) => r.model} />`}<//>
  </section>`;
}

export default function ModelsPage() {
  const [version, setVersion] = useState(0);
  const state = useAsync(async () => {
    const [policies, teams] = await Promise.all([api('/v1/admin/model-access'), api('/v1/admin/teams')]);
    return { policies: policies.data, teams: teams.data };
  }, [version]);
  const changed = () => setVersion((v) => v + 1);
  return html`<${Page} title=${t('models.title')} subtitle=${t('models.subtitle')}>
    <${Async} state=${state}>${({ policies, teams }) => {
      const names = byId(teams);
      const deny = policies.length > 0 && policies[0].default === 'deny';
      const columns = [
        { key: 'model', label: t('models.model'), render: (p) => html`<code>${p.model}</code>` },
        { key: 'access', label: t('models.access'), render: access },
        { key: 'teams', label: t('models.teams'), render: (p) => (p.teams.length
            ? html`<ul class="chips">${p.teams.map((id) => html`<${RevokeChip} key=${id} model=${p.model}
                team=${{ id, name: nameOf(names, id) }} onDone=${changed} />`)}</ul>`
            : html`<span class="muted">${t('models.none')}</span>`) },
        { key: 'grant', label: t('models.grant'), render: (p) => html`<${GrantForm} model=${p.model} teams=${teams} granted=${p.teams} onDone=${changed} />` },
      ];
      return html`<p class=${deny ? 'notice' : 'info-box'} data-testid="model-default">${deny ? t('models.default_deny') : t('models.default_open')}</p>
        <${Table} label=${t('models.list')} columns=${columns} rows=${policies} rowKey=${(p) => p.model} />
        <${TeamView} teams=${teams} policies=${new Map(policies.map((p) => [p.model, p]))} version=${version} />`;
    }}<//>
  <//>`;
}
