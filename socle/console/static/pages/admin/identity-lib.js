// What the identity pages (teams, users, keys, budgets, model access) share: the directory as the caller
// may see it, names for ids, and a confirmation dialog. Not a page: the pages import it.
import { html, useState } from '../../lib/html.js';
import { api } from '../../lib/api.js';
import { can } from '../../lib/context.js';
import { t, register } from '../../lib/i18n.js';
import { Dialog, ErrorBox, Icon } from '../../lib/ui.js';

register({
  fr: {
    'idlib.confirm_title': 'Confirmer', 'idlib.unknown': 'inconnu', 'idlib.you': 'vous',
    'idlib.user': 'Utilisateur', 'idlib.service': 'Compte de service',
  },
  en: {
    'idlib.confirm_title': 'Please confirm', 'idlib.unknown': 'unknown', 'idlib.you': 'you',
    'idlib.user': 'User', 'idlib.service': 'Service account',
  },
});

export const CLASSIFICATIONS = ['public', 'internal', 'confidential', 'secret'];

// The teams and principals the caller may see: every one for an admin; for a team admin their own team
// and its members (the API lets them list nothing else). Returns {teams, principals, admin}.
export async function loadDirectory(me) {
  const admin = can(me, 'admin');
  if (admin) {
    const [teams, principals] = await Promise.all([api('/v1/admin/teams'), api('/v1/admin/principals')]);
    return { admin, teams: teams.data, principals: principals.data };
  }
  const teams = [{ id: me.team.id, name: me.team.name }];
  const principals = new Map([[me.id, { id: me.id, name: me.name, kind: me.kind }]]);
  if (can(me, 'team.manage')) {
    const members = await api(`/v1/admin/teams/${encodeURIComponent(me.team.id)}/members`);
    for (const m of members.data) {
      principals.set(m.principal_id, { id: m.principal_id, name: m.principal_name, kind: m.principal_kind });
    }
  }
  return { admin, teams, principals: [...principals.values()] };
}

export function byId(items) {
  return new Map((items || []).map((item) => [item.id, item]));
}

// "Alice" for a known id, a shortened id otherwise (still readable, and copyable from the title).
export function nameOf(map, id) {
  if (id == null) return '—';
  const item = map.get(id);
  return item && item.name ? item.name : `${String(id).slice(0, 10)}…`;
}

export function kindLabel(kind) {
  return kind === 'service' ? t('idlib.service') : t('idlib.user');
}

// A button that asks first; the question and the API's refusal stay in one dialog.
export function ConfirmButton({ label, title, question, confirmLabel, onConfirm, danger = true, small = true, icon }) {
  const [open, setOpen] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  async function confirm() {
    setBusy(true);
    setError(null);
    try {
      await onConfirm();
      setOpen(false);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }
  const classes = `btn${small ? ' small' : ''}${danger ? ' danger' : ''}`;
  return html`<button type="button" class=${classes} onClick=${() => { setError(null); setOpen(true); }}>
      ${icon && html`<${Icon} name=${icon} size=${16} />`}${label}</button>
    <${Dialog} open=${open} title=${title || t('idlib.confirm_title')} onClose=${() => setOpen(false)}>
      <p>${question}</p>
      <${ErrorBox} error=${error} />
      <div class="form-actions">
        <button type="button" class="btn ghost" onClick=${() => setOpen(false)}>${t('ui.cancel')}</button>
        <button type="button" class=${`btn ${danger ? 'danger' : 'primary'}`} disabled=${busy} onClick=${confirm}>
          ${confirmLabel || t('ui.confirm')}</button>
      </div>
    <//>`;
}

// Comma- or newline-separated text to a list; empty text to null ("no restriction").
export function listOrNull(text) {
  const items = String(text || '').split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
  return items.length ? items : null;
}

// A form value to a number, or null when left empty.
export function numberOrNull(value) {
  const text = String(value ?? '').trim();
  return text === '' ? null : Number(text);
}
