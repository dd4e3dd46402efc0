// The dashboard: panels side by side, each a query editor (validated as you type by the WASM
// core), a live stream (snapshot + deltas applied by the WASM core) and its rendering.
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import './style.css';
import { loadCore, validate, describeError } from './core.js';
import { QueryStream } from './stream.js';
import { aggModels, aggTypes, hitsModel, fmt } from './model.js';
import { EXAMPLES, exampleText } from './examples.js';
import { panelsFromUrl, hashFor, encodeQuery } from './share.js';

const timings = (window.kappaTimings = { firstResult: null, firstCaughtUp: null });
const panels = [];
const grid = document.getElementById('panels');

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function updateHash() {
  const h = hashFor(panels.map((p) => p.spec()));
  history.replaceState(null, '', location.pathname + location.search + h);
}

class Panel {
  constructor(init) {
    this.init = init;
    this.stream = null;
    this.charts = new Map();
    this.follow = new Map();
    this.request = null;
    this.dirty = false;
    this.root = el('section', { class: 'panel', 'data-state': 'idle' });
    const select = el('select', { class: 'examples', title: 'Ready queries', onchange: () => {
      if (select.value !== '') { this.editor.value = exampleText(Number(select.value)); this.validate(); this.run(); }
    } }, el('option', { value: '' }, 'Examples…'), ...EXAMPLES.map((x, i) => el('option', { value: String(i) }, x.name)));
    this.examples = select;
    this.editor = el('textarea', { class: 'editor', spellcheck: 'false', oninput: () => this.scheduleValidate(),
      onkeydown: (e) => { if ((e.ctrlKey || e.metaKey) && e.key === 'Enter') this.run(); } });
    this.validation = el('div', { class: 'validation' });
    this.runButton = el('button', { class: 'run', onclick: () => this.run(), title: 'Run (Ctrl+Enter)' }, 'Run');
    this.shareLink = el('a', { class: 'share', href: '#', title: 'Link to this query' }, 'share');
    const close = el('button', { class: 'close', title: 'Close panel', onclick: () => this.remove() }, '×');
    this.conn = el('span', { class: 'conn' }, 'idle');
    this.version = el('span', { class: 'version' }, 'v–');
    this.caught = el('span', { class: 'caught' }, '');
    this.bar = el('div', { class: 'bar' });
    this.progressText = el('span', { class: 'ptext' }, '');
    this.total = el('div', { class: 'total' });
    this.out = el('div', { class: 'out' });
    this.error = el('div', { class: 'error' });
    this.root.append(
      el('header', {}, select, this.runButton, this.shareLink, close),
      this.editor, this.validation,
      el('div', { class: 'status' }, this.conn, this.version, this.caught, this.progressText),
      el('div', { class: 'progress' }, this.bar),
      this.error, this.total, this.out,
    );
    grid.append(this.root);
    if (init.kind === 'query') this.editor.value = init.text;
    else if (init.kind === 'id') { this.editor.value = `// attached to running query ${init.id}`; this.editor.readOnly = true; }
    else if (init.kind === 'view') { this.editor.value = `// view ${init.name}`; this.editor.readOnly = true; }
    this.validate();
  }

  spec() {
    if (this.init.kind !== 'query') return this.init;
    return { kind: 'query', text: this.editor.value };
  }

  scheduleValidate() {
    clearTimeout(this._vt);
    this._vt = setTimeout(() => this.validate(), 120);
  }

  validate() {
    if (this.init.kind !== 'query') { this.validation.textContent = ''; return true; }
    const v = validate(this.editor.value);
    this.valid = v;
    this.validation.textContent = describeError(v);
    this.validation.className = `validation ${v.ok ? 'ok' : 'bad'}`;
    this.runButton.disabled = !v.ok;
    return v.ok;
  }

  run() {
    if (this.init.kind === 'query' && !this.validate()) return;
    if (this.stream) this.stream.close();
    for (const c of this.charts.values()) c.destroy();
    this.charts.clear();
    this.follow.clear();
    this.out.replaceChildren();
    this.total.textContent = '';
    for (const k of ['total', 'caughtUp', 'version', 'processed']) delete this.root.dataset[k];
    this.error.textContent = '';
    this.request = this.init.kind === 'query' ? JSON.parse(this.editor.value) : null;
    this.shareLink.href = this.init.kind === 'query' ? `/#q=${encodeQuery(this.editor.value)}`
      : this.init.kind === 'id' ? `/#id=${this.init.id}` : `/?view=${encodeURIComponent(this.init.name)}`;
    this.stream = new QueryStream({
      body: this.init.kind === 'query' ? this.editor.value : null,
      id: this.init.kind === 'id' ? this.init.id : null,
      view: this.init.kind === 'view' ? this.init.name : null,
      onState: (st) => this.showState(st),
      onUpdate: (st, { changed }) => { if (st !== this.stream) return; if (changed) this.dirty = true; this.schedule(); },
    });
    this.stream.start();
    updateHash();
  }

  remove() {
    if (this.stream) this.stream.close();
    for (const c of this.charts.values()) c.destroy();
    this.root.remove();
    panels.splice(panels.indexOf(this), 1);
    updateHash();
  }

  showState(s) {
    if (s !== this.stream) return;
    this.root.dataset.state = s.state;
    this.conn.textContent = s.state;
    this.conn.className = `conn conn-${s.state}`;
    this.error.textContent = s.state === 'error' || s.state === 'reconnecting' ? (s.error || '') : '';
  }

  schedule() {
    if (this._raf) return;
    this._raf = requestAnimationFrame(() => { this._raf = 0; this.render(); });
  }

  render() {
    const s = this.stream;
    if (!s) return;
    const p = s.progress || {};
    this.root.dataset.version = String(s.live.version);
    this.root.dataset.caughtUp = String(s.caughtUp);
    this.root.dataset.processed = String(p.processed ?? 0);
    this.version.textContent = `v${s.live.version}`;
    this.caught.textContent = s.caughtUp ? '✓ caught up' : 'replaying…';
    this.caught.className = `caught ${s.caughtUp ? 'yes' : 'no'}`;
    this.bar.style.width = `${(s.fraction * 100).toFixed(1)}%`;
    this.bar.className = `bar ${s.caughtUp ? 'done' : ''}`;
    this.progressText.textContent = `${fmt(p.processed ?? 0)} records · ${fmt(Math.max(0, Math.round(s.rate)))} rec/s · lag ${fmt(p.lag ?? 0)}${p.skipped ? ` · ${fmt(p.skipped)} skipped` : ''}`;
    if (!this.dirty) return;
    this.dirty = false;
    const result = s.live.result;
    if (!result) return;
    const total = result.hits && result.hits.total ? result.hits.total.value : null;
    this.root.dataset.total = String(total ?? '');
    this.total.textContent = total === null ? '' : `${fmt(total)} matching documents`;
    this.renderAggs(result);
    this.renderHits(result);
    const t = performance.now();
    if (timings.firstResult === null) timings.firstResult = t;
    if (s.caughtUp && timings.firstCaughtUp === null) timings.firstCaughtUp = t;
  }

  box(key, title) {
    let b = this.out.querySelector(`[data-agg="${CSS.escape(key)}"]`);
    if (!b) {
      b = el('div', { class: 'agg', 'data-agg': key }, el('h3', {}, title), el('div', { class: 'body' }));
      this.out.append(b);
    }
    return b.querySelector('.body');
  }

  renderAggs(result) {
    const req = this.request || {};
    for (const m of aggModels(req, result)) {
      const body = this.box(m.name, `${m.name}${aggTypes(req)[m.name] ? ` · ${aggTypes(req)[m.name]}` : ''}`);
      body.parentElement.dataset.kind = m.kind;
      if (m.kind === 'bars') {
        body.replaceChildren(...m.bars.map((b) => el('div', { class: 'barrow' },
          el('span', { class: 'label', title: b.label }, b.label),
          el('span', { class: 'track' }, el('span', { class: 'fill', style: `width:${(100 * b.value / m.max).toFixed(1)}%` })),
          el('span', { class: 'num' }, fmt(b.value)))),
        ...(m.other ? [el('div', { class: 'other' }, `other: ${fmt(m.other)}`)] : []));
      } else if (m.kind === 'figures') {
        body.replaceChildren(...m.figures.map((f) => el('div', { class: 'figure' },
          el('div', { class: 'fv' }, fmt(f.value)), el('div', { class: 'fl' }, f.label))));
      } else if (m.kind === 'timeline') {
        this.timeline(m, body);
      } else if (m.kind === 'hits') {
        body.replaceChildren(table(m));
      } else {
        body.replaceChildren(el('pre', {}, JSON.stringify(m.json, null, 2)));
      }
    }
  }

  timeline(m, body) {
    let u = this.charts.get(m.name);
    const data = [m.xs, m.ys];
    if (!u) {
      const live = el('button', { class: 'live', title: 'Follow the newest buckets' }, 'live');
      const host = el('div', { class: 'chart' });
      body.replaceChildren(host, el('div', { class: 'hint' }, 'drag to zoom · wheel to scroll back · double-click or ', live, ' to follow'));
      this.follow.set(m.name, true);
      u = new uPlot({
        width: Math.max(280, body.clientWidth || 480), height: 180,
        scales: { x: { time: true, range: (_u, lo, hi) => (lo === hi ? [lo - 1800, hi + 1800] : [lo, hi]) } },
        axes: [{}, { size: 64 }],
        series: [{}, { label: 'docs', stroke: '#2a6fdb', fill: 'rgba(42,111,219,0.15)', width: 1.5, points: { show: (u) => u.data[0].length < 60 } }],
        cursor: { drag: { x: true, y: false } },
        hooks: { setSelect: [() => this.follow.set(m.name, false)] },
        legend: { show: true },
      }, data, host);
      host.addEventListener('wheel', (e) => {
        e.preventDefault();
        const { min, max } = u.scales.x;
        if (min === null || max === null) return;
        const shift = (max - min) * 0.1 * Math.sign(e.deltaY || e.deltaX);
        this.follow.set(m.name, false);
        u.setScale('x', { min: min + shift, max: max + shift });
      }, { passive: false });
      host.addEventListener('dblclick', () => this.follow.set(m.name, true));
      live.addEventListener('click', () => { this.follow.set(m.name, true); u.setData(u.data, true); });
      new ResizeObserver(() => u.setSize({ width: Math.max(280, body.clientWidth), height: 180 })).observe(body);
      this.charts.set(m.name, u);
    } else {
      u.setData(data, this.follow.get(m.name) !== false);
    }
    body.parentElement.dataset.points = String(m.xs.length);
    body.parentElement.dataset.sum = String(m.ys.reduce((a, b) => a + b, 0));
  }

  renderHits(result) {
    const hits = result.hits;
    let box = this.out.querySelector('[data-agg="__hits"]');
    if (!hits || !hits.hits || hits.hits.length === 0) { if (box) box.remove(); return; }
    const body = this.box('__hits', 'top hits');
    body.replaceChildren(table(hitsModel(hits)));
  }
}

function table(m) {
  return el('table', { class: 'hits' },
    el('thead', {}, el('tr', {}, ...m.columns.map((c) => el('th', {}, c)))),
    el('tbody', {}, ...m.rows.map((r) => el('tr', {}, ...m.columns.map((c) => {
      const v = r[c];
      const s = v === undefined ? '' : typeof v === 'string' ? v : JSON.stringify(v);
      return el('td', { title: s }, s.length > 140 ? `${s.slice(0, 140)}…` : s);
    })))));
}

function addPanel(init, run = true) {
  const p = new Panel(init);
  panels.push(p);
  if (run) p.run();
  return p;
}

async function main() {
  const banner = document.getElementById('banner');
  try {
    await loadCore();
  } catch (e) {
    banner.textContent = `The WASM core did not load (${e}). Build it with actions/kappa/dashboard/build-wasm.sh, then rebuild kappa.`;
    banner.hidden = false;
    return;
  }
  document.getElementById('add').addEventListener('click', () => addPanel({ kind: 'query', text: exampleText(3) }));
  const fromUrl = panelsFromUrl(location.search, location.hash);
  const initial = fromUrl.length ? fromUrl : [{ kind: 'query', text: exampleText(0) }];
  for (const init of initial) addPanel(init);
  document.body.dataset.ready = 'true';
}

main();
