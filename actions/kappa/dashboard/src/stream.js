// One live query: (re)creates it with POST /v1/queries, follows /v1/queries/{id}/ws (or a
// view's /ws) with ?since=V on reconnect, applies snapshot and deltas through the WASM core,
// and reports connection state, progress and rates. Reconnects with backoff forever.
import { LiveResult } from './core.js';

export class QueryStream {
  /**
   * @param {object} o
   *   o.body   query JSON text (re-posted on every reconnect, so a restarted server resumes it)
   *   o.id     a query id to attach to (without a body)
   *   o.view   a view name
   *   o.base   http base URL ('' = this page's origin)
   *   o.onUpdate(stream, {changed}) after each message; o.onState(stream) on state changes
   *   o.WebSocket, o.fetch, o.now: injectable for tests
   */
  constructor(o) {
    Object.assign(this, { body: null, id: null, view: null, base: '' }, o);
    this.WS = o.WebSocket || globalThis.WebSocket;
    this.fetchFn = o.fetch || globalThis.fetch.bind(globalThis);
    this.now = o.now || (() => performance.now());
    this.live = new LiveResult();
    this.state = 'idle'; // idle, connecting, open, reconnecting, error, closed
    this.error = null;
    this.caughtUp = false;
    this.progress = null;
    this.rate = 0; // records/s over the last messages
    this.messages = 0;
    this.reconnects = 0;
    this._samples = [];
    this._closed = false;
    this._ws = null;
    this._timer = null;
    this._backoff = 250;
  }

  start() { this._connect(); return this; }

  close() {
    this._closed = true;
    clearTimeout(this._timer);
    if (this._ws) try { this._ws.close(); } catch { /* closing */ }
    this._setState('closed');
  }

  _setState(s, error = null) {
    this.state = s;
    this.error = error;
    this.onState && this.onState(this);
  }

  _wsUrl(path) {
    const base = this.base || (typeof location !== 'undefined' ? location.origin : '');
    return base.replace(/^http/, 'ws') + path;
  }

  async _ensureQuery() {
    if (this.view || !this.body) return;
    const r = await this.fetchFn(`${this.base}/v1/queries`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: this.body,
    });
    const j = await r.json();
    if (!r.ok) {
      const e = new Error(j.error ? `${j.error.type}: ${j.error.reason}` : `HTTP ${r.status}`);
      e.permanent = r.status >= 400 && r.status < 500 && r.status !== 404;
      e.answer = j;
      throw e;
    }
    this.id = j.id;
  }

  async _connect() {
    if (this._closed) return;
    this._setState(this.reconnects ? 'reconnecting' : 'connecting', this.error);
    try {
      await this._ensureQuery();
    } catch (e) {
      if (e.permanent) { this._setState('error', e.message); this.answer = e.answer; return; }
      return this._retry(e.message);
    }
    if (this._closed) return;
    const path = this.view ? `/v1/views/${encodeURIComponent(this.view)}/ws` : `/v1/queries/${this.id}/ws`;
    const since = this.live.version >= 0 && !this._needSnapshot ? `?since=${this.live.version}` : '';
    this._needSnapshot = false;
    let ws;
    try { ws = new this.WS(this._wsUrl(path + since)); } catch (e) { return this._retry(String(e)); }
    this._ws = ws;
    let opened = false;
    ws.onopen = () => { opened = true; this._backoff = 250; this._setState('open'); };
    ws.onmessage = (ev) => this._onMessage(ws, ev.data);
    ws.onclose = () => {
      if (this._ws !== ws) return;
      this._ws = null;
      if (!this._closed) this._retry(opened ? 'connection closed' : 'cannot connect');
    };
    ws.onerror = () => { /* onclose follows */ };
  }

  _retry(why) {
    if (this._closed) return;
    this.reconnects += 1;
    this._setState('reconnecting', why);
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this._connect(), this._backoff);
    this._backoff = Math.min(this._backoff * 2, 4000);
  }

  _onMessage(ws, data) {
    let msg;
    try { msg = JSON.parse(data); } catch { return; }
    if (msg.id && (msg.type === 'snapshot')) this.id = msg.id;
    let changed = false;
    try {
      changed = this.live.apply(data);
    } catch (e) {
      // A gap or a patch that does not apply: start over from a snapshot.
      this._needSnapshot = true;
      this.error = `resync: ${e.message || e}`;
      try { ws.close(); } catch { /* closing */ }
      return;
    }
    this.messages += 1;
    if (typeof msg.caught_up === 'boolean') this.caughtUp = msg.caught_up;
    if (msg.progress) this._progress(msg.progress);
    this.onUpdate && this.onUpdate(this, { changed, msg });
  }

  _progress(p) {
    this.progress = p;
    const t = this.now();
    this._samples.push([t, p.processed || 0]);
    while (this._samples.length > 2 && t - this._samples[0][0] > 3000) this._samples.shift();
    const [t0, n0] = this._samples[0];
    this.rate = t > t0 ? ((p.processed - n0) * 1000) / (t - t0) : 0;
  }

  /** Share of the log processed, 0..1. */
  get fraction() {
    const p = this.progress;
    if (!p) return 0;
    if (this.caughtUp) return 1;
    const total = (p.processed || 0) + (p.lag || 0);
    return total > 0 ? (p.processed || 0) / total : 0;
  }
}
