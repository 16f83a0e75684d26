// Model output as elements, never as HTML: a small Markdown subset (paragraphs, headings, bullet and
// numbered lists, fenced code blocks, **bold**, `code`) and numbered citation markers [1] or [1, 2],
// which become buttons when the answer has a citation with that number. Every piece of text is a
// string child, which Preact escapes; nothing the model writes is ever parsed as markup.
import { html } from '../lib/html.js';

const BULLET = /^\s*[-*•]\s+(.*)$/;
const NUMBERED = /^\s*\d{1,3}[.)]\s+(.*)$/;
const FENCE = /^\s*```(.*)$/;
const HEADING = /^\s*#{1,6}\s+(.*)$/;
const BLANK = /^\s*$/;
const INLINE = /(\*\*[^*\n]+\*\*|`[^`\n]+`|\[\d{1,3}(?:\s*[,;]\s*\d{1,3})*\])/g;

// Split text into blocks: {type: 'p'|'h'|'code'|'ul'|'ol', text?, items?}. A code block still open
// (an answer being streamed) runs to the end.
export function blocks(text) {
  const lines = String(text || '').replace(/\r\n?/g, '\n').split('\n');
  const out = [];
  let i = 0;
  const starts = (line) => FENCE.test(line) || BULLET.test(line) || NUMBERED.test(line) || HEADING.test(line);
  while (i < lines.length) {
    const line = lines[i];
    if (BLANK.test(line)) {
      i += 1;
    } else if (FENCE.test(line)) {
      const code = [];
      for (i += 1; i < lines.length && !/^\s*```\s*$/.test(lines[i]); i += 1) code.push(lines[i]);
      i += 1;
      out.push({ type: 'code', text: code.join('\n') });
    } else if (HEADING.test(line)) {
      out.push({ type: 'h', text: line.match(HEADING)[1] });
      i += 1;
    } else if (BULLET.test(line) || NUMBERED.test(line)) {
      const pattern = BULLET.test(line) ? BULLET : NUMBERED;
      const items = [];
      for (; i < lines.length && pattern.test(lines[i]); i += 1) items.push(lines[i].match(pattern)[1]);
      out.push({ type: pattern === BULLET ? 'ul' : 'ol', items });
    } else {
      const paragraph = [];
      for (; i < lines.length && !BLANK.test(lines[i]) && !(paragraph.length && starts(lines[i])); i += 1) {
        paragraph.push(lines[i]);
      }
      out.push({ type: 'p', text: paragraph.join('\n') });
    }
  }
  return out;
}

function withBreaks(text) {
  const parts = text.split('\n');
  return parts.flatMap((part, n) => (n ? [html`<br />`, part] : [part]));
}

// Inline pieces: bold, code, citation markers, plain text (line breaks kept).
export function inline(text, onCite, citations) {
  const out = [];
  let last = 0;
  for (const match of String(text).matchAll(INLINE)) {
    if (match.index > last) out.push(...withBreaks(text.slice(last, match.index)));
    const token = match[0];
    if (token.startsWith('**')) out.push(html`<strong>${inline(token.slice(2, -2), onCite, citations)}</strong>`);
    else if (token.startsWith('`')) out.push(html`<code>${token.slice(1, -1)}</code>`);
    else out.push(...markers(token, onCite, citations));
    last = match.index + token.length;
  }
  if (last < text.length) out.push(...withBreaks(text.slice(last)));
  return out;
}

function markers(token, onCite, citations) {
  const numbers = token.slice(1, -1).split(/[,;]/).map((n) => Number(n.trim()));
  const known = numbers.filter((n) => citations.some((c) => c.marker === n));
  if (!onCite || known.length === 0) return [token];
  return numbers.map((n) => {
    const citation = citations.find((c) => c.marker === n);
    if (!citation) return html`<span class="cite-missing">[${n}]</span>`;
    return html`<button type="button" class="cite" onClick=${() => onCite(citation)}
      aria-label=${`[${n}] ${citation.title || citation.filename || ''}`} data-testid="citation">${n}</button>`;
  });
}

// An answer or a question as elements (see the module comment).
export function RichText({ text, citations = [], onCite }) {
  return blocks(text).map((block) => {
    if (block.type === 'code') return html`<pre class="code"><code>${block.text}</code></pre>`;
    if (block.type === 'h') return html`<p class="rich-heading"><strong>${inline(block.text, onCite, citations)}</strong></p>`;
    if (block.type === 'ul' || block.type === 'ol') {
      const items = block.items.map((item) => html`<li>${inline(item, onCite, citations)}</li>`);
      return block.type === 'ul' ? html`<ul>${items}</ul>` : html`<ol>${items}</ol>`;
    }
    return html`<p>${inline(block.text, onCite, citations)}</p>`;
  });
}
