// A small SVG chart of values per category (days): stacked bars or one line per series. No library: the
// console is air-gapped and needs only this. Accessible: the SVG is one image with a text summary
// (aria-label), and the same figures are in a data table under it.
import { html, useState } from '../../lib/html.js';
import { t, register } from '../../lib/i18n.js';
import { Table } from '../../lib/ui.js';

register({
  fr: { 'chart.data': 'Tableau des données', 'chart.total': 'Total', 'chart.empty': 'Aucune donnée sur la période.', 'chart.date': 'Jour' },
  en: { 'chart.data': 'Data table', 'chart.total': 'Total', 'chart.empty': 'No data for this period.', 'chart.date': 'Day' },
});

export const PALETTE_SIZE = 8;
const W = 760;
const H = 260;
const M = { left: 72, right: 14, top: 12, bottom: 30 };

// The smallest "nice" step (1, 2, 2.5 or 5 × 10^k) that splits `max` into at most `count` intervals.
export function niceTicks(max, count = 4) {
  if (!(max > 0)) return [0, 1];
  const raw = max / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= raw);
  const ticks = [];
  for (let v = 0; v < max + step / 2; v += step) ticks.push(Number(v.toPrecision(12)));
  if (ticks[ticks.length - 1] < max) ticks.push(Number((ticks[ticks.length - 1] + step).toPrecision(12)));
  return ticks;
}

function total(values) {
  return values.reduce((sum, v) => sum + (v || 0), 0);
}

// series: [{key, name, values: (number|null)[]}] aligned with labels; mode 'stacked' | 'lines'.
export function Chart({ labels, series, mode, format, formatLabel = (l) => l, summary, testId }) {
  const [focus, setFocus] = useState(null);
  if (!labels.length || !series.length) return html`<p class="muted empty">${t('chart.empty')}</p>`;
  const stacked = mode === 'stacked';
  const n = labels.length;
  const sums = labels.map((_, i) => total(series.map((s) => s.values[i])));
  const peak = stacked ? Math.max(...sums) : Math.max(0, ...series.flatMap((s) => s.values.filter((v) => v != null)));
  const ticks = niceTicks(peak);
  const top = ticks[ticks.length - 1];
  const plotW = W - M.left - M.right;
  const plotH = H - M.top - M.bottom;
  const band = plotW / n;
  const x = (i) => M.left + band * (i + 0.5);
  const y = (v) => M.top + plotH - (v / top) * plotH;
  const every = Math.ceil(n / 10);
  const marks = stacked
    ? series.map((s, k) => html`<g class=${`chart-s${k % PALETTE_SIZE}`}>${s.values.map((v, i) => {
        if (!v) return null;
        const below = total(series.slice(0, k).map((o) => o.values[i]));
        const width = Math.max(band * 0.7, 1);
        return html`<rect class="chart-bar" x=${x(i) - width / 2} y=${y(below + v)} width=${width}
          height=${Math.max(y(below) - y(below + v), 0.5)}><title>${`${formatLabel(labels[i])} · ${s.name}: ${format(v)}`}</title></rect>`;
      })}</g>`)
    : series.map((s, k) => {
        const points = s.values.map((v, i) => (v == null ? null : [x(i), y(v)]));
        const path = points.filter(Boolean).map((p) => p.join(',')).join(' ');
        return html`<g class=${`chart-s${k % PALETTE_SIZE}`}>
          <polyline class="chart-line" points=${path} />
          ${points.map((p, i) => p && html`<circle class="chart-dot" cx=${p[0]} cy=${p[1]} r="3.5">
            <title>${`${formatLabel(labels[i])} · ${s.name}: ${format(s.values[i])}`}</title></circle>`)}
        </g>`;
      });
  const rows = labels.map((label, i) => ({ label, i }));
  const columns = [
    { key: 'label', label: t('chart.date'), render: (r) => formatLabel(r.label) },
    ...series.map((s) => ({ key: s.key, label: s.name, numeric: true, render: (r) => (s.values[r.i] == null ? '—' : format(s.values[r.i])) })),
  ];
  if (stacked) columns.push({ key: 'total', label: t('chart.total'), numeric: true, render: (r) => format(sums[r.i]) });
  return html`<div class="chart" data-testid=${testId}>
    <svg viewBox=${`0 0 ${W} ${H}`} role="img" aria-label=${summary} class="chart-svg" preserveAspectRatio="xMidYMid meet">
      <g class="chart-grid">${ticks.map((v) => html`<g>
        <line x1=${M.left} x2=${W - M.right} y1=${y(v)} y2=${y(v)} />
        <text x=${M.left - 8} y=${y(v) + 4} text-anchor="end">${format(v)}</text></g>`)}</g>
      <g class="chart-axis">${labels.map((label, i) => (n - 1 - i) % every === 0
        ? html`<text x=${x(i)} y=${H - 10} text-anchor="middle">${formatLabel(label)}</text>` : null)}</g>
      <g class=${focus === null ? '' : 'chart-focused'}>${marks.map((mark, k) => html`<g class=${focus === k ? 'chart-on' : ''}>${mark}</g>`)}</g>
    </svg>
    <ul class="chart-legend">${series.map((s, k) => html`<li onMouseEnter=${() => setFocus(k)} onMouseLeave=${() => setFocus(null)}>
      <span class=${`chart-swatch chart-s${k % PALETTE_SIZE}`} aria-hidden="true"></span>${s.name}</li>`)}</ul>
    <details class="chart-data"><summary>${t('chart.data')}</summary>
      <${Table} columns=${columns} rows=${rows} rowKey=${(r) => r.label} label=${summary} /></details>
  </div>`;
}
