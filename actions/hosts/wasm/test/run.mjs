// End-to-end test of the WASM action zips against real Kafka and Redis.
//
//   scripts/build-actions.sh wasm && eval "$(scripts/services.sh up)" &&
//   node actions/hosts/wasm/test/run.mjs
//
// Each zip is unpacked into its own directory and `require`d exactly as OpenWhisk's nodejs
// runtime does (package.json `main`, then `await main(params)` with the __OW_* variables set
// per activation). A fake OpenWhisk API on loopback receives the chain links (non-blocking
// invokes of kappa/process and kappa/push), and the test plays the platform: it runs every
// queued process link until none is left, then asks status. The answer must equal the count
// computed here from the records produced, and — when KAPPA_NATIVE_EXEC names the native
// `exec` — what the native status action reads from the same Redis.
//
// Environment: KAFKA_BROKERS, REDIS_URL (without them the test prints "skipped"),
// KAPPA_NATIVE_EXEC (optional), RECORDS (default 20000).
// Prints figures (zip and module sizes, cold start, fold rate) and a closing
// "N passed, N failed" line.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import readline from 'node:readline';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
const { KAFKA_BROKERS, REDIS_URL } = process.env;
if (!KAFKA_BROKERS || !REDIS_URL) {
  console.log('wasm actions: skipped (KAFKA_BROKERS / REDIS_URL not set)');
  console.log('0 passed, 0 failed');
  process.exit(0);
}
const RECORDS = Number(process.env.RECORDS || 20000);

let passed = 0;
let failed = 0;
function check(name, ok, detail = '') {
  if (ok) passed += 1;
  else failed += 1;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}${detail ? `: ${detail}` : ''}`);
}

// ---- unpack one zip per action, as the runtime does --------------------------------------
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'kappa-wasm-'));
const figures = {};
const actions = {};
function load(name) {
  const zip = path.join(repo, 'build/actions', `${name}-wasm.zip`);
  const dir = path.join(work, name);
  fs.mkdirSync(dir);
  execFileSync('unzip', ['-q', zip, '-d', dir]);
  figures[`${name}-wasm.zip bytes`] = fs.statSync(zip).size;
  const t0 = performance.now();
  const mod = createRequire(path.join(dir, 'package.json'))(dir);
  return { mod, dir, requireMs: performance.now() - t0 };
}

// ---- a fake OpenWhisk API that queues the chain links -------------------------------------
const links = [];
const server = http.createServer((req, res) => {
  let body = '';
  req.on('data', (c) => { body += c; });
  req.on('end', () => {
    const m = req.url.match(/^\/api\/v1\/namespaces\/_\/actions\/kappa\/(\w+)\?blocking=false$/);
    if (req.method === 'POST' && m && req.headers.authorization === `Basic ${Buffer.from('u:k').toString('base64')}`) {
      links.push({ action: m[1], params: JSON.parse(body) });
      res.writeHead(202, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ activationId: `a${links.length}` }));
    } else {
      res.writeHead(404);
      res.end();
    }
  });
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));

const settings = {
  KAFKA_BROKERS,
  REDIS_URL,
  KAPPA_CONFIG: JSON.stringify({ batch_records: 5000, read_records: 1000 }),
};
let activation = 0;
async function invoke(name, params) {
  activation += 1;
  Object.assign(process.env, {
    __OW_ACTION_NAME: `/guest/kappa/${name}`,
    __OW_ACTIVATION_ID: `act${activation}`,
    __OW_DEADLINE: String(Date.now() + 60000),
    __OW_API_KEY: 'u:k',
    __OW_API_HOST: `http://127.0.0.1:${server.address().port}`,
  });
  return actions[name].mod.main({ ...settings, ...params });
}

// ---- records, with the answer computed here ------------------------------------------------
const topic = `kappa-wasm-${Date.now()}`;
const kafkaRequire = createRequire(path.join(repo, 'build/wasm-deps/package.json'));
const { Kafka, logLevel } = kafkaRequire('kafkajs');
const kafka = new Kafka({ clientId: 'kappa-wasm-test', brokers: KAFKA_BROKERS.split(','), logLevel: logLevel.ERROR });
const admin = kafka.admin();
await admin.connect();
await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true });
const producer = kafka.producer({ allowAutoTopicCreation: false });
await producer.connect();
const words = ['federer', 'nadal', 'djokovic', 'murray', 'wawrinka'];
let expectedHits = 0;
const expectedTags = {};
for (let start = 0; start < RECORDS; start += 1000) {
  const messages = [];
  for (let i = start; i < Math.min(RECORDS, start + 1000); i += 1) {
    const w = words[(i * 7 + (i >> 3)) % words.length];
    const tag = `t${i % 4}`;
    const value = i % 97 === 0 ? `not json: federer ${i}` : JSON.stringify({ text: `great match by ${w} today`, tag, n: i, '@timestamp': 1700000000000 + i * 1000 });
    if (i % 97 !== 0 && w === 'federer') {
      expectedHits += 1;
      expectedTags[tag] = (expectedTags[tag] || 0) + 1;
    }
    messages.push({ partition: i % 2, value });
  }
  await producer.send({ topic, messages });
}
await producer.disconnect();

// ---- query -> process (until no link is left) -> status ------------------------------------
const request = {
  topic,
  query: { match: { text: 'federer' } },
  aggs: { tags: { terms: { field: 'tag', size: 10 } } },
  size: 0,
};
for (const name of ['query', 'process', 'status']) actions[name] = load(name);

const t0 = performance.now();
const created = await invoke('query', {
  __ow_method: 'post', __ow_path: '/v1/queries', __ow_headers: { 'content-type': 'application/json' },
  __ow_body: JSON.stringify(request),
});
figures['cold start query ms (require + first main)'] = Math.round(actions.query.requireMs + performance.now() - t0);
figures['require ms'] = Math.round(actions.query.requireMs);
check('query answers 201 with an id', created.statusCode === 201 && /^q_/.test(created.body && created.body.id), JSON.stringify(created).slice(0, 300));
const id = created.body && created.body.id;
// One link per partition's replay range, and one for the live tail (its open segments, one unit).
const fired = links.filter((l) => l.action === 'process');
const isTail = (l) => l.params.segment.partition === 4294967295 && l.params.segment.end === null;
check('query fired one process link per replay range and one for the tail', fired.length === 3 && fired.filter(isTail).length === 1, JSON.stringify(links));

let processed = 0;
let invocations = 0;
let foldMs = 0;
let warmRecords = 0;
let firstProcess = true;
while (links.length) {
  const link = links.shift();
  if (link.action !== 'process') continue;
  const t = performance.now();
  const out = await invoke('process', link.params);
  const ms = performance.now() - t;
  if (firstProcess) {
    figures['cold start process ms (require + first main)'] = Math.round(actions.process.requireMs + ms);
    firstProcess = false;
  } else {
    foldMs += ms;
    warmRecords += out.records || 0;
  }
  invocations += 1;
  if (out.error) {
    check('process succeeds', false, JSON.stringify(out.error).slice(0, 400));
    break;
  }
  processed += out.records;
  if (invocations > 1000) break;
}
check('process folded every record exactly once', processed === RECORDS, `${processed} of ${RECORDS} in ${invocations} invocations`);
figures['process invocations'] = invocations;

const status = await invoke('status', { __ow_method: 'get', __ow_path: `/v1/queries/${id}`, __ow_headers: {} });
const body = status.body || {};
const total = body.result && body.result.hits && body.result.hits.total && body.result.hits.total.value;
check('status answers 200, caught up', status.statusCode === 200 && body.caught_up === true, JSON.stringify(body).slice(0, 300));
check('hit count equals the count computed from the records', total === expectedHits, `${total} vs ${expectedHits}`);
const buckets = Object.fromEntries(((body.result && body.result.aggregations && body.result.aggregations.tags.buckets) || []).map((b) => [b.key, b.doc_count]));
check('terms buckets equal the counts computed from the records', JSON.stringify(buckets, Object.keys(buckets).sort()) === JSON.stringify(expectedTags, Object.keys(expectedTags).sort()), `${JSON.stringify(buckets)} vs ${JSON.stringify(expectedTags)}`);
check('invalid records are counted as skipped', body.progress && body.progress.skipped === Math.ceil(RECORDS / 97), JSON.stringify(body.progress));

// A second process round is a no-op: duplicates lose the checkpoint CAS or find nothing new.
const again = await invoke('process', { query: id, segment: { partition: 0, start: 0, end: null } });
check('a duplicate link folds nothing', again.records === 0 && !again.error, JSON.stringify(again).slice(0, 300));

// The native status action reads the state the WASM actions wrote (same scripts, same keys).
const native = process.env.KAPPA_NATIVE_EXEC;
if (native && fs.existsSync(native)) {
  const line = JSON.stringify({ value: { __ow_method: 'get', __ow_path: `/v1/queries/${id}`, __ow_headers: {} },
    deadline: String(Date.now() + 60000), action_name: '/guest/kappa/status', activation_id: 'n1', namespace: 'guest' });
  const t = performance.now();
  const r = spawnSync(native, [], { input: `${line}\n`, env: { KAFKA_BROKERS, REDIS_URL }, encoding: 'utf8', timeout: 60000 });
  figures['native status ms (process start + connect + answer)'] = Math.round(performance.now() - t);
  let nativeBody = null;
  try { nativeBody = JSON.parse(r.stdout.trim().split('\n').pop()).body; } catch { /* reported below */ }
  check('the native status action answers the same result', nativeBody && JSON.stringify(nativeBody.result) === JSON.stringify(body.result) && nativeBody.version === body.version,
    nativeBody ? '' : `${r.stdout} ${r.stderr}`.slice(0, 400));
} else {
  console.log('note: KAPPA_NATIVE_EXEC not set; native cross-check skipped');
}

// The native actions on the same records (a second query, so a second computation): the
// same answer, and the fold rate to compare with. One warm `exec` serves every activation
// (as under the ActionLoop proxy; without fd 3 it answers on stdout).
if (native && fs.existsSync(native)) {
  const child = spawn(native, [], { env: { KAFKA_BROKERS, REDIS_URL, KAPPA_CONFIG: settings.KAPPA_CONFIG,
    __OW_API_HOST: `http://127.0.0.1:${server.address().port}` }, stdio: ['pipe', 'pipe', 'ignore'] });
  const lines = readline.createInterface({ input: child.stdout });
  const pending = [];
  lines.on('line', (l) => { if (l.startsWith('{')) pending.shift()(JSON.parse(l)); });
  const run = (name, value) => new Promise((resolve) => {
    pending.push(resolve);
    child.stdin.write(`${JSON.stringify({ value, deadline: String(Date.now() + 60000), action_name: `/guest/kappa/${name}`,
      activation_id: `n${activation += 1}`, namespace: 'guest', api_key: 'u:k' })}\n`);
  });
  const nativeRequest = { ...request, aggs: { tags: { terms: { field: 'tag', size: 11 } } } };
  links.length = 0;
  const made = await run('query', { __ow_method: 'post', __ow_path: '/v1/queries', __ow_headers: {}, __ow_body: JSON.stringify(nativeRequest) });
  const nid = made.body && made.body.id;
  let nRecords = 0;
  let nMs = 0;
  let nWarmRecords = 0;
  let first = true;
  while (links.length) {
    const link = links.shift();
    if (link.action !== 'process') continue;
    const t = performance.now();
    const out = await run('process', link.params);
    if (out.error) { check('native process succeeds', false, JSON.stringify(out.error).slice(0, 300)); break; }
    if (!first) { nMs += performance.now() - t; nWarmRecords += out.records; }
    first = false;
    nRecords += out.records;
  }
  const ns = await run('status', { __ow_method: 'get', __ow_path: `/v1/queries/${nid}`, __ow_headers: {} });
  const nb = ns.body || {};
  check('native and WASM actions give the same answer', nb.caught_up === true && nRecords === RECORDS
    && JSON.stringify(nb.result.hits) === JSON.stringify(body.result.hits)
    && JSON.stringify(nb.progress) === JSON.stringify(body.progress),
    `${JSON.stringify(nb.result && nb.result.hits)} vs ${JSON.stringify(body.result.hits)}`);
  if (nMs > 0) figures['native fold records/s (process, warm, incl. Kafka+Redis)'] = Math.round(nWarmRecords / (nMs / 1000));
  await run('query', { __ow_method: 'delete', __ow_path: `/v1/queries/${nid}`, __ow_headers: {} });
  child.stdin.end();
}

// ---- ingest through the deployed query action: produced to Kafka, read back by the query ---
{
  const ingestTopic = `${topic}-ingest`;
  const lines = [1, 2, 3].map((n) => JSON.stringify({ text: `ingested federer ${n}`, tag: 'in', n })).join('\n');
  const ingested = await invoke('query', {
    __ow_method: 'post', __ow_path: `/v1/topics/${ingestTopic}/records`, __ow_query: 'key=tag',
    __ow_headers: { 'content-type': 'application/x-ndjson' }, __ow_body: lines,
  });
  const parts = (ingested.body && ingested.body.partitions) || {};
  check('POST /v1/topics/{t}/records creates the topic and produces every record to one keyed partition',
    ingested.statusCode === 200 && ingested.body.count === 3 && Object.keys(parts).length === 1,
    JSON.stringify(ingested).slice(0, 300));
  const md = await admin.fetchTopicMetadata({ topics: [ingestTopic] });
  const [p] = Object.keys(parts);
  const offsets = await admin.fetchTopicOffsets(ingestTopic);
  const high = offsets.find((o) => String(o.partition) === p);
  check('the records are in Kafka at the offsets answered',
    md.topics[0].partitions.length === 4 && high && Number(high.high) === parts[p].last_offset + 1,
    `${md.topics[0].partitions.length} partitions, ${JSON.stringify(offsets)} vs ${JSON.stringify(parts)}`);
  const bad = await invoke('query', {
    __ow_method: 'post', __ow_path: `/v1/topics/${ingestTopic}/records`, __ow_query: '',
    __ow_headers: {}, __ow_body: '{"a":1}\n{"a":',
  });
  check('a bad line is a 400 naming it',
    bad.statusCode === 400 && bad.body.error.line === 2, JSON.stringify(bad).slice(0, 300));
  await admin.deleteTopics({ topics: [ingestTopic] }).catch(() => {});
}

const released = await invoke('query', { __ow_method: 'delete', __ow_path: `/v1/queries/${id}`, __ow_headers: {} });
check('DELETE releases the query', released.statusCode === 200, JSON.stringify(released).slice(0, 200));

// ---- webhooks from the WASM host: public addresses only, no redirects, bounded answers ------
{
  const req = createRequire(path.join(actions.query.dir, 'package.json'));
  const { isPublicAddress } = req('./kappa_wasm.js');
  const { Io } = req('./io.js');
  check('the module exports the one address policy',
    isPublicAddress('8.8.8.8') && isPublicAddress('2606:4700::1111')
    && !isPublicAddress('127.0.0.1') && !isPublicAddress('10.1.2.3') && !isPublicAddress('::ffff:127.0.0.1')
    && !isPublicAddress('169.254.169.254') && !isPublicAddress('::1') && !isPublicAddress('not an address'));
  let hits = 0;
  const target = http.createServer((q, r) => {
    hits += 1;
    if (q.url === '/redirect') { r.writeHead(307, { location: '/landing' }); r.end(); return; }
    if (q.url === '/huge') { r.writeHead(200); r.end(Buffer.alloc(1 << 20, 120)); return; }
    r.writeHead(200); r.end('ok');
  });
  await new Promise((r) => target.listen(0, '127.0.0.1', r));
  const base = `http://localhost:${target.address().port}`;
  const io = new Io('', '');
  const body = new Uint8Array(Buffer.from('{}'));
  let refused = null;
  try {
    await io.http('POST', `${base}/hook`, [], body, true, 65536);
  } catch (e) {
    refused = e;
  }
  check('a webhook to a name resolving to loopback is refused before connecting',
    refused && refused.code === 'ENOTPUBLIC' && refused.transient === false && hits === 0,
    refused ? `${refused.code} ${refused.message}` : 'delivered');
  const redirected = await io.http('POST', `${base}/redirect`, [], body, false, 65536);
  check('a redirect is not followed', redirected.status === 307 && hits === 1, `${redirected.status}, ${hits} requests`);
  const huge = await io.http('GET', `${base}/huge`, [], body, false, 65536);
  check('an answer is read up to the bound', huge.status === 200 && huge.body.length === 65536, `${huge.body.length} bytes`);
  target.close();
}

figures['wasm module bytes'] = fs.statSync(path.join(actions.query.dir, 'kappa_wasm_bg.wasm')).size;
if (foldMs > 0) figures['wasm fold records/s (process, warm, incl. Kafka+Redis)'] = Math.round(warmRecords / (foldMs / 1000));
console.log(JSON.stringify({ figures }, null, 1));

for (const a of Object.values(actions)) await createRequire(path.join(a.dir, 'package.json'))('./io.js').closeAll();
await admin.deleteTopics({ topics: [topic] }).catch(() => {});
await admin.disconnect();
server.close();
fs.rmSync(work, { recursive: true, force: true });
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
