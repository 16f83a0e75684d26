// Users and service accounts (principals): who they are, their roles in which teams; create, edit, disable
// (every key of a disabled principal stops at the next request) and enable again. Admins only.
import { html, useState } from '../../lib/html.js';
import { api } from '../../lib/api.js';
import { t, fmtDate } from '../../lib/i18n.js';
import { Page, Table, Dialog, Field, Form, Async, useAsync, Badge, Icon } from '../../lib/ui.js';
import { ConfirmButton, byId, kindLabel, nameOf } from './identity-lib.js';

export const messages = {
  fr: {
    'users.title': 'Utilisateurs et services',
    'users.subtitle': 'Les personnes et les programmes qui utilisent Socle, et leurs rôles par équipe.',
    'users.new_user': 'Nouvel utilisateur', 'users.new_service': 'Nouveau compte de service',
    'users.name': 'Nom', 'users.kind': 'Type', 'users.email': 'E-mail', 'users.roles': 'Équipes et rôles',
    'users.status': 'État', 'users.created': 'Créé le', 'users.actions': 'Actions', 'users.list': 'Utilisateurs et comptes de service',
    'users.active': 'actif', 'users.disabled': 'désactivé', 'users.edit': 'Modifier', 'users.edit_title': 'Modifier {name}',
    'users.disable': 'Désactiver', 'users.enable': 'Réactiver',
    'users.disable_q': 'Désactiver {name} ? Toutes ses clés cessent de fonctionner dès la prochaine requête.',
    'users.enable_q': 'Réactiver {name} ? Ses clés non révoquées fonctionnent de nouveau.',
    'users.org': 'Organisation', 'users.filter': 'Afficher', 'users.all': 'Tous', 'users.users': 'Utilisateurs',
    'users.services': 'Comptes de service', 'users.no_roles': 'aucun rôle',
    'users.email_hint': 'Facultatif. Sert à relier le compte de l’annuaire (SSO).',
    'users.service_hint': 'Un compte de service représente un programme ; donnez-lui un rôle dans une équipe, puis une clé.',
    'users.copy_id': 'Identifiant',
  },
  en: {
    'users.title': 'Users and services',
    'users.subtitle': 'The people and programs that use Socle, and their roles in each team.',
    'users.new_user': 'New user', 'users.new_service': 'New service account',
    'users.name': 'Name', 'users.kind': 'Kind', 'users.email': 'E-mail', 'users.roles': 'Teams and roles',
    'users.status': 'Status', 'users.created': 'Created', 'users.actions': 'Actions', 'users.list': 'Users and service accounts',
    'users.active': 'active', 'users.disabled': 'disabled', 'users.edit': 'Edit', 'users.edit_title': 'Edit {name}',
    'users.disable': 'Disable', 'users.enable': 'Enable',
    'users.disable_q': 'Disable {name}? All their keys stop working from the next request.',
    'users.enable_q': 'Enable {name} again? Their keys that are not revoked work again.',
    'users.org': 'Organisation', 'users.filter': 'Show', 'users.all': 'Everyone', 'users.users': 'Users',
    'users.services': 'Service accounts', 'users.no_roles': 'no role',
    'users.email_hint': 'Optional. Links the account to the directory (SSO).',
    'users.service_hint': 'A service account stands for a program: give it a role in a team, then a key.',
    'users.copy_id': 'Id',
  },
};

const enc = encodeURIComponent;

function PrincipalForm({ principal, kind, orgs, onDone, onCancel }) {
  async function submit(form) {
    const email = (form.get('email') || '').trim();
    if (principal) {
      await api(`/v1/admin/principals/${enc(principal.id)}`, { method: 'PATCH', body: { name: form.get('name'), email } });
    } else {
      await api('/v1/admin/principals', {
        method: 'POST', body: { kind, name: form.get('name'), email: email || undefined, org: form.get('org') || undefined },
      });
    }
    onDone();
  }
  const service = (principal ? principal.kind : kind) === 'service';
  return html`<${Form} onSubmit=${submit} onCancel=${onCancel} submitLabel=${principal ? t('ui.save') : t('ui.create')}>
    ${service && !principal && html`<p class="muted">${t('users.service_hint')}</p>`}
    <${Field} label=${t('users.name')}><input name="name" required maxlength="200" value=${principal ? principal.name : ''} /><//>
    ${!service && html`<${Field} label=${t('users.email')} hint=${t('users.email_hint')}>
      <input name="email" type="email" maxlength="320" value=${principal ? principal.email || '' : ''} /><//>`}
    ${!principal && orgs.length > 1 && html`<${Field} label=${t('users.org')}>
      <select name="org">${orgs.map((o) => html`<option value=${o.id}>${o.name}</option>`)}</select><//>`}
  <//>`;
}

function Roles({ bindings, teams }) {
  if (!bindings.length) return html`<span class="muted">${t('users.no_roles')}</span>`;
  return html`<ul class="chips">${bindings.map((b) => html`<li><${Badge} tone="info">${nameOf(teams, b.team_id)} · ${b.role}<//></li>`)}</ul>`;
}

export default function UsersPage() {
  const [kind, setKind] = useState('');
  const state = useAsync(async () => {
    const [principals, teams, orgs] = await Promise.all([
      api('/v1/admin/principals', { query: { kind } }), api('/v1/admin/teams'), api('/v1/admin/organisations'),
    ]);
    return { principals: principals.data, teams: byId(teams.data), orgs: orgs.data };
  }, [kind]);
  const [dialog, setDialog] = useState(null);
  const done = () => {
    setDialog(null);
    state.reload();
  };
  const setDisabled = (p, disabled) => async () => {
    await api(`/v1/admin/principals/${enc(p.id)}`, { method: 'PATCH', body: { disabled } });
    state.reload();
  };
  const actions = html`
    <button class="btn primary" onClick=${() => setDialog({ kind: 'user' })}><${Icon} name="plus" />${t('users.new_user')}</button>
    <button class="btn" onClick=${() => setDialog({ kind: 'service' })}><${Icon} name="bot" />${t('users.new_service')}</button>`;
  return html`<${Page} title=${t('users.title')} subtitle=${t('users.subtitle')} actions=${actions}>
    <div class="toolbar">
      <${Field} label=${t('users.filter')}><select value=${kind} onChange=${(e) => setKind(e.currentTarget.value)}>
        <option value="">${t('users.all')}</option><option value="user">${t('users.users')}</option>
        <option value="service">${t('users.services')}</option></select><//>
    </div>
    <${Async} state=${state}>${({ principals, teams, orgs }) => {
      const columns = [
        { key: 'name', label: t('users.name'), render: (p) => html`<strong>${p.name}</strong><div class="muted mono small" title=${t('users.copy_id')}>${p.id}</div>` },
        { key: 'kind', label: t('users.kind'), render: (p) => html`<${Badge}>${kindLabel(p.kind)}<//>` },
        { key: 'email', label: t('users.email') },
        { key: 'roles', label: t('users.roles'), render: (p) => html`<${Roles} bindings=${p.bindings || []} teams=${teams} />` },
        { key: 'status', label: t('users.status'), render: (p) => p.disabled_at
            ? html`<${Badge} tone="danger">${t('users.disabled')}<//>` : html`<${Badge} tone="ok">${t('users.active')}<//>` },
        { key: 'created', label: t('users.created'), render: (p) => fmtDate(p.created_at) },
        { key: 'actions', label: t('users.actions'), render: (p) => html`<div class="row-actions">
            <button type="button" class="btn small" aria-label=${`${t('users.edit')} ${p.name}`}
              onClick=${() => setDialog({ principal: p })}>${t('users.edit')}</button>
            ${p.disabled_at
              ? html`<${ConfirmButton} danger=${false} label=${t('users.enable')} confirmLabel=${t('users.enable')}
                  question=${t('users.enable_q', { name: p.name })} onConfirm=${setDisabled(p, false)} />`
              : html`<${ConfirmButton} label=${t('users.disable')} confirmLabel=${t('users.disable')}
                  question=${t('users.disable_q', { name: p.name })} onConfirm=${setDisabled(p, true)} />`}
          </div>` },
      ];
      const title = dialog && (dialog.principal ? t('users.edit_title', { name: dialog.principal.name })
        : dialog.kind === 'service' ? t('users.new_service') : t('users.new_user'));
      return html`<${Table} label=${t('users.list')} columns=${columns} rows=${principals} />
        <${Dialog} open=${dialog !== null} title=${title} onClose=${() => setDialog(null)}>
          ${dialog && html`<${PrincipalForm} principal=${dialog.principal} kind=${dialog.kind} orgs=${orgs}
            onDone=${done} onCancel=${() => setDialog(null)} />`}
        <//>`;
    }}<//>
  <//>`;
}
