import { readFileSync } from 'node:fs';
import { loadCore } from '../../src/core.js';

export async function core() {
  await loadCore(readFileSync(new URL('../../dist/kappa_web_bg.wasm', import.meta.url)));
}

/** A WebSocket stand-in: tests push messages and close it. */
export class FakeSocket {
  static all = [];
  constructor(url) { this.url = url; FakeSocket.all.push(this); setTimeout(() => this.onopen && this.onopen(), 0); }
  send() {}
  close() { if (this.closed) return; this.closed = true; setTimeout(() => this.onclose && this.onclose(), 0); }
  push(msg) { this.onmessage({ data: JSON.stringify(msg) }); }
}

export const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));
