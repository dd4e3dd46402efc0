// What to draw for a result: pure functions from (request, result) to render models.

const BUCKET = new Set(['terms', 'date_histogram', 'histogram', 'range', 'date_range', 'filters']);

/** The aggregation type of each top-level aggregation named in a request body. */
export function aggTypes(request) {
  const aggs = (request && (request.aggs || request.aggregations)) || {};
  const out = {};
  for (const [name, def] of Object.entries(aggs)) {
    const t = Object.keys(def || {}).find((k) => !['aggs', 'aggregations', 'meta'].includes(k));
    if (t) out[name] = t;
  }
  return out;
}

/** Guess an aggregation's type from its result shape (a panel attached by id has no body). */
export function guessType(r) {
  if (!r || typeof r !== 'object') return 'json';
  if (Array.isArray(r.buckets)) {
    const b = r.buckets[0];
    if (b && typeof b.key === 'number' && typeof b.key_as_string === 'string') return 'date_histogram';
    if ('sum_other_doc_count' in r) return 'terms';
    return b && typeof b.key === 'number' ? 'histogram' : 'terms';
  }
  if (r.values && typeof r.values === 'object') return 'percentiles';
  if ('count' in r && 'min' in r && 'max' in r && 'avg' in r) return 'stats';
  if ('value' in r) return 'value';
  if (r.hits && r.hits.hits) return 'top_hits';
  return 'json';
}

/** One model per aggregation: {name, kind: 'bars'|'timeline'|'figures'|'hits'|'json', ...}. */
export function aggModels(request, result) {
  const types = aggTypes(request);
  const aggs = (result && result.aggregations) || {};
  return Object.entries(aggs).map(([name, r]) => aggModel(name, types[name] || guessType(r), r));
}

export function aggModel(name, type, r) {
  switch (type) {
    case 'date_histogram':
      return {
        name, kind: 'timeline',
        xs: r.buckets.map((b) => b.key / 1000),
        ys: r.buckets.map((b) => b.doc_count),
      };
    case 'terms': case 'histogram': case 'range': case 'date_range': case 'filters': {
      const buckets = Array.isArray(r.buckets) ? r.buckets
        : Object.entries(r.buckets || {}).map(([key, b]) => ({ key, ...b }));
      const bars = buckets.map((b) => ({ label: String(b.key_as_string ?? b.key), value: b.doc_count }));
      const other = r.sum_other_doc_count || 0;
      return { name, kind: 'bars', bars, other, max: Math.max(1, ...bars.map((b) => b.value)) };
    }
    case 'stats': case 'extended_stats':
      return { name, kind: 'figures', figures: ['count', 'min', 'max', 'avg', 'sum', 'std_deviation']
        .filter((k) => k in r).map((k) => ({ label: k, value: r[k] })) };
    case 'percentiles':
      return { name, kind: 'figures', figures: Object.entries(r.values || {})
        .map(([k, v]) => ({ label: `p${Number(k)}`, value: v })) };
    case 'avg': case 'sum': case 'min': case 'max': case 'value_count': case 'cardinality': case 'value':
      return { name, kind: 'figures', figures: [{ label: type === 'value' ? name : type, value: r.value }] };
    case 'top_hits':
      return { name, kind: 'hits', ...hitsModel(r.hits) };
    case 'filter': case 'missing': case 'global':
      return { name, kind: 'figures', figures: [{ label: 'doc_count', value: r.doc_count }] };
    default:
      return { name, kind: 'json', json: r };
  }
}

function flatten(o, prefix, out, depth) {
  for (const [k, v] of Object.entries(o || {})) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === 'object' && !Array.isArray(v) && depth < 2) flatten(v, key, out, depth + 1);
    else out[key] = v;
  }
  return out;
}

/** Hits as a table: columns from the documents' (flattened) fields, first seen first. */
export function hitsModel(hits, maxColumns = 6) {
  const rows = ((hits && hits.hits) || []).map((h) => ({ ...flatten(h._source, '', {}, 0), '@partition': h['@partition'], '@offset': h['@offset'] }));
  const columns = [];
  for (const r of rows) for (const k of Object.keys(r)) if (!columns.includes(k) && !k.startsWith('@')) columns.push(k);
  const cols = columns.slice(0, maxColumns);
  if (rows.some((r) => r['@offset'] !== undefined)) cols.push('@partition', '@offset');
  return { total: hits && hits.total ? hits.total.value : 0, columns: cols, rows };
}

/** A number for people: 1234567 → "1,234,567"; 0.123456 → "0.1235". */
export function fmt(v) {
  if (v === null || v === undefined) return '–';
  if (typeof v !== 'number') return typeof v === 'string' ? v : JSON.stringify(v);
  if (Number.isInteger(v)) return v.toLocaleString('en-US');
  return Math.abs(v) >= 100 ? v.toLocaleString('en-US', { maximumFractionDigits: 1 }) : v.toPrecision(4);
}
