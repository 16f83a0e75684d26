// One answer's full trace (GET /v1/audit/requests/{id}): who asked, when, which model file answered on which
// engine and in which zone, from which sources, under which guardrail and routing decisions, at what cost;
// and the proof that its entries are in the signed log, which this page re-checks in the browser.
import { html, useEffect, useState } from '../../lib/html.js';
import { api } from '../../lib/api.js';
import { t, register, fmtNumber, fmtDate } from '../../lib/i18n.js';
import { Async, useAsync, Table, Badge, CopyButton } from '../../lib/ui.js';

register({
  fr: {
    'trace.title': 'Trace de la requête ', 'trace.close': 'Fermer la trace', 'trace.when': 'Quand',
    'trace.principal': 'Principal', 'trace.team': 'Équipe', 'trace.key': 'Clé', 'trace.type': 'Type', 'trace.status': 'Statut',
    'trace.model': 'Modèle', 'trace.model_ref': 'Empreinte du modèle', 'trace.engine': 'Moteur', 'trace.zone': 'Zone',
    'trace.classification': 'Classification', 'trace.policy': 'Version de la politique', 'trace.tokens': 'Jetons',
    'trace.tokens_value': '{prompt} en entrée, {completion} en sortie', 'trace.cost': 'Coût', 
    'trace.prompt': 'HMAC de la question', 'trace.response': 'HMAC de la réponse', 'trace.sources': 'Sources', 'trace.no_sources': 'Aucune source : réponse sans base de connaissances.',
    'trace.source.title': 'Document', 'trace.source.pages': 'Pages', 'trace.source.chunk': 'Passage', 'trace.source.document': 'Id du document',
    'trace.guardrails': 'Garde-fous', 'trace.no_guardrails': 'Aucune décision des garde-fous.', 'trace.guard.policy': 'Politique {name} ({version})',
    'trace.guard.stage': 'Étape', 'trace.guard.type': 'Type', 'trace.guard.detector': 'Détecteur', 'trace.guard.action': 'Action', 'trace.guard.count': 'Nombre',
    'trace.routing': 'Routage', 'trace.routing.allowed': 'Zones autorisées', 'trace.routing.candidates': 'Moteurs candidats',
    'trace.routing.skipped': 'Écartés', 'trace.routing.reasons': 'Motifs', 'trace.routing.chosen': 'Choisi',
    'trace.proof': 'Preuve d’inclusion', 'trace.entries': 'Entrées du journal', 'trace.seq': 'N°', 'trace.leaf': 'Empreinte de l’entrée',
    'trace.path': 'Chemin', 'trace.checkpoint': 'Point de contrôle signé : {size} entrées, racine {root}',
    'trace.proof_ok': 'Preuves vérifiées dans ce navigateur : chaque entrée mène à la racine signée.',
    'trace.proof_bad': 'Une preuve ne mène pas à la racine signée (entrée {seq}).', 'trace.proof_na': 'Ce navigateur ne peut pas vérifier les preuves (contexte non sécurisé).',
    'trace.verifier': 'Clé publique du journal', 'trace.hashes': '{n} empreinte(s)',
  },
  en: {
    'trace.title': 'Trace of request ', 'trace.close': 'Close the trace', 'trace.when': 'When',
    'trace.principal': 'Principal', 'trace.team': 'Team', 'trace.key': 'Key', 'trace.type': 'Type', 'trace.status': 'Status',
    'trace.model': 'Model', 'trace.model_ref': 'Model hash', 'trace.engine': 'Engine', 'trace.zone': 'Zone',
    'trace.classification': 'Classification', 'trace.policy': 'Policy version', 'trace.tokens': 'Tokens',
    'trace.tokens_value': '{prompt} in, {completion} out', 'trace.cost': 'Cost', 
    'trace.prompt': 'Prompt HMAC', 'trace.response': 'Response HMAC', 'trace.sources': 'Sources', 'trace.no_sources': 'No sources: not a knowledge-base answer.',
    'trace.source.title': 'Document', 'trace.source.pages': 'Pages', 'trace.source.chunk': 'Chunk', 'trace.source.document': 'Document id',
    'trace.guardrails': 'Guardrails', 'trace.no_guardrails': 'No guardrail decision.', 'trace.guard.policy': 'Policy {name} ({version})',
    'trace.guard.stage': 'Stage', 'trace.guard.type': 'Type', 'trace.guard.detector': 'Detector', 'trace.guard.action': 'Action', 'trace.guard.count': 'Count',
    'trace.routing': 'Routing', 'trace.routing.allowed': 'Allowed zones', 'trace.routing.candidates': 'Candidate engines',
    'trace.routing.skipped': 'Skipped', 'trace.routing.reasons': 'Reasons', 'trace.routing.chosen': 'Chosen',
    'trace.proof': 'Inclusion proof', 'trace.entries': 'Log entries', 'trace.seq': 'Seq', 'trace.leaf': 'Entry hash',
    'trace.path': 'Path', 'trace.checkpoint': 'Signed checkpoint: {size} entries, root {root}',
    'trace.proof_ok': 'Proofs checked in this browser: every entry leads to the signed root.',
    'trace.proof_bad': 'A proof does not lead to the signed root (entry {seq}).', 'trace.proof_na': 'This browser cannot check proofs (insecure context).',
    'trace.verifier': 'Log public key', 'trace.hashes': '{n} hash(es)',
  },
});

function hex(bytes) {
  return [...new Uint8Array(bytes)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

function unhex(text) {
  return new Uint8Array(text.match(/../g).map((h) => parseInt(h, 16)));
}

async function node(left, right) {
  const data = new Uint8Array(1 + left.length + right.length);
  data.set([1]);
  data.set(left, 1);
  data.set(right, 1 + left.length);
  return new Uint8Array(await crypto.subtle.digest('SHA-256', data));
}

// RFC 9162 §2.1.3.2: does `proof` take leaf `index`'s hash to `root` in a tree of `size` leaves?
export async function checkInclusion(index, size, leafHash, proof, root) {
  if (index >= size) return false;
  let fn = index;
  let sn = size - 1;
  let r = unhex(leafHash);
  for (const p of proof.map(unhex)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = await node(p, r);
      if (fn % 2 === 0) while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
    } else {
      r = await node(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && hex(r) === root;
}

function useProofCheck(data) {
  const [result, setResult] = useState(null);
  useEffect(() => {
    if (!data) return;
    if (!globalThis.crypto || !crypto.subtle) { setResult({ state: 'na' }); return; }
    let live = true;
    (async () => {
      for (const entry of data.entries) {
        const ok = await checkInclusion(entry.seq, data.checkpoint.size, entry.leaf_hash, entry.inclusion_proof, data.checkpoint.root_hash);
        if (!ok) return live && setResult({ state: 'bad', seq: entry.seq });
      }
      if (live) setResult({ state: 'ok' });
    })();
    return () => { live = false; };
  }, [data]);
  return result;
}

function Fact({ label, children, testId }) {
  return html`<dt>${label}</dt><dd data-testid=${testId}>${children ?? '—'}</dd>`;
}

function Mono({ value }) {
  return value ? html`<code class="trace-mono" title=${value}>${value}</code>` : '—';
}

function Sources({ sources }) {
  if (!sources || sources.length === 0) return html`<p class="muted">${t('trace.no_sources')}</p>`;
  const pages = (s) => (s.page_start == null ? '—' : s.page_end && s.page_end !== s.page_start ? `${s.page_start}–${s.page_end}` : String(s.page_start));
  return html`<${Table} label=${t('trace.sources')} rowKey=${(s) => s.chunk_id} rows=${sources} columns=${[
    { key: 'title', label: t('trace.source.title') },
    { key: 'pages', label: t('trace.source.pages'), render: pages },
    { key: 'chunk_id', label: t('trace.source.chunk'), render: (s) => html`<${Mono} value=${s.chunk_id} />` },
    { key: 'document_id', label: t('trace.source.document'), render: (s) => html`<${Mono} value=${s.document_id} />` },
  ]} />`;
}

function Guardrails({ guardrails }) {
  if (!guardrails || !(guardrails.decisions || []).length) {
    return html`<p class="muted">${t('trace.no_guardrails')}${guardrails && guardrails.policy
      ? ` ${t('trace.guard.policy', { name: guardrails.policy, version: guardrails.policy_version })}` : ''}</p>`;
  }
  return html`<p>${t('trace.guard.policy', { name: guardrails.policy, version: guardrails.policy_version })}</p>
    <${Table} label=${t('trace.guardrails')} rowKey=${(d) => `${d.stage}-${d.type}-${d.rule}`} rows=${guardrails.decisions} columns=${[
      { key: 'stage', label: t('trace.guard.stage') }, { key: 'type', label: t('trace.guard.type') },
      { key: 'detector', label: t('trace.guard.detector') },
      { key: 'action', label: t('trace.guard.action'), render: (d) => html`<${Badge} tone=${d.action === 'block' ? 'danger' : 'warn'}>${d.action}<//>` },
      { key: 'count', label: t('trace.guard.count'), numeric: true },
    ]} />`;
}

function Routing({ routing }) {
  if (!routing) return html`<p class="muted">—</p>`;
  const list = (items) => (items && items.length ? items.join(', ') : '—');
  return html`<dl class="trace-facts">
    ${routing.classification && html`<${Fact} label=${t('trace.classification')}>${routing.classification}<//>`}
    ${routing.allowed_zones && html`<${Fact} label=${t('trace.routing.allowed')}>${list(routing.allowed_zones)}<//>`}
    ${routing.candidates && html`<${Fact} label=${t('trace.routing.candidates')}>${list(routing.candidates)}<//>`}
    ${routing.skipped && routing.skipped.length > 0 && html`<${Fact} label=${t('trace.routing.skipped')}>
      ${routing.skipped.map((s) => `${s.engine} (${s.zone}): ${s.reason}`).join('; ')}<//>`}
    ${routing.reasons && routing.reasons.length > 0 && html`<${Fact} label=${t('trace.routing.reasons')}>
      ${routing.reasons.map((r) => `${r.level}: ${r.reason}`).join('; ')}<//>`}
    <${Fact} label=${t('trace.routing.chosen')}>${routing.engine ? `${routing.engine} · ${routing.zone}` : '—'}<//>
  </dl>`;
}

function Proof({ data }) {
  const check = useProofCheck(data);
  const cp = data.checkpoint;
  return html`<div>
    ${check && html`<p role="status" data-testid="trace-proof">${check.state === 'ok'
      ? html`<${Badge} tone="ok">✓<//> ${t('trace.proof_ok')}`
      : check.state === 'bad' ? html`<${Badge} tone="danger">✗<//> ${t('trace.proof_bad', { seq: check.seq })}` : t('trace.proof_na')}</p>`}
    <p class="muted ops-small">${t('trace.checkpoint', { size: fmtNumber(cp.size), root: cp.root_hash.slice(0, 16) + '…' })}</p>
    <${Table} label=${t('trace.entries')} rowKey=${(e) => e.seq} rows=${data.entries} columns=${[
      { key: 'seq', label: t('trace.seq'), numeric: true },
      { key: 'type', label: t('trace.type'), render: (e) => e.entry.type },
      { key: 'leaf', label: t('trace.leaf'), render: (e) => html`<${Mono} value=${e.leaf_hash} />` },
      { key: 'path', label: t('trace.path'), render: (e) => t('trace.hashes', { n: e.inclusion_proof.length }) },
    ]} />
    <p class="trace-key"><span class="muted">${t('trace.verifier')} </span><${Mono} value=${data.verifier_key} /> <${CopyButton} text=${data.verifier_key} /></p>
  </div>`;
}

export function TraceView({ requestId, onClose }) {
  const state = useAsync(() => api(`/v1/audit/requests/${encodeURIComponent(requestId)}`), [requestId]);
  return html`<section class="card trace" aria-labelledby="trace-title" data-testid="trace">
    <header class="trace-head">
      <h2 id="trace-title">${t('trace.title')}<code>${requestId}</code></h2>
      <button class="icon-btn" aria-label=${t('trace.close')} onClick=${onClose}>×</button>
    </header>
    <${Async} state=${state}>${(data) => {
      const tr = data.trace;
      const failed = tr.status && tr.status >= 400;
      return html`<div class="trace-columns">
        <dl class="trace-facts">
          <${Fact} label=${t('trace.when')}>${html`<time datetime=${tr.time}>${fmtDate(tr.time)}</time>`}<//>
          <${Fact} label=${t('trace.type')}>${tr.type}<//>
          <${Fact} label=${t('trace.status')}>${tr.status != null && html`<${Badge} tone=${failed ? 'danger' : 'ok'}>${tr.status}<//>`}
            ${tr.reason && html` ${tr.reason}`}<//>
          <${Fact} label=${t('trace.principal')}><${Mono} value=${tr.principal} /><//>
          <${Fact} label=${t('trace.team')}><${Mono} value=${tr.team} /><//>
          <${Fact} label=${t('trace.key')}><${Mono} value=${tr.key} /><//>
        </dl>
        <dl class="trace-facts">
          <${Fact} label=${t('trace.model')} testId="trace-model">${tr.model}<//>
          <${Fact} label=${t('trace.model_ref')}><${Mono} value=${tr.model_ref} /><//>
          <${Fact} label=${t('trace.engine')} testId="trace-engine">${tr.engine}<//>
          <${Fact} label=${t('trace.zone')} testId="trace-zone">${tr.zone && html`<${Badge} tone="info">${tr.zone}<//>`}<//>
          <${Fact} label=${t('trace.classification')}>${tr.classification}<//>
          <${Fact} label=${t('trace.policy')}><${Mono} value=${tr.policy_version} /><//>
        </dl>
        <dl class="trace-facts">
          <${Fact} label=${t('trace.tokens')}>${tr.tokens && t('trace.tokens_value', { prompt: fmtNumber(tr.tokens.prompt), completion: fmtNumber(tr.tokens.completion) })}<//>
          <${Fact} label=${t('trace.cost')}>${tr.cost_nano_eur != null
            && fmtNumber(tr.cost_nano_eur / 1e9, { style: 'currency', currency: 'EUR', maximumSignificantDigits: 3 })}<//>
          <${Fact} label=${t('trace.prompt')}><${Mono} value=${tr.prompt_hmac} /><//>
          <${Fact} label=${t('trace.response')}><${Mono} value=${tr.response_hmac} /><//>
        </dl>
      </div>
      <h3>${t('trace.sources')}</h3><${Sources} sources=${tr.sources} />
      <div class="trace-columns two">
        <div><h3>${t('trace.routing')}</h3><${Routing} routing=${tr.routing} /></div>
        <div><h3>${t('trace.guardrails')}</h3><${Guardrails} guardrails=${tr.guardrails} /></div>
      </div>
      <h3>${t('trace.proof')}</h3><${Proof} data=${data} />`;
    }}<//>
  </section>`;
}
