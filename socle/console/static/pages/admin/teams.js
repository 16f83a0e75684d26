// Teams: the list (admins), create, rename or reclassify, delete; a team's members and their roles, bind and
// unbind. A team admin sees their own team only. The API's refusals (separation of duties, a team with
// keys) are shown as it words them.
import { html, useState } from '../../lib/html.js';
import { api } from '../../lib/api.js';
import { useApp, can, navigate } from '../../lib/context.js';
import { t, fmtNumber } from '../../lib/i18n.js';
import { Page, Table, Dialog, Field, Form, Async, useAsync, Badge, Icon } from '../../lib/ui.js';
import { CLASSIFICATIONS, ConfirmButton, byId, kindLabel, nameOf } from './identity-lib.js';

export const messages = {
  fr: {
    'teams.title': 'Équipes', 'teams.subtitle': 'Les équipes, leurs membres et leurs rôles.',
    'teams.own_title': 'Mon équipe', 'teams.own_subtitle': 'Les membres de votre équipe et leurs rôles.',
    'teams.new': 'Nouvelle équipe', 'teams.name': 'Nom', 'teams.org': 'Organisation',
    'teams.classification': 'Classification par défaut', 'teams.classification_default': 'Celle de la plateforme',
    'teams.classification_hint': 'Niveau appliqué aux requêtes de l’équipe pour le routage par résidence.',
    'teams.members': 'Membres', 'teams.actions': 'Actions', 'teams.list': 'Liste des équipes',
    'teams.edit': 'Modifier', 'teams.edit_title': 'Modifier l’équipe {name}', 'teams.delete_q':
      'Supprimer l’équipe {name} ? Ses rôles, accès aux modèles, budgets et limites sont supprimés. Une équipe qui a eu des clés ne peut pas l’être.',
    'teams.show_members': 'Membres de {name}', 'teams.members_of': 'Membres de {name}',
    'teams.member_list': 'Membres et rôles', 'teams.principal': 'Membre', 'teams.role': 'Rôle',
    'teams.unbind': 'Retirer', 'teams.unbind_q': 'Retirer le rôle {role} à {name} dans {team} ?',
    'teams.bind': 'Attribuer un rôle', 'teams.bind_submit': 'Attribuer',
    'teams.principal_id': 'Identifiant du membre', 'teams.principal_id_hint': 'Donné par un administrateur (utilisateurs et services).',
    'teams.pick': 'Choisir…', 'teams.disabled': 'désactivé', 'teams.no_members': 'Aucun membre pour l’instant.',
    'teams.close': 'Fermer le détail', 'teams.roles_help': 'Rôles : {roles}',
  },
  en: {
    'teams.title': 'Teams', 'teams.subtitle': 'Teams, their members and their roles.',
    'teams.own_title': 'My team', 'teams.own_subtitle': 'Your team’s members and their roles.',
    'teams.new': 'New team', 'teams.name': 'Name', 'teams.org': 'Organisation',
    'teams.classification': 'Default classification', 'teams.classification_default': 'The platform’s',
    'teams.classification_hint': 'Level applied to the team’s requests for residency routing.',
    'teams.members': 'Members', 'teams.actions': 'Actions', 'teams.list': 'Teams list',
    'teams.edit': 'Edit', 'teams.edit_title': 'Edit team {name}', 'teams.delete_q':
      'Delete team {name}? Its roles, model access, budgets and limits go with it. A team that ever had keys cannot be deleted.',
    'teams.show_members': 'Members of {name}', 'teams.members_of': 'Members of {name}',
    'teams.member_list': 'Members and roles', 'teams.principal': 'Member', 'teams.role': 'Role',
    'teams.unbind': 'Remove', 'teams.unbind_q': 'Remove the {role} role from {name} in {team}?',
    'teams.bind': 'Give a role', 'teams.bind_submit': 'Give role',
    'teams.principal_id': 'Member id', 'teams.principal_id_hint': 'Given by an administrator (users and services).',
    'teams.pick': 'Choose…', 'teams.disabled': 'disabled', 'teams.no_members': 'No members yet.',
    'teams.close': 'Close details', 'teams.roles_help': 'Roles: {roles}',
  },
};

const enc = encodeURIComponent;

function TeamForm({ team, orgs, onDone, onCancel }) {
  async function submit(form) {
    const classification = form.get('classification') || undefined;
    if (team) {
      await api(`/v1/admin/teams/${enc(team.id)}`, { method: 'PATCH', body: { name: form.get('name'), classification } });
    } else {
      await api('/v1/admin/teams', { method: 'POST', body: { name: form.get('name'), org: form.get('org') || undefined, classification } });
    }
    onDone();
  }
  return html`<${Form} onSubmit=${submit} onCancel=${onCancel} submitLabel=${team ? t('ui.save') : t('ui.create')}>
    <${Field} label=${t('teams.name')}><input name="name" required maxlength="200" value=${team ? team.name : ''} /><//>
    ${!team && orgs.length > 1 && html`<${Field} label=${t('teams.org')}>
      <select name="org">${orgs.map((o) => html`<option value=${o.id}>${o.name}</option>`)}</select><//>`}
    <${Field} label=${t('teams.classification')} hint=${t('teams.classification_hint')}>
      <select name="classification" value=${team ? team.classification : ''}>
        ${!team && html`<option value="">${t('teams.classification_default')}</option>`}
        ${CLASSIFICATIONS.map((c) => html`<option value=${c}>${c}</option>`)}
      </select><//>
  <//>`;
}

function TeamsList({ selected, onChanged, version }) {
  const state = useAsync(async () => {
    const [teams, orgs] = await Promise.all([api('/v1/admin/teams'), api('/v1/admin/organisations')]);
    return { teams: teams.data, orgs: orgs.data };
  }, [version]);
  const [dialog, setDialog] = useState(null);
  const done = () => {
    setDialog(null);
    onChanged();
  };
  return html`<${Async} state=${state}>${({ teams, orgs }) => {
    const orgNames = byId(orgs);
    const columns = [
      { key: 'name', label: t('teams.name'), render: (r) => html`<button type="button" class="link-btn"
          aria-pressed=${r.id === selected} onClick=${() => navigate('admin/teams', { team: r.id })}
          aria-label=${t('teams.show_members', { name: r.name })}>${r.name}</button>` },
      { key: 'org', label: t('teams.org'), render: (r) => nameOf(orgNames, r.org_id) },
      { key: 'classification', label: t('teams.classification'), render: (r) => r.classification
          ? html`<${Badge} tone=${r.classification === 'public' ? 'neutral' : 'info'}>${r.classification}<//>` : '—' },
      { key: 'members', label: t('teams.members'), numeric: true, render: (r) => fmtNumber(r.members) },
      { key: 'actions', label: t('teams.actions'), render: (r) => html`<div class="row-actions">
          <button type="button" class="btn small" onClick=${() => setDialog({ team: r })}
            aria-label=${`${t('teams.edit')} ${r.name}`}>${t('teams.edit')}</button>
          <${ConfirmButton} label=${t('ui.delete')} question=${t('teams.delete_q', { name: r.name })}
            confirmLabel=${t('ui.delete')} onConfirm=${async () => {
              await api(`/v1/admin/teams/${enc(r.id)}`, { method: 'DELETE' });
              if (r.id === selected) navigate('admin/teams');
              onChanged();
            }} /></div>` },
    ];
    return html`<div class="toolbar">
        <button class="btn primary" onClick=${() => setDialog({ team: null })}><${Icon} name="plus" />${t('teams.new')}</button>
      </div>
      <${Table} label=${t('teams.list')} columns=${columns} rows=${teams} />
      <${Dialog} open=${dialog !== null} onClose=${() => setDialog(null)}
        title=${dialog && dialog.team ? t('teams.edit_title', { name: dialog.team.name }) : t('teams.new')}>
        ${dialog && html`<${TeamForm} key=${dialog.team ? dialog.team.id : 'new'} team=${dialog.team} orgs=${orgs}
          onDone=${done} onCancel=${() => setDialog(null)} />`}
      <//>`;
  }}<//>`;
}

function BindForm({ team, admin, principals, roles, onDone }) {
  const [round, setRound] = useState(0);
  async function submit(form) {
    await api(`/v1/admin/teams/${enc(team.id)}/members`, {
      method: 'POST', body: { principal_id: form.get('principal_id').trim(), role: form.get('role') },
    });
    setRound(round + 1);
    onDone();
  }
  const candidates = principals.filter((p) => p.org_id === team.org_id && !p.disabled_at);
  return html`<div class="card"><h3>${t('teams.bind')}</h3>
    <${Form} key=${round} onSubmit=${submit} submitLabel=${t('teams.bind_submit')}>
      <div class="form-row">
        ${admin
          ? html`<${Field} label=${t('teams.principal')}><select name="principal_id" required>
              <option value="">${t('teams.pick')}</option>
              ${candidates.map((p) => html`<option value=${p.id}>${p.name} (${kindLabel(p.kind)}${p.email ? `, ${p.email}` : ''})</option>`)}
            </select><//>`
          : html`<${Field} label=${t('teams.principal_id')} hint=${t('teams.principal_id_hint')}>
              <input name="principal_id" required spellcheck="false" autocomplete="off" /><//>`}
        <${Field} label=${t('teams.role')}><select name="role" required>
          ${roles.map((r) => html`<option value=${r.name} selected=${r.name === 'member'}>${r.name}</option>`)}
        </select><//>
      </div>
      <p class="field-hint">${t('teams.roles_help', { roles: roles.map((r) => `${r.name}: ${r.description}`).join(' · ') })}</p>
    <//></div>`;
}

function TeamDetail({ teamId, admin, onChanged, onClose }) {
  const state = useAsync(async () => {
    const id = enc(teamId);
    const [team, members, roles, principals] = await Promise.all([
      api(`/v1/admin/teams/${id}`), api(`/v1/admin/teams/${id}/members`), api('/v1/admin/roles'),
      admin ? api('/v1/admin/principals') : Promise.resolve({ data: [] }),
    ]);
    // Only an admin may grant the admin role: a team admin is not offered it.
    const offered = roles.data.filter((r) => admin || r.name !== 'admin');
    return { team, members: members.data, roles: offered, principals: principals.data };
  }, [teamId]);
  const changed = () => {
    state.reload();
    onChanged();
  };
  return html`<${Async} state=${state}>${({ team, members, roles, principals }) => {
    const columns = [
      { key: 'principal', label: t('teams.principal'), render: (m) => html`<span title=${m.principal_id}>${m.principal_name || m.principal_id}</span>
          ${' '}<${Badge}>${kindLabel(m.principal_kind)}<//>${m.principal_disabled ? html` <${Badge} tone="danger">${t('teams.disabled')}<//>` : ''}` },
      { key: 'role', label: t('teams.role'), render: (m) => html`<${Badge} tone="info">${m.role}<//>` },
      { key: 'actions', label: t('teams.actions'), render: (m) => html`<${ConfirmButton} label=${t('teams.unbind')}
          question=${t('teams.unbind_q', { role: m.role, name: m.principal_name || m.principal_id, team: team.name })}
          confirmLabel=${t('teams.unbind')} onConfirm=${async () => {
            await api(`/v1/admin/teams/${enc(team.id)}/members/${enc(m.principal_id)}/${enc(m.role)}`, { method: 'DELETE' });
            changed();
          }} />` },
    ];
    return html`<section class="team-detail" aria-labelledby="team-detail-title">
      <div class="section-head">
        <h2 id="team-detail-title">${t('teams.members_of', { name: team.name })}</h2>
        ${onClose && html`<button type="button" class="btn ghost small" onClick=${onClose}><${Icon} name="x" size=${16} />${t('teams.close')}</button>`}
      </div>
      <${Table} label=${t('teams.member_list')} columns=${columns} rows=${members} empty=${t('teams.no_members')}
        rowKey=${(m) => `${m.principal_id}/${m.role}`} />
      <${BindForm} team=${team} admin=${admin} principals=${principals} roles=${roles} onDone=${changed} />
    </section>`;
  }}<//>`;
}

export default function TeamsPage({ route }) {
  const { me } = useApp();
  const admin = can(me, 'admin');
  const [version, setVersion] = useState(0);
  const bump = () => setVersion((v) => v + 1);
  if (!admin) {
    return html`<${Page} title=${t('teams.own_title')} subtitle=${t('teams.own_subtitle')}>
      <${TeamDetail} teamId=${me.team.id} admin=${false} onChanged=${bump} />
    <//>`;
  }
  const selected = route.params.team || null;
  return html`<${Page} title=${t('teams.title')} subtitle=${t('teams.subtitle')}>
    <${TeamsList} selected=${selected} onChanged=${bump} version=${version} />
    ${selected && html`<${TeamDetail} key=${selected} teamId=${selected} admin=${true} onChanged=${bump}
      onClose=${() => navigate('admin/teams')} />`}
  <//>`;
}
