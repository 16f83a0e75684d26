// Knowledge: the collections one may read, each with its documents. Uploads go one file per request
// (XMLHttpRequest, for real upload progress), then the page polls the documents until ingestion ends
// (ready, or an error status explained in plain words). A search box checks what a collection finds.
import { html, useState, useEffect, useRef, useMemo, useCallback } from '../lib/html.js';
import { api, ApiError } from '../lib/api.js';
import { session } from '../lib/session.js';
import { useApp, can, navigate } from '../lib/context.js';
import { t, fmtNumber, fmtDate } from '../lib/i18n.js';
import { Page, Async, useAsync, Table, Dialog, Field, Form, ErrorBox, Badge, Icon } from '../lib/ui.js';

const CLASSIFICATIONS = ['public', 'internal', 'confidential', 'secret'];
const CLASS_TONES = { public: 'ok', internal: 'info', confidential: 'warn', secret: 'danger' };
const ROLES = ['member', 'team-admin', 'service', 'admin', 'auditor'];
const PENDING = ['queued', 'processing'];
const KNOWN_STATUSES = ['queued', 'processing', 'ready', 'needs_ocr', 'encrypted', 'corrupt', 'truncated', 'zip_bomb',
  'too_large', 'unsupported', 'wrong_extension', 'failed'];
const UPLOADS_AT_ONCE = 3;
const POLL_MS = 1000;

// Names for ids shown in access lists: the caller's teams, and for admins every team and principal.
function useNames(me) {
  const admin = can(me, 'admin');
  const state = useAsync(async () => {
    const teams = new Map(me.teams.map((team) => [team.id, team.name]));
    const users = new Map([[me.id, me.name]]);
    if (admin) {
      const [allTeams, principals] = await Promise.all([
        api('/v1/admin/teams').catch(() => ({ data: [] })),
        api('/v1/admin/principals').catch(() => ({ data: [] })),
      ]);
      for (const team of allTeams.data) if (team.org_id === me.organisation) teams.set(team.id, team.name);
      for (const p of principals.data) if (p.org_id === me.organisation) users.set(p.id, p.name);
    }
    return { teams, users };
  }, [me.id, me.team.id]);
  return state.data || { teams: new Map(me.teams.map((team) => [team.id, team.name])), users: new Map() };
}

function ClassBadge({ value }) {
  return html`<${Badge} tone=${CLASS_TONES[value] || 'neutral'}>${t(`knowledge.class.${value}`)}<//>`;
}

function entryLabel(entry, names) {
  const name = entry.kind === 'team' ? names.teams.get(entry.id) : entry.kind === 'user' ? names.users.get(entry.id) : null;
  return t('knowledge.entry', { kind: t(`knowledge.kind.${entry.kind}`), who: name || entry.id, permission: t(`knowledge.perm.${entry.permission}`) });
}

function AccessSummary({ collection, names }) {
  const parts = collection.access.map((entry) => entryLabel(entry, names));
  if (collection.org_read) parts.unshift(t('knowledge.org_read_short'));
  if (!parts.length) return html`<span class="muted">${t('knowledge.access_none')}</span>`;
  return html`<ul class="kb-access">${parts.map((part) => html`<li>${part}</li>`)}</ul>`;
}

function countsText(counts) {
  const total = Object.values(counts || {}).reduce((a, b) => a + b, 0);
  const pending = PENDING.reduce((sum, s) => sum + ((counts || {})[s] || 0), 0);
  const failed = total - pending - ((counts || {}).ready || 0);
  return { total, pending, failed };
}

function DocumentCounts({ counts }) {
  const { total, pending, failed } = countsText(counts);
  return html`<span class="kb-counts"><span>${fmtNumber(total)}</span>
    ${pending > 0 && html`<${Badge} tone="info">${t('knowledge.count_pending', { n: fmtNumber(pending) })}<//>`}
    ${failed > 0 && html`<${Badge} tone="danger">${t('knowledge.count_failed', { n: fmtNumber(failed) })}<//>`}</span>`;
}

// The access list editor: one row per entry (who, what they may do), plus organisation-wide read.
function AccessEditor({ entries, onChange, names }) {
  const set = (index, change) => onChange(entries.map((e, i) => (i === index ? { ...e, ...change } : e)));
  const suggestions = { team: [...names.teams], user: [...names.users], role: ROLES.map((r) => [r, r]) };
  const known = (entry) => (entry.kind === 'team' ? names.teams : entry.kind === 'user' ? names.users : new Map()).get(entry.id);
  return html`<fieldset class="kb-access-editor">
    <legend class="field-label">${t('knowledge.access')}</legend>
    <p class="field-hint">${t('knowledge.access_hint')}</p>
    ${['team', 'user', 'role'].map((kind) => html`<datalist id=${`kb-${kind}-ids`}>
      ${suggestions[kind].map(([id, name]) => html`<option value=${id}>${name}</option>`)}</datalist>`)}
    ${entries.map((entry, index) => html`<div class="kb-access-row" key=${index}>
      <select aria-label=${t('knowledge.entry_kind', { n: index + 1 })} value=${entry.kind}
        onChange=${(e) => set(index, { kind: e.currentTarget.value, id: '' })}>
        ${['team', 'user', 'role'].map((k) => html`<option value=${k}>${t(`knowledge.kind.${k}`)}</option>`)}
      </select>
      <div class="kb-who">
        <input aria-label=${t('knowledge.entry_id', { n: index + 1 })} value=${entry.id} required list=${`kb-${entry.kind}-ids`}
          placeholder=${t(`knowledge.id_placeholder.${entry.kind}`)} spellcheck="false"
          onInput=${(e) => set(index, { id: e.currentTarget.value.trim() })} />
        ${known(entry) && html`<span class="field-hint">${known(entry)}</span>`}
      </div>
      <select aria-label=${t('knowledge.entry_permission', { n: index + 1 })} value=${entry.permission}
        onChange=${(e) => set(index, { permission: e.currentTarget.value })}>
        <option value="read">${t('knowledge.perm.read')}</option>
        <option value="write">${t('knowledge.perm.write')}</option>
      </select>
      <button type="button" class="btn small ghost" aria-label=${t('knowledge.entry_remove', { n: index + 1 })}
        onClick=${() => onChange(entries.filter((_, i) => i !== index))}><${Icon} name="x" /></button>
    </div>`)}
    <div><button type="button" class="btn small" onClick=${() => onChange([...entries, { kind: 'team', id: '', permission: 'read' }])}>
      <${Icon} name="plus" />${t('knowledge.entry_add')}</button></div>
  </fieldset>`;
}

// Create (no `collection`) or edit a collection. The API cannot rename one, so the name is fixed once made.
// Controlled fields: Preact puts a `value` prop back on every render, which would undo the user's choice.
function CollectionForm({ collection, me, names, onDone, onCancel }) {
  const admin = can(me, 'admin');
  const [team, setTeam] = useState(me.team.id);
  const [fields, setFields] = useState({
    description: (collection && collection.description) || '',
    classification: collection ? collection.classification : 'internal',
    org_read: collection ? collection.org_read : false,
  });
  const [entries, setEntries] = useState(collection ? collection.access : null);
  const access = entries || [{ kind: 'team', id: team, permission: 'write' }];
  const change = (name, value) => setFields((f) => ({ ...f, [name]: value }));
  async function submit(form) {
    const body = { ...fields, description: fields.description.trim() || null, access };
    if (collection) return onDone(await api(`/v1/collections/${collection.id}`, { method: 'PATCH', body }));
    body.name = form.get('name').trim();
    if (team !== me.team.id) body.team_id = team;
    return onDone(await api('/v1/collections', { method: 'POST', body }));
  }
  return html`<${Form} onSubmit=${submit} onCancel=${onCancel} submitLabel=${collection ? t('ui.save') : t('ui.create')}>
    ${!collection && html`<${Field} label=${t('knowledge.name')} hint=${t('knowledge.name_hint')}>
      <input name="name" required maxlength="200" autocomplete="off" spellcheck="false" /><//>`}
    ${!collection && admin && names.teams.size > 1 && html`<${Field} label=${t('knowledge.team')} hint=${t('knowledge.team_hint')}>
      <select value=${team} onChange=${(e) => setTeam(e.currentTarget.value)}>
        ${[...names.teams].map(([id, name]) => html`<option value=${id}>${name}</option>`)}</select><//>`}
    <${Field} label=${t('knowledge.description')}>
      <textarea rows="2" maxlength="2000" value=${fields.description} onInput=${(e) => change('description', e.currentTarget.value)} /><//>
    <${Field} label=${t('knowledge.classification')} hint=${t('knowledge.classification_hint')}>
      <select value=${fields.classification} onChange=${(e) => change('classification', e.currentTarget.value)}>
        ${CLASSIFICATIONS.map((c) => html`<option value=${c}>${t(`knowledge.class.${c}`)}</option>`)}</select><//>
    <label class="check"><input type="checkbox" checked=${fields.org_read} onChange=${(e) => change('org_read', e.currentTarget.checked)} />
      <span>${t('knowledge.org_read')}</span></label>
    <${AccessEditor} entries=${access} onChange=${setEntries} names=${names} />
  <//>`;
}

function ConfirmDialog({ open, title, text, confirmLabel, onConfirm, onClose }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  useEffect(() => setError(null), [open]);
  async function confirm() {
    setBusy(true);
    setError(null);
    try {
      await onConfirm();
      onClose();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }
  return html`<${Dialog} open=${open} title=${title} onClose=${onClose}>
    <p>${text}</p>
    <${ErrorBox} error=${error} />
    <div class="form-actions">
      <button type="button" class="btn ghost" onClick=${onClose}>${t('ui.cancel')}</button>
      <button type="button" class="btn danger" disabled=${busy} onClick=${confirm}>${confirmLabel || t('ui.delete')}</button>
    </div>
  <//>`;
}

// The collections list ------------------------------------------------------------------------------------
function CollectionList() {
  const { me } = useApp();
  const names = useNames(me);
  const state = useAsync(() => api('/v1/collections'), [me.team.id]);
  const [dialog, setDialog] = useState(null); // {mode: 'create'|'edit'|'delete', collection}
  const close = () => setDialog(null);
  const open = (c) => navigate('knowledge', { collection: c.id });
  // An admin manages every collection but reads only those whose access list lets them in.
  const readable = (c) => (c.permissions || ['read']).includes('read');
  const columns = [
    { key: 'name', label: t('knowledge.name'), render: (c) => html`${readable(c) ? html`<a href=${`#/knowledge?collection=${c.id}`}><strong>${c.name}</strong></a>` : html`<strong>${c.name}</strong>`}
      ${c.description && html`<div class="muted kb-small">${c.description}</div>`}` },
    { key: 'team', label: t('knowledge.team'), render: (c) => names.teams.get(c.team_id) || html`<code>${c.team_id}</code>` },
    { key: 'classification', label: t('knowledge.classification'), render: (c) => html`<${ClassBadge} value=${c.classification} />` },
    { key: 'documents', label: t('knowledge.documents'), numeric: true, render: (c) => html`<${DocumentCounts} counts=${c.documents} />` },
    { key: 'access', label: t('knowledge.access'), render: (c) => html`<${AccessSummary} collection=${c} names=${names} />` },
    { key: 'actions', label: t('knowledge.actions'), render: (c) => html`<div class="kb-actions">
      ${readable(c) && html`<button class="btn small" onClick=${() => open(c)} aria-label=${t('knowledge.open_named', { name: c.name })}>${t('knowledge.open')}</button>`}
      ${(c.permissions || []).includes('manage') && html`
        <button class="btn small" onClick=${() => setDialog({ mode: 'edit', collection: c })} aria-label=${t('knowledge.edit_named', { name: c.name })}>${t('knowledge.edit')}</button>
        <button class="btn small danger" onClick=${() => setDialog({ mode: 'delete', collection: c })} aria-label=${t('knowledge.delete_named', { name: c.name })}>
          <${Icon} name="trash-2" size=${14} />${t('ui.delete')}</button>`}</div>` },
  ];
  const actions = can(me, 'knowledge.write') && html`<button class="btn primary" onClick=${() => setDialog({ mode: 'create' })}>
    <${Icon} name="plus" />${t('knowledge.new')}</button>`;
  const target = dialog && dialog.collection;
  return html`<${Page} title=${t('knowledge.title')} subtitle=${t('knowledge.subtitle')} actions=${actions}>
    <${Async} state=${state}>${(data) => html`<${Table} label=${t('knowledge.collections')} columns=${columns} rows=${data.data}
      empty=${t('knowledge.empty')} />`}<//>
    <${Dialog} open=${dialog && dialog.mode !== 'delete'} wide title=${target ? t('knowledge.edit_title', { name: target.name }) : t('knowledge.new')} onClose=${close}>
      <${CollectionForm} key=${target ? target.id : 'new'} collection=${target} me=${me} names=${names} onCancel=${close}
        onDone=${(c) => { close(); if (target) state.reload(); else open(c); }} />
    <//>
    <${ConfirmDialog} open=${dialog && dialog.mode === 'delete'} title=${t('knowledge.delete_collection')} onClose=${close}
      text=${target && t('knowledge.delete_collection_text', { name: target.name, n: countsText(target.documents).total })}
      onConfirm=${async () => { await api(`/v1/collections/${target.id}`, { method: 'DELETE' }); state.reload(); }} />
  <//>`;
}

// Uploads: one request per file, a few at a time, with the bytes sent so far ---------------------------------
function send(method, path, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, path);
    const { token, team } = session.get();
    if (token) xhr.setRequestHeader('Authorization', `Bearer ${token}`);
    if (team) xhr.setRequestHeader('X-Socle-Team', team);
    xhr.responseType = 'json';
    xhr.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : file.size);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) return resolve(xhr.response);
      if (xhr.status === 401) session.expired();
      return reject(new ApiError(xhr.status, xhr.response));
    };
    xhr.onerror = () => reject(new Error(t('knowledge.network_error')));
    const form = new FormData();
    form.append('file', file, file.name);
    xhr.send(form);
  });
}

function useUploads(onUploaded) {
  const [items, setItems] = useState([]);
  const queue = useRef([]);
  const running = useRef(0);
  const counter = useRef(0);
  const uploaded = useRef(onUploaded);
  uploaded.current = onUploaded;
  const patch = (key, change) => setItems((list) => list.map((i) => (i.key === key ? { ...i, ...change } : i)));
  function pump() {
    while (running.current < UPLOADS_AT_ONCE && queue.current.length) {
      const job = queue.current.shift();
      running.current += 1;
      patch(job.key, { state: 'uploading' });
      send(job.method, job.path, job.file, (loaded, total) => patch(job.key, { loaded, total }))
        .then(
          (body) => {
            const doc = job.method === 'PUT' ? body : body.data[0];
            patch(job.key, { state: 'done', loaded: job.file.size, documentId: doc.id, duplicate: Boolean(doc.duplicate) });
            uploaded.current();
          },
          (error) => patch(job.key, { state: 'error', error }),
        )
        .finally(() => {
          running.current -= 1;
          pump();
        });
    }
  }
  function add(files, method, path) {
    const jobs = [...files].map((file) => ({ key: ++counter.current, file, method, path }));
    setItems((list) => [...jobs.map((j) => ({ key: j.key, name: j.file.name, size: j.file.size, loaded: 0,
      total: j.file.size, state: 'waiting', replace: method === 'PUT' })), ...list]);
    queue.current.push(...jobs);
    pump();
  }
  const active = items.some((i) => i.state === 'waiting' || i.state === 'uploading');
  const clear = () => setItems((list) => list.filter((i) => i.state === 'waiting' || i.state === 'uploading'));
  const forget = (documentId) => setItems((list) => list.filter((i) => i.documentId !== documentId));
  return { items, add, active, clear, forget };
}

function fmtSize(bytes) {
  if (bytes < 1024) return t('knowledge.bytes', { n: fmtNumber(bytes) });
  if (bytes < 1024 * 1024) return t('knowledge.kb', { n: fmtNumber(bytes / 1024, { maximumFractionDigits: 0 }) });
  return t('knowledge.mb', { n: fmtNumber(bytes / 1024 / 1024, { maximumFractionDigits: 1 }) });
}

function Progress({ value, label }) {
  const percent = Math.round(Math.max(0, Math.min(1, value)) * 100);
  return html`<div class="kb-progress" role="progressbar" aria-label=${label} aria-valuemin="0" aria-valuemax="100"
      aria-valuenow=${percent} aria-valuetext=${`${percent} %`}><span style=${{ width: `${percent}%` }}></span></div>`;
}

function statusTone(status) {
  if (status === 'ready') return 'ok';
  if (PENDING.includes(status)) return 'info';
  return 'danger';
}

function StatusBadge({ doc }) {
  const label = KNOWN_STATUSES.includes(doc.status) ? t(`knowledge.status.${doc.status}`) : doc.status;
  const percent = doc.status === 'processing' ? ` ${Math.round(doc.progress * 100)} %` : '';
  return html`<${Badge} tone=${statusTone(doc.status)}>${label}${percent}<//>`;
}

// An error status in plain words: what happened and what to do, then the API's own message.
function DocumentProblem({ doc }) {
  if (!doc.error && (doc.status === 'ready' || PENDING.includes(doc.status))) return null;
  const known = KNOWN_STATUSES.includes(doc.status) && !PENDING.includes(doc.status) && doc.status !== 'ready';
  const explain = known ? t(`knowledge.explain.${doc.status}`) : PENDING.includes(doc.status) ? t('knowledge.explain.retrying') : null;
  return html`<div class="kb-problem">
    ${explain && html`<p>${explain}</p>`}
    ${doc.error && html`<p class="muted kb-small">${doc.error}</p>`}
  </div>`;
}

function UploadItem({ item, doc }) {
  let state;
  if (item.state === 'waiting') state = html`<span class="muted">${t('knowledge.upload_waiting')}</span>`;
  else if (item.state === 'uploading') state = html`<span>${t('knowledge.uploading', { p: Math.round((item.loaded / (item.total || 1)) * 100) })}</span>`;
  else if (item.state === 'error') state = html`<span class="kb-upload-error">${t('knowledge.upload_failed', { message: item.error.message })}</span>`;
  else if (!doc) state = html`<span class="muted">${t('knowledge.upload_sent')}</span>`;
  else {
    state = html`<span class="kb-upload-status"><${StatusBadge} doc=${doc} />
      ${item.duplicate && html`<span class="muted">${t('knowledge.duplicate')}</span>`}</span>`;
  }
  const ratio = item.state === 'done' ? 1 : item.loaded / (item.total || 1);
  return html`<li class="kb-upload">
    <div class="kb-upload-name"><${Icon} name="file-text" size=${16} /><strong>${item.name}</strong>
      <span class="muted">${fmtSize(item.size)}</span>${item.replace && html`<${Badge}>${t('knowledge.new_version')}<//>`}</div>
    <${Progress} value=${ratio} label=${t('knowledge.upload_of', { name: item.name })} />
    <div class="kb-upload-state">${state}</div>
    ${doc && doc.status === 'processing' && html`<${Progress} value=${doc.progress} label=${t('knowledge.reading_of', { name: item.name })} />`}
    ${doc && html`<${DocumentProblem} doc=${doc} />`}
  </li>`;
}

function DropZone({ onFiles }) {
  const [over, setOver] = useState(false);
  const input = useRef(null);
  function drop(event) {
    event.preventDefault();
    setOver(false);
    if (event.dataTransfer.files.length) onFiles(event.dataTransfer.files);
  }
  return html`<div class=${`kb-drop${over ? ' over' : ''}`} onDragOver=${(e) => { e.preventDefault(); setOver(true); }}
      onDragLeave=${() => setOver(false)} onDrop=${drop}>
    <${Icon} name="upload" size=${28} />
    <p><strong>${t('knowledge.drop')}</strong></p>
    <input id="kb-files" class="kb-file-input" type="file" multiple ref=${input}
      onChange=${(e) => { if (e.currentTarget.files.length) onFiles(e.currentTarget.files); e.currentTarget.value = ''; }} />
    <label for="kb-files" class="btn primary">${t('knowledge.choose')}</label>
    <p class="muted kb-small">${t('knowledge.formats')}</p>
  </div>`;
}

function pages(hit) {
  if (hit.page_start == null) return null;
  return hit.page_end && hit.page_end !== hit.page_start
    ? t('knowledge.pages_range', { from: hit.page_start, to: hit.page_end }) : t('knowledge.page', { n: hit.page_start });
}

function SearchBox({ collection }) {
  const [result, setResult] = useState(null);
  async function submit(form) {
    const query = form.get('query').trim();
    const body = await api('/v1/search', { method: 'POST', body: { query, collections: [collection.id], k: 5 } });
    setResult({ query, hits: body.data });
  }
  return html`<section class="card kb-search" aria-labelledby="kb-search-title">
    <h2 id="kb-search-title"><${Icon} name="search" />${t('knowledge.search_title')}</h2>
    <p class="muted kb-small">${t('knowledge.search_hint')}</p>
    <${Form} onSubmit=${submit} submitLabel=${t('knowledge.search')}>
      <${Field} label=${t('knowledge.search_query')}><input name="query" type="search" required maxlength="4000" /><//>
    <//>
    ${result && (result.hits.length ? html`<ol class="kb-hits" aria-label=${t('knowledge.hits')}>
      ${result.hits.map((hit) => html`<li key=${hit.chunk_id}>
        <div class="kb-hit-head"><strong>${hit.title || hit.filename}</strong>
          <span class="muted kb-small">${[hit.filename, pages(hit), t('knowledge.score', { s: fmtNumber(hit.score, { maximumFractionDigits: 4 }) })].filter(Boolean).join(' · ')}</span></div>
        ${hit.section_path.length > 0 && html`<div class="muted kb-small">${hit.section_path.join(' › ')}</div>`}
        <blockquote>${hit.text.replace(/\n{2,}/g, '\n')}</blockquote>
      </li>`)}</ol>` : html`<p class="muted">${t('knowledge.no_hits', { query: result.query })}</p>`)}
  </section>`;
}

// One collection: upload, documents, search --------------------------------------------------------------
function CollectionView({ id }) {
  const { me } = useApp();
  const names = useNames(me);
  const collection = useAsync(() => api(`/v1/collections/${id}`), [id, me.team.id]);
  const docs = useAsync(() => api(`/v1/collections/${id}/documents`), [id, me.team.id]);
  const uploads = useUploads(docs.reload);
  const [dialog, setDialog] = useState(null); // {mode: 'edit'|'delete'|'delete-doc', doc}
  const replaceInput = useRef(null);
  const replaceTarget = useRef(null);
  const list = (docs.data && docs.data.data) || [];
  const byId = useMemo(() => new Map(list.map((d) => [d.id, d])), [docs.data]);
  const busy = uploads.active || list.some((d) => PENDING.includes(d.status));
  useEffect(() => {
    if (!busy) return undefined;
    const timer = setInterval(docs.reload, POLL_MS);
    return () => clearInterval(timer);
  }, [busy, docs.reload]);
  const upload = useCallback((files) => uploads.add(files, 'POST', `/v1/collections/${id}/documents`), [id]);
  function reupload(event) {
    const file = event.currentTarget.files[0];
    event.currentTarget.value = '';
    if (file && replaceTarget.current) uploads.add([file], 'PUT', `/v1/collections/${id}/documents/${replaceTarget.current.id}`);
  }
  const close = () => setDialog(null);
  if (collection.error) {
    return html`<${Page} title=${t('knowledge.title')}><p><a href="#/knowledge">${t('knowledge.back')}</a></p>
      <${ErrorBox} error=${collection.error} onRetry=${collection.reload} /><//>`;
  }
  const c = collection.data;
  if (!c) return html`<${Async} state=${collection}>${() => null}<//>`;
  const permissions = c.permissions || [];
  const write = permissions.includes('write');
  const columns = [
    { key: 'filename', label: t('knowledge.file'), render: (d) => html`<span class="kb-file"><${Icon} name="file-text" size=${16} />${d.filename}</span>
      <div class="muted kb-small">${fmtSize(d.size_bytes)}${d.version > 1 ? ` · ${t('knowledge.version', { n: d.version })}` : ''}</div>` },
    { key: 'title', label: t('knowledge.doc_title') },
    { key: 'pages', label: t('knowledge.pages'), numeric: true, render: (d) => fmtNumber(d.pages) },
    { key: 'chunk_count', label: t('knowledge.chunks'), numeric: true, render: (d) => fmtNumber(d.chunk_count) },
    { key: 'status', label: t('knowledge.status_col'), render: (d) => html`<div class="kb-status"><${StatusBadge} doc=${d} />
      ${d.status === 'processing' && html`<${Progress} value=${d.progress} label=${t('knowledge.reading_of', { name: d.filename })} />`}
      <${DocumentProblem} doc=${d} /></div>` },
    { key: 'created_at', label: t('knowledge.uploaded_at'), render: (d) => fmtDate(d.created_at) },
  ];
  if (write) {
    columns.push({ key: 'actions', label: t('knowledge.actions'), render: (d) => html`<div class="kb-actions">
      <button class="btn small" aria-label=${t('knowledge.reupload_named', { name: d.filename })}
        onClick=${() => { replaceTarget.current = d; replaceInput.current.click(); }}><${Icon} name="refresh-cw" size=${14} />${t('knowledge.reupload')}</button>
      <button class="btn small danger" aria-label=${t('knowledge.delete_named', { name: d.filename })}
        onClick=${() => setDialog({ mode: 'delete-doc', doc: d })}><${Icon} name="trash-2" size=${14} />${t('ui.delete')}</button></div>` });
  }
  const manage = permissions.includes('manage') && html`
    <button class="btn" onClick=${() => setDialog({ mode: 'edit' })}>${t('knowledge.edit')}</button>
    <button class="btn danger" onClick=${() => setDialog({ mode: 'delete' })}><${Icon} name="trash-2" />${t('knowledge.delete_collection')}</button>`;
  const counts = {};
  for (const d of list) counts[d.status] = (counts[d.status] || 0) + 1;
  return html`<${Page} title=${c.name} subtitle=${c.description} actions=${manage}>
    <p class="kb-back"><a href="#/knowledge">${t('knowledge.back')}</a></p>
    <dl class="kb-facts card">
      <div><dt>${t('knowledge.classification')}</dt><dd><${ClassBadge} value=${c.classification} /></dd></div>
      <div><dt>${t('knowledge.team')}</dt><dd>${names.teams.get(c.team_id) || c.team_id}</dd></div>
      <div><dt>${t('knowledge.documents')}</dt><dd><${DocumentCounts} counts=${docs.data ? counts : c.documents} /></dd></div>
      <div class="kb-facts-wide"><dt>${t('knowledge.access')}</dt><dd><${AccessSummary} collection=${c} names=${names} /></dd></div>
    </dl>
    ${write ? html`<section class="kb-upload-area" aria-labelledby="kb-upload-title">
        <h2 id="kb-upload-title" class="sr-only">${t('knowledge.upload_title')}</h2>
        <${DropZone} onFiles=${upload} />
        <input type="file" hidden ref=${replaceInput} aria-label=${t('knowledge.reupload')} onChange=${reupload} />
        ${uploads.items.length > 0 && html`<div class="card kb-uploads">
          <div class="kb-uploads-head"><h3>${t('knowledge.uploads')}</h3>
            ${!uploads.active && html`<button class="btn small ghost" onClick=${uploads.clear}>${t('knowledge.clear_uploads')}</button>`}</div>
          <ul aria-label=${t('knowledge.uploads')}>${uploads.items.map((item) => html`<${UploadItem} key=${item.key} item=${item}
            doc=${item.documentId && byId.get(item.documentId)} />`)}</ul></div>`}
      </section>`
      : html`<p class="notice">${t('knowledge.read_only')}</p>`}
    <h2 class="kb-section">${t('knowledge.documents')}</h2>
    <${Async} state=${docs}>${() => html`<${Table} label=${t('knowledge.documents_of', { name: c.name })} columns=${columns}
      rows=${list} empty=${t('knowledge.no_documents')} />`}<//>
    <${SearchBox} collection=${c} />
    <${Dialog} open=${dialog && dialog.mode === 'edit'} wide title=${t('knowledge.edit_title', { name: c.name })} onClose=${close}>
      <${CollectionForm} key=${c.updated_at} collection=${c} me=${me} names=${names} onCancel=${close}
        onDone=${() => { close(); collection.reload(); }} />
    <//>
    <${ConfirmDialog} open=${dialog && dialog.mode === 'delete'} title=${t('knowledge.delete_collection')} onClose=${close}
      text=${t('knowledge.delete_collection_text', { name: c.name, n: list.length })}
      onConfirm=${async () => { await api(`/v1/collections/${c.id}`, { method: 'DELETE' }); navigate('knowledge'); }} />
    <${ConfirmDialog} open=${dialog && dialog.mode === 'delete-doc'} title=${t('knowledge.delete_document')} onClose=${close}
      text=${dialog && dialog.doc && t('knowledge.delete_document_text', { name: dialog.doc.filename })}
      onConfirm=${async () => {
        const doc = dialog.doc;
        await api(`/v1/collections/${c.id}/documents/${doc.id}`, { method: 'DELETE' });
        uploads.forget(doc.id);
        docs.reload();
      }} />
  <//>`;
}

export default function KnowledgePage({ route }) {
  const id = route.params.collection;
  return id ? html`<${CollectionView} key=${id} id=${id} />` : html`<${CollectionList} />`;
}

export const messages = {
  en: {
    'knowledge.title': 'Knowledge', 'knowledge.subtitle': 'Document collections the assistant answers from, with who may read them.',
    'knowledge.collections': 'Collections', 'knowledge.empty': 'No collection yet. Create one, then add documents.',
    'knowledge.new': 'New collection', 'knowledge.name': 'Name', 'knowledge.name_hint': 'Letters, digits, spaces, dots, dashes and underscores. It cannot be changed later.',
    'knowledge.team': 'Team', 'knowledge.team_hint': 'The team that owns the collection.', 'knowledge.description': 'Description',
    'knowledge.classification': 'Classification', 'knowledge.classification_hint': 'Answers that use these documents carry this classification: only engines allowed to see it answer them.',
    'knowledge.class.public': 'Public', 'knowledge.class.internal': 'Internal', 'knowledge.class.confidential': 'Confidential', 'knowledge.class.secret': 'Secret',
    'knowledge.org_read': 'Everyone in the organisation may read it', 'knowledge.org_read_short': 'Whole organisation (read)',
    'knowledge.access': 'Access', 'knowledge.access_none': 'Only its managers', 'knowledge.access_hint': 'Who may read (search, ask) or write (add and delete documents). Admins and the owning team’s admins always manage it.',
    'knowledge.kind.team': 'Team', 'knowledge.kind.user': 'User', 'knowledge.kind.role': 'Role', 'knowledge.perm.read': 'read', 'knowledge.perm.write': 'write',
    'knowledge.entry': '{kind} {who} ({permission})', 'knowledge.entry_kind': 'Entry {n}: kind', 'knowledge.entry_id': 'Entry {n}: who',
    'knowledge.entry_permission': 'Entry {n}: permission', 'knowledge.entry_remove': 'Remove entry {n}', 'knowledge.entry_add': 'Add an entry',
    'knowledge.id_placeholder.team': 'Team id', 'knowledge.id_placeholder.user': 'User or service id', 'knowledge.id_placeholder.role': 'Role name, e.g. member',
    'knowledge.documents': 'Documents', 'knowledge.actions': 'Actions', 'knowledge.open': 'Open', 'knowledge.open_named': 'Open {name}',
    'knowledge.edit': 'Edit', 'knowledge.edit_named': 'Edit {name}', 'knowledge.delete_named': 'Delete {name}', 'knowledge.edit_title': 'Edit {name}',
    'knowledge.count_pending': '{n} in progress', 'knowledge.count_failed': '{n} failed',
    'knowledge.delete_collection': 'Delete collection', 'knowledge.delete_collection_text': 'Delete “{name}” and its {n} document(s)? They leave search at once. This cannot be undone.',
    'knowledge.delete_document': 'Delete document', 'knowledge.delete_document_text': 'Delete “{name}”? It leaves search at once. This cannot be undone.',
    'knowledge.back': '← All collections', 'knowledge.read_only': 'You may read this collection but not add or delete documents.',
    'knowledge.upload_title': 'Add documents', 'knowledge.drop': 'Drop files here', 'knowledge.choose': 'Choose files',
    'knowledge.formats': 'PDF (with text), Word, PowerPoint, Excel, CSV, HTML, Markdown, text, e-mails (EML, MSG), ODT, RTF. Several at once.',
    'knowledge.uploads': 'Uploads', 'knowledge.clear_uploads': 'Clear finished', 'knowledge.upload_waiting': 'Waiting to upload',
    'knowledge.uploading': 'Uploading {p} %', 'knowledge.upload_failed': 'Upload failed: {message}', 'knowledge.upload_sent': 'Uploaded',
    'knowledge.upload_of': 'Upload of {name}', 'knowledge.reading_of': 'Reading of {name}', 'knowledge.duplicate': 'Already in the collection (same content)',
    'knowledge.new_version': 'new version', 'knowledge.network_error': 'The server could not be reached.',
    'knowledge.bytes': '{n} B', 'knowledge.kb': '{n} KB', 'knowledge.mb': '{n} MB',
    'knowledge.file': 'File', 'knowledge.doc_title': 'Title', 'knowledge.pages': 'Pages', 'knowledge.chunks': 'Passages',
    'knowledge.status_col': 'Status', 'knowledge.uploaded_at': 'Uploaded', 'knowledge.version': 'version {n}',
    'knowledge.reupload': 'Re-upload', 'knowledge.reupload_named': 'Re-upload {name}', 'knowledge.no_documents': 'No document yet.',
    'knowledge.documents_of': 'Documents of {name}',
    'knowledge.status.queued': 'Waiting', 'knowledge.status.processing': 'Reading', 'knowledge.status.ready': 'Ready',
    'knowledge.status.needs_ocr': 'Scan without text', 'knowledge.status.encrypted': 'Password-protected', 'knowledge.status.corrupt': 'Damaged file',
    'knowledge.status.truncated': 'Incomplete file', 'knowledge.status.zip_bomb': 'Refused (expands too much)', 'knowledge.status.too_large': 'Too large',
    'knowledge.status.unsupported': 'Unsupported format', 'knowledge.status.wrong_extension': 'Wrong extension', 'knowledge.status.failed': 'Failed',
    'knowledge.explain.needs_ocr': 'This PDF is a scanned image with no text in it, and Socle does not read images. Run text recognition (OCR) in your scanner or PDF software, then upload the new file.',
    'knowledge.explain.encrypted': 'The file is protected by a password. Save a copy without the password and upload that.',
    'knowledge.explain.corrupt': 'The file is damaged and cannot be read. Open it in its usual program, save a fresh copy, and upload that.',
    'knowledge.explain.truncated': 'The file is cut short, as after an interrupted download or copy. Upload a complete copy.',
    'knowledge.explain.zip_bomb': 'The file unpacks to far more data than any real document, so it was not opened. Check where it comes from.',
    'knowledge.explain.too_large': 'The file is too large or too complex to read within the server’s limits. Split it into smaller files.',
    'knowledge.explain.unsupported': 'This kind of file cannot be read. Convert it to one of the formats listed above.',
    'knowledge.explain.wrong_extension': 'The file’s content does not match its extension. Rename it with the right extension and upload again.',
    'knowledge.explain.failed': 'Reading the file failed. Upload it again later; if it keeps failing, tell your administrator.',
    'knowledge.explain.retrying': 'The last attempt did not finish; it will be tried again.',
    'knowledge.search_title': 'Try a search', 'knowledge.search_hint': 'Check that a document is found: search this collection as the assistant does.',
    'knowledge.search_query': 'Search in this collection', 'knowledge.search': 'Search', 'knowledge.hits': 'Passages found',
    'knowledge.no_hits': 'Nothing found for “{query}”.', 'knowledge.score': 'score {s}', 'knowledge.page': 'p. {n}', 'knowledge.pages_range': 'p. {from}–{to}',
  },
  fr: {
    'knowledge.title': 'Connaissances', 'knowledge.subtitle': 'Les collections de documents dont l’assistant se sert pour répondre, et qui peut les lire.',
    'knowledge.collections': 'Collections', 'knowledge.empty': 'Aucune collection. Créez-en une, puis ajoutez des documents.',
    'knowledge.new': 'Nouvelle collection', 'knowledge.name': 'Nom', 'knowledge.name_hint': 'Lettres sans accent, chiffres, espaces, points, tirets et soulignés. Il ne pourra plus changer.',
    'knowledge.team': 'Équipe', 'knowledge.team_hint': 'L’équipe propriétaire de la collection.', 'knowledge.description': 'Description',
    'knowledge.classification': 'Classification', 'knowledge.classification_hint': 'Les réponses tirées de ces documents portent cette classification : seuls les moteurs autorisés à la voir y répondent.',
    'knowledge.class.public': 'Public', 'knowledge.class.internal': 'Interne', 'knowledge.class.confidential': 'Confidentiel', 'knowledge.class.secret': 'Secret',
    'knowledge.org_read': 'Toute l’organisation peut la lire', 'knowledge.org_read_short': 'Toute l’organisation (lecture)',
    'knowledge.access': 'Accès', 'knowledge.access_none': 'Ses gestionnaires seulement', 'knowledge.access_hint': 'Qui peut lire (chercher, interroger) ou écrire (ajouter et supprimer des documents). Les administrateurs et ceux de l’équipe propriétaire la gèrent toujours.',
    'knowledge.kind.team': 'Équipe', 'knowledge.kind.user': 'Utilisateur', 'knowledge.kind.role': 'Rôle', 'knowledge.perm.read': 'lecture', 'knowledge.perm.write': 'écriture',
    'knowledge.entry': '{kind} {who} ({permission})', 'knowledge.entry_kind': 'Entrée {n} : type', 'knowledge.entry_id': 'Entrée {n} : qui',
    'knowledge.entry_permission': 'Entrée {n} : droit', 'knowledge.entry_remove': 'Retirer l’entrée {n}', 'knowledge.entry_add': 'Ajouter une entrée',
    'knowledge.id_placeholder.team': 'Identifiant d’équipe', 'knowledge.id_placeholder.user': 'Identifiant d’utilisateur ou de service', 'knowledge.id_placeholder.role': 'Nom du rôle, ex. member',
    'knowledge.documents': 'Documents', 'knowledge.actions': 'Actions', 'knowledge.open': 'Ouvrir', 'knowledge.open_named': 'Ouvrir {name}',
    'knowledge.edit': 'Modifier', 'knowledge.edit_named': 'Modifier {name}', 'knowledge.delete_named': 'Supprimer {name}', 'knowledge.edit_title': 'Modifier {name}',
    'knowledge.count_pending': '{n} en cours', 'knowledge.count_failed': '{n} en échec',
    'knowledge.delete_collection': 'Supprimer la collection', 'knowledge.delete_collection_text': 'Supprimer « {name} » et ses {n} document(s) ? Ils disparaissent aussitôt de la recherche. C’est définitif.',
    'knowledge.delete_document': 'Supprimer le document', 'knowledge.delete_document_text': 'Supprimer « {name} » ? Il disparaît aussitôt de la recherche. C’est définitif.',
    'knowledge.back': '← Toutes les collections', 'knowledge.read_only': 'Vous pouvez lire cette collection, mais pas y ajouter ni y supprimer de documents.',
    'knowledge.upload_title': 'Ajouter des documents', 'knowledge.drop': 'Déposez des fichiers ici', 'knowledge.choose': 'Choisir des fichiers',
    'knowledge.formats': 'PDF (avec texte), Word, PowerPoint, Excel, CSV, HTML, Markdown, texte, courriels (EML, MSG), ODT, RTF. Plusieurs à la fois.',
    'knowledge.uploads': 'Envois', 'knowledge.clear_uploads': 'Effacer les envois terminés', 'knowledge.upload_waiting': 'En attente d’envoi',
    'knowledge.uploading': 'Envoi {p} %', 'knowledge.upload_failed': 'Échec de l’envoi : {message}', 'knowledge.upload_sent': 'Envoyé',
    'knowledge.upload_of': 'Envoi de {name}', 'knowledge.reading_of': 'Lecture de {name}', 'knowledge.duplicate': 'Déjà dans la collection (même contenu)',
    'knowledge.new_version': 'nouvelle version', 'knowledge.network_error': 'Le serveur est injoignable.',
    'knowledge.bytes': '{n} o', 'knowledge.kb': '{n} Ko', 'knowledge.mb': '{n} Mo',
    'knowledge.file': 'Fichier', 'knowledge.doc_title': 'Titre', 'knowledge.pages': 'Pages', 'knowledge.chunks': 'Passages',
    'knowledge.status_col': 'État', 'knowledge.uploaded_at': 'Envoyé le', 'knowledge.version': 'version {n}',
    'knowledge.reupload': 'Renvoyer', 'knowledge.reupload_named': 'Renvoyer {name}', 'knowledge.no_documents': 'Aucun document.',
    'knowledge.documents_of': 'Documents de {name}',
    'knowledge.status.queued': 'En attente', 'knowledge.status.processing': 'Lecture', 'knowledge.status.ready': 'Prêt',
    'knowledge.status.needs_ocr': 'Scan sans texte', 'knowledge.status.encrypted': 'Protégé par mot de passe', 'knowledge.status.corrupt': 'Fichier endommagé',
    'knowledge.status.truncated': 'Fichier incomplet', 'knowledge.status.zip_bomb': 'Refusé (trop volumineux une fois décompressé)', 'knowledge.status.too_large': 'Trop volumineux',
    'knowledge.status.unsupported': 'Format non pris en charge', 'knowledge.status.wrong_extension': 'Mauvaise extension', 'knowledge.status.failed': 'Échec',
    'knowledge.explain.needs_ocr': 'Ce PDF est une image scannée sans texte, et Socle ne lit pas les images. Lancez la reconnaissance de texte (OCR) dans votre logiciel de scan ou de PDF, puis envoyez le nouveau fichier.',
    'knowledge.explain.encrypted': 'Le fichier est protégé par un mot de passe. Enregistrez-en une copie sans mot de passe et envoyez-la.',
    'knowledge.explain.corrupt': 'Le fichier est endommagé et illisible. Ouvrez-le dans son logiciel habituel, enregistrez une nouvelle copie et envoyez-la.',
    'knowledge.explain.truncated': 'Le fichier est tronqué, comme après un téléchargement ou une copie interrompus. Envoyez une copie complète.',
    'knowledge.explain.zip_bomb': 'Une fois décompressé, le fichier occuperait bien plus qu’un vrai document : il n’a pas été ouvert. Vérifiez sa provenance.',
    'knowledge.explain.too_large': 'Le fichier est trop gros ou trop complexe pour les limites du serveur. Découpez-le en fichiers plus petits.',
    'knowledge.explain.unsupported': 'Ce type de fichier ne peut pas être lu. Convertissez-le dans l’un des formats indiqués plus haut.',
    'knowledge.explain.wrong_extension': 'Le contenu du fichier ne correspond pas à son extension. Renommez-le avec la bonne extension et envoyez-le à nouveau.',
    'knowledge.explain.failed': 'La lecture du fichier a échoué. Renvoyez-le plus tard ; si l’échec persiste, prévenez votre administrateur.',
    'knowledge.explain.retrying': 'La dernière tentative n’a pas abouti ; elle sera reprise.',
    'knowledge.search_title': 'Essayer une recherche', 'knowledge.search_hint': 'Vérifiez qu’un document est trouvé : cherchez dans cette collection comme le fait l’assistant.',
    'knowledge.search_query': 'Rechercher dans cette collection', 'knowledge.search': 'Rechercher', 'knowledge.hits': 'Passages trouvés',
    'knowledge.no_hits': 'Rien trouvé pour « {query} ».', 'knowledge.score': 'score {s}', 'knowledge.page': 'p. {n}', 'knowledge.pages_range': 'p. {from}–{to}',
  },
};
