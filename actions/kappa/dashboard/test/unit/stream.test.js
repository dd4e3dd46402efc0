import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { QueryStream } from '../../src/stream.js';
import { core, FakeSocket, tick } from './helpers.js';

before(core);

// Messages exactly as the server sends them (api.md): the WASM core reads each as the server's
// own `Message` type and refuses anything else.
const progressOf = (processed, lag) => ({ processed, skipped: 0, lag, partitions: [] });
const snapshot = (version, result, more = {}) =>
  ({ type: 'snapshot', id: 'q_abc', version, caught_up: false, progress: progressOf(0, 0), result, ...more });
const delta = (from, patch, more = {}) =>
  ({ type: 'delta', id: 'q_abc', version: from + 1, from, caught_up: false, progress: progressOf(0, 0), patch, ...more });
const progress = (version, more = {}) =>
  ({ type: 'progress', id: 'q_abc', version, caught_up: false, progress: progressOf(0, 0), ...more });

function server() {
  const posts = [];
  const fetch = async (url, init) => {
    posts.push(init.body);
    return { ok: true, status: 200, json: async () => ({ id: 'q_abc' }) };
  };
  return { posts, fetch };
}

test('snapshot, deltas and progress: version, caught-up, rate', async () => {
  FakeSocket.all = [];
  const { posts, fetch } = server();
  let t = 0;
  const updates = [];
  const s = new QueryStream({ body: '{"topic":"t"}', base: 'http://x', WebSocket: FakeSocket, fetch,
    now: () => t, onUpdate: (_s, u) => updates.push(u.changed) }).start();
  await tick();
  assert.equal(posts.length, 1);
  const ws = FakeSocket.all[0];
  assert.equal(ws.url, 'ws://x/v1/queries/q_abc/ws');
  assert.equal(s.state, 'open');
  ws.push(snapshot(1, { hits: { total: { value: 0 } } }, { progress: progressOf(0, 100) }));
  t = 1000;
  ws.push(delta(1, [{ op: 'replace', path: '/hits/total/value', value: 50 }], { progress: progressOf(50, 50) }));
  assert.equal(s.fraction, 0.5);
  assert.equal(s.rate, 50);
  t = 2000;
  ws.push(progress(2, { caught_up: true, progress: progressOf(100, 0) }));
  assert.deepEqual(updates, [true, true, false]);
  assert.equal(s.caughtUp, true);
  assert.equal(s.fraction, 1);
  assert.equal(s.live.result.hits.total.value, 50);
  s.close();
});

test('a dropped connection resumes with ?since=V and re-posts the query', async () => {
  FakeSocket.all = [];
  const { posts, fetch } = server();
  const s = new QueryStream({ body: '{"topic":"t"}', base: 'http://x', WebSocket: FakeSocket, fetch }).start();
  await tick();
  FakeSocket.all[0].push(snapshot(3, { a: 1 }, { caught_up: true }));
  FakeSocket.all[0].close();
  await tick();
  assert.equal(s.state, 'reconnecting');
  await tick(300);
  assert.equal(FakeSocket.all.length, 2);
  assert.equal(FakeSocket.all[1].url, 'ws://x/v1/queries/q_abc/ws?since=3');
  assert.equal(posts.length, 2);
  assert.equal(s.state, 'open');
  FakeSocket.all[1].push(delta(3, [{ op: 'replace', path: '/a', value: 2 }]));
  assert.equal(s.live.result.a, 2);
  s.close();
});

test('a gap in versions drops the socket and asks for a fresh snapshot', async () => {
  FakeSocket.all = [];
  const { fetch } = server();
  const s = new QueryStream({ body: '{"topic":"t"}', base: 'http://x', WebSocket: FakeSocket, fetch }).start();
  await tick();
  FakeSocket.all[0].push(snapshot(3, { a: 1 }));
  FakeSocket.all[0].push(delta(5, []));
  assert.equal(FakeSocket.all[0].closed, true);
  await tick(300);
  assert.equal(FakeSocket.all[1].url, 'ws://x/v1/queries/q_abc/ws');
  FakeSocket.all[1].push(snapshot(6, { a: 9 }));
  assert.equal(s.live.result.a, 9);
  s.close();
});

test('an invalid query is an error, not a retry loop', async () => {
  FakeSocket.all = [];
  const fetch = async () => ({ ok: false, status: 400, json: async () => ({ error: { type: 'parsing_exception', reason: 'bad' }, status: 400 }) });
  const s = new QueryStream({ body: '{}', base: 'http://x', WebSocket: FakeSocket, fetch }).start();
  await tick();
  assert.equal(s.state, 'error');
  assert.equal(s.error, 'parsing_exception: bad');
  assert.equal(FakeSocket.all.length, 0);
  s.close();
});
