import { test } from 'node:test';
import assert from 'node:assert/strict';
import { aggModels, guessType, hitsModel, fmt } from '../../src/model.js';
import { panelsFromUrl, hashFor, encodeQuery, decodeQuery } from '../../src/share.js';
import { EXAMPLES } from '../../src/examples.js';

test('each aggregation gets its rendering: terms bars, date_histogram timeline, stats and percentiles figures', () => {
  const req = { aggs: { tags: { terms: { field: 'x' } }, per_hour: { date_histogram: { field: '@timestamp', fixed_interval: '1h' } },
    s: { stats: { field: 'n' } }, p: { percentiles: { field: 'n' } }, c: { cardinality: { field: 'u' } } } };
  const result = { aggregations: {
    tags: { doc_count_error_upper_bound: 0, sum_other_doc_count: 4, buckets: [{ key: 'a', doc_count: 10 }, { key: 'b', doc_count: 5 }] },
    per_hour: { buckets: [{ key_as_string: '2026-06-29T00:00:00.000Z', key: 1782691200000, doc_count: 3 }] },
    s: { count: 2, min: 1, max: 3, avg: 2, sum: 4 },
    p: { values: { '50.0': 2, '99.0': 3 } },
    c: { value: 17 } } };
  const ms = Object.fromEntries(aggModels(req, result).map((m) => [m.name, m]));
  assert.equal(ms.tags.kind, 'bars');
  assert.deepEqual(ms.tags.bars, [{ label: 'a', value: 10 }, { label: 'b', value: 5 }]);
  assert.equal(ms.tags.other, 4);
  assert.equal(ms.per_hour.kind, 'timeline');
  assert.deepEqual(ms.per_hour.xs, [1782691200]);
  assert.deepEqual(ms.s.figures.map((f) => f.label), ['count', 'min', 'max', 'avg', 'sum']);
  assert.deepEqual(ms.p.figures, [{ label: 'p50', value: 2 }, { label: 'p99', value: 3 }]);
  assert.deepEqual(ms.c.figures, [{ label: 'cardinality', value: 17 }]);
  // Without the request (a panel attached by id): guessed from the shape.
  assert.deepEqual(aggModels(null, result).map((m) => m.kind), ['bars', 'timeline', 'figures', 'figures', 'figures']);
  assert.equal(guessType({ hits: { hits: [] } }), 'top_hits');
});

test('hits become a table with flattened columns', () => {
  const m = hitsModel({ total: { value: 2 }, hits: [
    { _source: { user: { screen_name: 'a' }, text: 'hi' }, '@offset': 1, '@partition': 0 },
    { _source: { text: 'yo', lang: 'en' }, '@offset': 2, '@partition': 1 }] });
  assert.equal(m.total, 2);
  assert.deepEqual(m.columns, ['user.screen_name', 'text', 'lang', '@partition', '@offset']);
  assert.equal(m.rows[1].lang, 'en');
  assert.equal(fmt(1234567), '1,234,567');
  assert.equal(fmt(null), '–');
});

test('share links round-trip queries, ids and views', () => {
  const text = '{"topic":"tweets","query":{"match":{"text":"déjà vu ✓"}}}';
  assert.equal(decodeQuery(encodeQuery(text)), text);
  const panels = panelsFromUrl('?view=finals', `#q=${encodeQuery(text)}&id=q_0123ab`);
  assert.deepEqual(panels.map((p) => p.kind), ['view', 'query', 'id']);
  assert.deepEqual(JSON.parse(panels[1].text), JSON.parse(text));
  assert.equal(hashFor([panels[2]]), '#id=q_0123ab');
  assert.deepEqual(panelsFromUrl('', '#q=!!!&id=nope'), []);
});

test('every example is a valid query body', async () => {
  const { core } = await import('./helpers.js');
  await core();
  const { validate } = await import('../../src/core.js');
  for (const x of EXAMPLES) {
    const v = validate(JSON.stringify(x.query));
    assert.equal(v.ok, true, `${x.name}: ${JSON.stringify(v.error)}`);
  }
});
