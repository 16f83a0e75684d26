// API keys: who holds them, for which team and models, until when, last use; create one (its secret is shown
// once, then only its hash is kept) and revoke (effective at the next request). A team admin sees and
// manages their team's keys; an admin every team's.
import { html, useState } from '../../lib/html.js';
import { api } from '../../lib/api.js';
import { useApp, can } from '../../lib/context.js';
import { t, fmtDate } from '../../lib/i18n.js';
import { Page, Table, Dialog, Field, Form, Async, useAsync, Badge, Icon, CopyButton } from '../../lib/ui.js';
import { ConfirmButton, byId, kindLabel, listOrNull, loadDirectory, nameOf } from './identity-lib.js';

export const messages = {
  fr: {
    'keys.title': 'Clés d’API', 'keys.subtitle': 'Les clés qui donnent accès à l’API, par équipe.',
    'keys.new': 'Nouvelle clé', 'keys.list': 'Clés d’API', 'keys.name': 'Nom', 'keys.prefix': 'Préfixe',
    'keys.owner': 'Titulaire', 'keys.team': 'Équipe', 'keys.models': 'Modèles autorisés', 'keys.expires': 'Expire le',
    'keys.last_used': 'Dernière utilisation', 'keys.status': 'État', 'keys.actions': 'Actions',
    'keys.all_models': 'tous ceux de l’équipe', 'keys.never': 'jamais', 'keys.no_expiry': 'sans expiration',
    'keys.active': 'active', 'keys.revoked': 'révoquée', 'keys.expired': 'expirée',
    'keys.revoke': 'Révoquer', 'keys.revoke_q': 'Révoquer la clé {name} ({prefix}…) ? Les requêtes qui l’utilisent seront refusées dès la prochaine.',
    'keys.show_revoked': 'Afficher les clés révoquées', 'keys.filter_team': 'Équipe', 'keys.all_teams': 'Toutes',
    'keys.owner_hint': 'La clé agit avec les rôles de cette personne ou de ce service dans l’équipe.',
    'keys.no_members': 'Cette équipe n’a aucun membre : donnez d’abord un rôle.', 'keys.models_hint': 'Aucune case cochée : tous les modèles permis à l’équipe.',
    'keys.expiry_hint': 'Facultatif. La clé cesse de fonctionner à la fin de ce jour.',
    'keys.ips': 'Adresses IP autorisées', 'keys.ips_hint': 'Facultatif. Adresses ou réseaux (10.0.0.0/8), séparés par des virgules ou des retours à la ligne.',
    'keys.name_default': 'clé', 'keys.secret_title': 'Votre nouvelle clé',
    'keys.secret_warning': 'Ce secret n’est affiché qu’une seule fois. Copiez-le maintenant et conservez-le en lieu sûr : Socle n’en garde qu’une empreinte et ne pourra pas vous le redonner.',
    'keys.secret_label': 'Secret de la clé', 'keys.secret_done': 'Je l’ai copié', 'keys.yours': 'votre session',
    'keys.revoke_own_q': 'Révoquer la clé {name} ({prefix}…) ? C’est la clé de votre session : vous serez déconnecté.',
    'keys.you': '{name} (vous)',
  },
  en: {
    'keys.title': 'API keys', 'keys.subtitle': 'The keys that give access to the API, per team.',
    'keys.new': 'New key', 'keys.list': 'API keys', 'keys.name': 'Name', 'keys.prefix': 'Prefix',
    'keys.owner': 'Owner', 'keys.team': 'Team', 'keys.models': 'Allowed models', 'keys.expires': 'Expires',
    'keys.last_used': 'Last used', 'keys.status': 'Status', 'keys.actions': 'Actions',
    'keys.all_models': 'all the team’s', 'keys.never': 'never', 'keys.no_expiry': 'no expiry',
    'keys.active': 'active', 'keys.revoked': 'revoked', 'keys.expired': 'expired',
    'keys.revoke': 'Revoke', 'keys.revoke_q': 'Revoke key {name} ({prefix}…)? Requests using it are refused from the next one.',
    'keys.show_revoked': 'Show revoked keys', 'keys.filter_team': 'Team', 'keys.all_teams': 'All',
    'keys.owner_hint': 'The key acts with this person’s or service’s roles in the team.',
    'keys.no_members': 'This team has no members: give someone a role first.', 'keys.models_hint': 'None ticked: every model the team may use.',
    'keys.expiry_hint': 'Optional. The key stops working at the end of that day.',
    'keys.ips': 'Allowed IP addresses', 'keys.ips_hint': 'Optional. Addresses or networks (10.0.0.0/8), separated by commas or new lines.',
    'keys.name_default': 'key', 'keys.secret_title': 'Your new key',
    'keys.secret_warning': 'This secret is shown only once. Copy it now and keep it somewhere safe: Socle keeps only a hash of it and cannot show it again.',
    'keys.secret_label': 'Key secret', 'keys.secret_done': 'I have copied it', 'keys.yours': 'this session',
    'keys.revoke_own_q': 'Revoke key {name} ({prefix}…)? It is the key you are signed in with: you will be signed out.',
    'keys.you': '{name} (you)',
  },
};

// The models a key may be limited to: every configured one for an admin, the team's otherwise.
async function loadModels(me, teamId) {
  if (can(me, 'admin')) return (await api('/v1/admin/model-access')).data.map((m) => m.model);
  if (can(me, 'team.manage')) {
    const models = await api(`/v1/admin/teams/${encodeURIComponent(teamId)}/models`);
    return models.data.filter((m) => m.allowed).map((m) => m.model);
  }
  return (await api('/v1/models')).data.map((m) => m.id);
}

function endOfDay(date) {
  return date ? new Date(`${date}T23:59:59`).toISOString() : undefined;
}

function CreateKey({ me, directory, models, onCreated, onCancel }) {
  const [teamId, setTeamId] = useState(me.team.id);
  // A key acts with its owner's roles in its team: only the team's members can hold one.
  const member = (p) => !directory.admin || (p.bindings || []).some((b) => b.team_id === teamId);
  const principals = directory.principals.filter((p) => !p.disabled_at && member(p));
  function label(p) {
    const name = p.id === me.id ? t('keys.you', { name: p.name }) : p.name;
    if (!directory.admin) return `${name} · ${kindLabel(p.kind)}`;
    return `${name} · ${p.bindings.filter((b) => b.team_id === teamId).map((b) => b.role).join(', ')}`;
  }
  async function submit(form) {
    const body = {
      principal_id: form.get('principal_id'), team: teamId, name: form.get('name') || t('keys.name_default'),
      expires_at: endOfDay(form.get('expires')), ip_allowlist: listOrNull(form.get('ips')) || undefined,
    };
    const chosen = form.getAll('models');
    if (chosen.length) body.allowed_models = chosen;
    onCreated(await api('/v1/admin/keys', { method: 'POST', body }));
  }
  return html`<${Form} onSubmit=${submit} onCancel=${onCancel} submitLabel=${t('ui.create')}>
    <${Field} label=${t('keys.name')}><input name="name" required maxlength="200" placeholder="laptop" /><//>
    ${directory.admin && html`<${Field} label=${t('keys.team')}>
      <select name="team" value=${teamId} onChange=${(e) => setTeamId(e.currentTarget.value)}>
        ${directory.teams.map((team) => html`<option value=${team.id}>${team.name}</option>`)}</select><//>`}
    <${Field} label=${t('keys.owner')} hint=${t('keys.owner_hint')}>
      <select name="principal_id" required>
        ${principals.length === 0 && html`<option value="">${t('keys.no_members')}</option>`}
        ${principals.map((p) => html`<option value=${p.id} selected=${p.id === me.id}>${label(p)}</option>`)}
      </select><//>
    <fieldset class="checks"><legend>${t('keys.models')}</legend>
      ${models.map((m) => html`<label class="check"><input type="checkbox" name="models" value=${m} />${m}</label>`)}
      <span class="field-hint">${t('keys.models_hint')}</span>
    </fieldset>
    <${Field} label=${t('keys.expires')} hint=${t('keys.expiry_hint')}><input name="expires" type="date" /><//>
    <${Field} label=${t('keys.ips')} hint=${t('keys.ips_hint')}><textarea name="ips" rows="2" spellcheck="false"></textarea><//>
  <//>`;
}

function Secret({ created, onClose }) {
  return html`<div class="secret" data-testid="key-secret-box">
    <p class="notice" role="alert"><${Icon} name="shield-alert" /> ${t('keys.secret_warning')}</p>
    <div class="field"><span class="field-label" id="key-secret-label">${t('keys.secret_label')}</span>
      <div class="secret-row"><code class="secret-value" data-testid="key-secret" aria-labelledby="key-secret-label">${created.key}</code>
        <${CopyButton} text=${created.key} /></div></div>
    <div class="form-actions"><button type="button" class="btn primary" onClick=${onClose}>${t('keys.secret_done')}</button></div>
  </div>`;
}

function status(key) {
  if (key.revoked_at) {
    return html`<${Badge} tone="danger">${t('keys.revoked')}<//><div class="muted small">${fmtDate(key.revoked_at)}</div>`;
  }
  if (key.expires_at && new Date(key.expires_at) < new Date()) return html`<${Badge} tone="warn">${t('keys.expired')}<//>`;
  return html`<${Badge} tone="ok">${t('keys.active')}<//>`;
}

export default function KeysPage() {
  const { me } = useApp();
  const [team, setTeam] = useState('');
  const [showRevoked, setShowRevoked] = useState(true);
  const [creating, setCreating] = useState(false);
  const [created, setCreated] = useState(null);
  const state = useAsync(async () => {
    const [keys, directory, models] = await Promise.all([
      api('/v1/admin/keys', { query: { team } }), loadDirectory(me), loadModels(me, me.team.id),
    ]);
    return { keys: keys.data, directory, models };
  }, [team]);
  const actions = html`<button class="btn primary" onClick=${() => setCreating(true)}><${Icon} name="plus" />${t('keys.new')}</button>`;
  return html`<${Page} title=${t('keys.title')} subtitle=${t('keys.subtitle')} actions=${actions}>
    <${Async} state=${state}>${({ keys, directory, models }) => {
      const principals = byId(directory.principals);
      const teams = byId(directory.teams);
      const rows = keys.filter((k) => showRevoked || !k.revoked_at);
      const columns = [
        { key: 'name', label: t('keys.name'), render: (k) => html`<strong>${k.name}</strong>${k.id === me.key_id ? html` <${Badge} tone="info">${t('keys.yours')}<//>` : ''}` },
        { key: 'prefix', label: t('keys.prefix'), render: (k) => html`<code class="nowrap">${k.prefix}…</code>` },
        { key: 'owner', label: t('keys.owner'), render: (k) => nameOf(principals, k.principal_id) },
        { key: 'team', label: t('keys.team'), render: (k) => nameOf(teams, k.team_id) },
        { key: 'models', label: t('keys.models'), render: (k) => k.allowed_models
            ? html`<ul class="chips">${k.allowed_models.map((m) => html`<li><${Badge}>${m}<//></li>`)}</ul>`
            : html`<span class="muted">${t('keys.all_models')}</span>` },
        { key: 'expires', label: t('keys.expires'), render: (k) => (k.expires_at ? fmtDate(k.expires_at) : t('keys.no_expiry')) },
        { key: 'last_used', label: t('keys.last_used'), render: (k) => (k.last_used_at ? fmtDate(k.last_used_at) : t('keys.never')) },
        { key: 'status', label: t('keys.status'), render: status },
        { key: 'actions', label: t('keys.actions'), render: (k) => !k.revoked_at && html`<${ConfirmButton}
            label=${t('keys.revoke')} confirmLabel=${t('keys.revoke')} question=${t(k.id === me.key_id ? 'keys.revoke_own_q' : 'keys.revoke_q', { name: k.name, prefix: k.prefix })}
            onConfirm=${async () => {
              await api(`/v1/admin/keys/${encodeURIComponent(k.id)}`, { method: 'DELETE' });
              state.reload();
            }} />` },
      ];
      return html`<div class="toolbar">
          ${directory.admin && html`<${Field} label=${t('keys.filter_team')}>
            <select value=${team} onChange=${(e) => setTeam(e.currentTarget.value)}>
              <option value="">${t('keys.all_teams')}</option>
              ${directory.teams.map((x) => html`<option value=${x.id}>${x.name}</option>`)}</select><//>`}
          <label class="check"><input type="checkbox" checked=${showRevoked}
            onChange=${(e) => setShowRevoked(e.currentTarget.checked)} />${t('keys.show_revoked')}</label>
        </div>
        <${Table} label=${t('keys.list')} columns=${columns} rows=${rows} />
        <${Dialog} open=${creating} title=${t('keys.new')} onClose=${() => setCreating(false)}>
          ${creating && html`<${CreateKey} me=${me} directory=${directory} models=${models} onCancel=${() => setCreating(false)}
            onCreated=${(key) => { setCreating(false); setCreated(key); state.reload(); }} />`}
        <//>
        <${Dialog} open=${created !== null} title=${t('keys.secret_title')} onClose=${() => setCreated(null)}>
          ${created && html`<${Secret} created=${created} onClose=${() => setCreated(null)} />`}
        <//>`;
    }}<//>
  <//>`;
}
