// Shareable URLs: `#q=<base64url(query JSON)>` (repeatable: one panel each), `#id=<query id>`
// (attach to a running query), `?view=<name>` (a named view).

export function encodeQuery(text) {
  let compact = text;
  try { compact = JSON.stringify(JSON.parse(text)); } catch { /* keep as typed */ }
  const bytes = new TextEncoder().encode(compact);
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

export function decodeQuery(s) {
  const b64 = s.replace(/-/g, '+').replace(/_/g, '/');
  const bin = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
  const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}

/** Panels named by a URL: [{kind: 'query', text} | {kind: 'id', id} | {kind: 'view', name}]. */
export function panelsFromUrl(search, hash) {
  const out = [];
  const qs = new URLSearchParams(search || '');
  for (const name of qs.getAll('view')) if (name) out.push({ kind: 'view', name });
  const hs = new URLSearchParams((hash || '').replace(/^#/, ''));
  for (const [k, v] of hs) {
    if (k === 'q' && v) {
      try { out.push({ kind: 'query', text: JSON.stringify(JSON.parse(decodeQuery(v)), null, 2) }); } catch { /* skip */ }
    } else if (k === 'id' && /^q_[0-9a-f]+$/.test(v)) out.push({ kind: 'id', id: v });
  }
  return out;
}

/** The hash naming these panels. */
export function hashFor(panels) {
  const hs = panels.map((p) => (p.kind === 'id' ? `id=${p.id}` : p.kind === 'query' ? `q=${encodeQuery(p.text)}` : null)).filter(Boolean);
  return hs.length ? `#${hs.join('&')}` : '';
}
