// Kappa's core in the browser (actions/web, wasm-bindgen --target web): the page validates
// queries and applies deltas with the very Rust code the server runs.
import init, { initSync, validateQuery, ResultDoc } from '../dist/kappa_web.js';

let ready = null;

/** Load the WASM core once: from `/assets/kappa_web_bg.wasm` in the page, or from bytes (Node). */
export function loadCore(source) {
  if (!ready) {
    ready = source instanceof Uint8Array || source instanceof ArrayBuffer
      ? Promise.resolve(initSync({ module: source }))
      : init({ module_or_path: source ?? '/assets/kappa_web_bg.wasm' });
  }
  return ready;
}

/**
 * Validate a query body (text) as the server does. Returns
 * `{ok: true, id, topic, canonical}` or `{ok: false, error: {type, reason, path, line?, col?}, status}`.
 */
export function validate(text) {
  return JSON.parse(validateQuery(text));
}

/** One line for the editor: what is wrong, and where. */
export function describeError(v) {
  if (v.ok) return `valid — ${v.id} on topic ${v.topic}`;
  const e = v.error || {};
  const where = e.line ? ` (line ${e.line}, column ${e.col})` : e.path ? ` at ${e.path}` : '';
  return `${e.type}: ${e.reason}${where}`;
}

/**
 * A live result: a snapshot, then deltas applied in order through the WASM core, which reads
 * each message as the server's own `Message` type. `apply(text)` returns true when the result
 * changed, false for progress and error messages, and throws on a gap or a patch that does
 * not apply (the caller then resubscribes for a snapshot).
 */
export class LiveResult {
  constructor() {
    this.doc = new ResultDoc();
    this.version = -1;
    this._cache = null;
  }

  /** Apply a message as the server sent it (its text); the WASM core decides what it is. */
  apply(text) {
    const changed = this.doc.applyMessage(text);
    if (changed) {
      this.version = this.doc.version();
      this._cache = null;
    }
    return changed;
  }

  /** The result held (parsed once per change). */
  get result() {
    if (this._cache === null && this.version >= 0) this._cache = JSON.parse(this.doc.json());
    return this._cache;
  }
}
