import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { validate, describeError, LiveResult } from '../../src/core.js';
import { core } from './helpers.js';

before(core);

test('a valid query gets the id the server would give it', () => {
  const v = validate('{"topic":"tweets","aggs":{"langs":{"terms":{"field":"lang"}}}}');
  assert.equal(v.ok, true);
  assert.match(v.id, /^q_[0-9a-f]+$/);
  // Key order and whitespace do not matter: same id.
  const w = validate('{ "aggs": {"langs": {"terms": {"field": "lang"}}}, "topic": "tweets" }');
  assert.equal(w.id, v.id);
  assert.equal(describeError(v), `valid — ${v.id} on topic tweets`);
});

test('validation messages are the server\'s Elasticsearch-style errors, with the path', () => {
  const v = validate('{"topic":"tweets","aggs":{"tags":{"terms":{"field":"x","sizee":3}}}}');
  assert.equal(v.ok, false);
  assert.equal(v.status, 400);
  assert.equal(v.error.type, 'parsing_exception');
  assert.equal(v.error.path, 'aggs.tags.terms');
  assert.match(v.error.reason, /sizee/);
  assert.match(describeError(v), /^parsing_exception: .*sizee.* at aggs\.tags\.terms$/);
  const noTopic = validate('{"query":{"match_all":{}}}');
  assert.equal(noTopic.ok, false);
  assert.match(describeError(noTopic), /topic/);
  const unknown = validate('{"topic":"t","query":{"fuzzy":{"a":"b"}}}');
  assert.equal(unknown.ok, false);
  assert.match(unknown.error.path, /^query/);
});

test('a JSON syntax error names its line and column', () => {
  const v = validate('{\n  "topic": "tweets",\n  "size": }');
  assert.equal(v.ok, false);
  assert.equal(v.error.line, 3);
  assert.match(describeError(v), /line 3, column \d+/);
});

test('deltas apply through the WASM core in order; gaps and bad patches throw', () => {
  const r = new LiveResult();
  // As the server sends them: the text of a message.
  const apply = (m) => r.apply(JSON.stringify({ id: 'q_1', ...m }));
  assert.equal(r.result, null);
  assert.equal(apply({ type: 'progress', version: 0 }), false);
  apply({ type: 'snapshot', version: 4, result: { hits: { total: { value: 1, relation: 'eq' }, hits: [] } } });
  assert.equal(r.result.hits.total.value, 1);
  apply({ type: 'delta', from: 4, version: 5, patch: [{ op: 'replace', path: '/hits/total/value', value: 7 },
    { op: 'add', path: '/aggregations', value: { langs: { buckets: [{ key: 'en', doc_count: 7 }] } } }] });
  assert.equal(r.version, 5);
  assert.deepEqual(r.result.aggregations.langs.buckets, [{ key: 'en', doc_count: 7 }]);
  assert.throws(() => apply({ type: 'delta', from: 6, version: 7, patch: [] }), /does not follow version 5/);
  assert.throws(() => apply({ type: 'delta', from: 5, version: 6, patch: [{ op: 'remove', path: '/nope' }] }));
  assert.throws(() => r.apply('{"type":"nonsense"}'), /not a Kappa message/);
  // Unchanged after the failures.
  assert.equal(r.version, 5);
  assert.equal(r.result.hits.total.value, 7);
});
