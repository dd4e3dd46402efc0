//! Single-pass JSON validation and field extraction for one record.
//!
//! [`extract`] checks that a record is one valid JSON text whose top level is an object
//! (accepting exactly what `serde_json::from_slice::<serde_json::Value>` accepts, then
//! requiring an object), and collects the scalar values found at a compiled set of dotted
//! field paths ([`PathSet`]) without building a DOM. Subtrees that no path needs are
//! skipped by a tight structural loop, but still fully validated.
//!
//! Path semantics follow Elasticsearch fields:
//! * a path is dot-separated segments; a JSON key containing dots counts as several
//!   segments (`{"a.b":{"c":1}}` has `1` at `a.b.c`);
//! * arrays are flattened at any depth, in document order, duplicates kept; an empty
//!   array yields nothing;
//! * an object sitting exactly at a path yields [`Scalar::Object`] (once per object);
//!   a path that goes through a scalar yields nothing;
//! * duplicate keys: every occurrence contributes;
//! * overlapping prefixes and repeated paths each fill their own slot.
//!
//! Numbers follow `serde_json` (feature `float_roundtrip`): an integer literal that fits
//! `i64` is [`Scalar::Int`] (except `-0`, which `serde_json` reads as the float `-0.0`);
//! every other number is [`Scalar::Float`] with the correctly rounded value; a number
//! whose value rounds to infinity (`1e400`) makes the record invalid, as in `serde_json`.
//! Nesting deeper than `serde_json`'s recursion limit (127 open arrays/objects) is invalid.
//!
//! How it is fast: the whole record's UTF-8 is checked once with `simdutf8`, and a
//! vectorisable min-reduction checks that no byte is below 0x20 (control bytes); when
//! that holds, string bodies only need to look for `"` and `\` (SWAR on 8-byte words for
//! short strings, `memchr2` for long ones). Records that do contain control bytes (e.g.
//! pretty-printed) take the same code with an extra per-word control check. Keys are
//! compared with the path trie only at levels where the trie has children; a key is
//! unescaped (into a reused buffer) only if it contains a backslash. No allocation
//! happens per record in steady state, except one `String` per extracted string value
//! that contains escapes.
//!
//! Pure: no I/O, clock or environment; no `unsafe`; never panics on any input.

use std::borrow::Cow;

/// Deepest nesting of arrays/objects accepted (`serde_json`'s recursion limit).
const MAX_DEPTH: usize = 127;

/// Compiled set of dotted field paths; path `i` fills slot `i` of [`Extracted`].
#[derive(Debug, Clone)]
pub struct PathSet {
    /// Trie of path segments; node 0 is the root (never terminal).
    nodes: Vec<Node>,
    len: usize,
}

#[derive(Debug, Clone, Default)]
struct Node {
    /// (segment, child node index)
    children: Vec<(Box<[u8]>, u32)>,
    /// Slots filled by values found exactly at this node.
    slots: Vec<u32>,
}

impl PathSet {
    /// Compile `paths`; path `i` fills slot `i`. Each path is split on `.`
    /// (so `""` is the single empty segment, `"a..b"` is `a`, `""`, `b`).
    pub fn new<S: AsRef<str>>(paths: &[S]) -> PathSet {
        let mut nodes = vec![Node::default()];
        for (slot, p) in paths.iter().enumerate() {
            let mut node = 0usize;
            for seg in p.as_ref().split('.') {
                let seg = seg.as_bytes();
                let found = nodes[node].children.iter().find(|(s, _)| &**s == seg).map(|c| c.1);
                node = match found {
                    Some(c) => c as usize,
                    None => {
                        let c = nodes.len();
                        nodes.push(Node::default());
                        nodes[node].children.push((seg.into(), c as u32));
                        c
                    }
                };
            }
            nodes[node].slots.push(slot as u32);
        }
        PathSet { nodes, len: paths.len() }
    }

    /// Number of paths (= slots).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if there are no paths (extraction is then pure validation).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn node(&self, n: u32) -> &Node {
        // Node indices are only ever produced by this trie; fall back to the root
        // rather than panic.
        self.nodes.get(n as usize).unwrap_or(&self.nodes[0])
    }

    /// Follow a (raw, unescaped) key from node `n`; a key with dots is several segments.
    /// Trie segments never contain dots, so a dotted key can only continue through the
    /// child whose segment is followed by a dot in the key.
    #[inline]
    fn descend(&self, n: u32, key: &[u8]) -> Option<u32> {
        let mut n = n;
        let mut key = key;
        'seg: loop {
            for (seg, c) in &self.node(n).children {
                let l = seg.len();
                if key.len() == l {
                    if **seg == *key {
                        return Some(*c);
                    }
                } else if key.len() > l && key[l] == b'.' && key[..l] == **seg {
                    n = *c;
                    key = &key[l + 1..];
                    continue 'seg;
                }
            }
            return None;
        }
    }
}

/// A scalar found at a path.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    /// JSON `null` (Elasticsearch treats it as missing).
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// Integer literal (no `.`, `e`, `E`) fitting `i64` (`-0` is `Float(-0.0)`, as in serde_json).
    Int(i64),
    /// Any other number, with the value `serde_json` (float_roundtrip) gives it.
    Float(f64),
    /// Unescaped string; `Borrowed` when the literal has no escapes.
    Str(Cow<'a, str>),
    /// An object sits at the path (used for `exists`).
    Object,
}

/// Reusable output buffer: slot `i` holds the values found at path `i`, in document order.
///
/// Allocations are kept across records: [`extract`] clears, it does not drop. To reuse one
/// buffer across records that live in different (e.g. reused) byte buffers, convert it with
/// [`Extracted::recycle`], which empties it and re-labels its lifetime while keeping the
/// allocations:
///
/// ```text
/// let mut spare: Extracted<'static> = Extracted::with_slots(paths.len());
/// for buf in records {
///     let mut out = spare.recycle();          // Extracted<'_> borrowing `buf`
///     if extract(&buf, &paths, &mut out).is_ok() { /* use out.values(i) */ }
///     spare = out.recycle();                  // back to 'static, allocations kept
/// }
/// ```
#[derive(Debug, Default)]
pub struct Extracted<'a> {
    slots: Vec<Vec<Scalar<'a>>>,
    /// Scratch for unescaping keys that contain backslashes.
    key_buf: String,
}

impl<'a> Extracted<'a> {
    /// A buffer with `n` empty slots.
    pub fn with_slots(n: usize) -> Self {
        Extracted { slots: (0..n).map(|_| Vec::new()).collect(), key_buf: String::new() }
    }

    /// Values found at path `slot` (empty if `slot` is out of range).
    pub fn values(&self, slot: usize) -> &[Scalar<'a>] {
        self.slots.get(slot).map_or(&[], |v| v.as_slice())
    }

    /// Replace each value of `slot` by what `convert` makes of it (`None` drops it): how
    /// `runtime_mappings` give a field its declared type.
    pub fn convert_slot(
        &mut self,
        slot: usize,
        convert: impl FnMut(Scalar<'a>) -> Option<Scalar<'a>>,
    ) {
        if let Some(values) = self.slots.get_mut(slot) {
            let converted: Vec<Scalar<'a>> = values.drain(..).filter_map(convert).collect();
            *values = converted;
        }
    }

    /// Empty the buffer to `n` slots, then fill each slot `i` with a copy of the values of
    /// `from`'s slot `map[i]`: a plan's own view of a scan made for several plans.
    pub(crate) fn copy_mapped(&mut self, from: &Extracted<'a>, map: &[u32]) {
        self.reset(map.len());
        for (slot, &source) in self.slots.iter_mut().zip(map) {
            slot.extend_from_slice(from.values(source as usize));
        }
    }

    /// Number of slots.
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// Empty every slot, keeping the allocations.
    pub fn clear(&mut self) {
        for s in &mut self.slots {
            s.clear();
        }
    }

    /// Empty the buffer and give it a new lifetime, keeping its allocations (the slot
    /// vectors are converted in place; `Scalar<'a>` and `Scalar<'b>` have the same layout).
    // `filter_map(|_| None)` (not `filter`) is what changes the element type's lifetime.
    #[allow(clippy::unnecessary_filter_map)]
    pub fn recycle<'b>(self) -> Extracted<'b> {
        let slots = self
            .slots
            .into_iter()
            .map(|v| v.into_iter().filter_map(|_| None::<Scalar<'b>>).collect::<Vec<_>>())
            .collect();
        Extracted { slots, key_buf: self.key_buf }
    }

    fn reset(&mut self, n: usize) {
        self.clear();
        if self.slots.len() != n {
            self.slots.resize_with(n, Vec::new);
        }
    }
}

/// Why a record was rejected, and where (byte offset of the problem, roughly where
/// `serde_json` would report it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON at byte {offset}: {reason}")]
pub struct InvalidJson {
    /// Byte offset of the problem.
    pub offset: usize,
    /// What is wrong there.
    pub reason: &'static str,
}

type Res<T> = Result<T, InvalidJson>;

#[cold]
#[inline(never)]
fn err<T>(offset: usize, reason: &'static str) -> Res<T> {
    Err(InvalidJson { offset, reason })
}

/// Validate `bytes` and fill `out` (cleared first; resized to `paths.len()` slots).
/// On error `out` is left empty.
pub fn extract<'a>(
    bytes: &'a [u8],
    paths: &PathSet,
    out: &mut Extracted<'a>,
) -> Result<(), InvalidJson> {
    out.reset(paths.len());
    let r = run(bytes, paths, Some(&mut *out));
    if r.is_err() {
        out.clear();
    }
    r
}

/// Validate only (same acceptance as [`extract`] with an empty [`PathSet`]).
pub fn validate(bytes: &[u8]) -> Result<(), InvalidJson> {
    let empty = PathSet { nodes: vec![Node::default()], len: 0 };
    run(bytes, &empty, None)
}

fn run<'a>(bytes: &'a [u8], paths: &PathSet, out: Option<&mut Extracted<'a>>) -> Res<()> {
    let text = match simdutf8::basic::from_utf8(bytes) {
        Ok(t) => t,
        Err(_) => {
            let at = simdutf8::compat::from_utf8(bytes).err().map_or(0, |e| e.valid_up_to());
            return err(at, "invalid UTF-8");
        }
    };
    let ctrl = has_control(bytes);
    let mut p = Parser { b: bytes, text, ctrl, paths, out };
    let i = ws(bytes, 0);
    match bytes.get(i) {
        Some(b'{') => {}
        None => return err(i, "EOF while parsing a value"),
        Some(_) => return err(i, "top level is not an object"),
    }
    let has_children = !paths.node(0).children.is_empty();
    let i = match (&p.out, has_children) {
        (Some(_), true) => p.object(i + 1, 0, 1)?,
        _ => p.skip_value(i, 0)?,
    };
    let i = ws(bytes, i);
    if i != bytes.len() {
        return err(i, "trailing characters");
    }
    Ok(())
}

/// True if any byte is below 0x20. Written as a min-reduction over fixed chunks so
/// that it auto-vectorises.
#[inline]
fn has_control(b: &[u8]) -> bool {
    let mut chunks = b.chunks_exact(128);
    for c in &mut chunks {
        let mut m = 0xffu8;
        for &x in c {
            m = m.min(x);
        }
        if m < 0x20 {
            return true;
        }
    }
    chunks.remainder().iter().any(|&x| x < 0x20)
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// High bit set in the lowest byte equal to `c` (higher bits may be false positives).
#[inline(always)]
fn eq_mask(w: u64, c: u8) -> u64 {
    let x = w ^ (LO * c as u64);
    x.wrapping_sub(LO) & !x & HI
}

/// High bit set in the lowest byte below `n` (n <= 128; higher bits may be false positives).
#[inline(always)]
fn lt_mask(w: u64, n: u8) -> u64 {
    w.wrapping_sub(LO * n as u64) & !w & HI
}

#[inline(always)]
fn load8(b: &[u8], i: usize) -> Option<u64> {
    b.get(i..).and_then(|s| s.first_chunk::<8>()).map(|c| u64::from_le_bytes(*c))
}

/// Skip JSON whitespace.
#[inline(always)]
fn ws(b: &[u8], mut i: usize) -> usize {
    while let Some(&c) = b.get(i) {
        if c > b' ' || !(c == b' ' || c == b'\n' || c == b'\r' || c == b'\t') {
            break;
        }
        i += 1;
    }
    i
}

/// Index of the first byte at or after `i` that is not an ASCII digit.
#[inline(always)]
fn skip_digits(b: &[u8], mut i: usize) -> usize {
    while let Some(w) = load8(b, i) {
        let hi = w & 0xf0f0_f0f0_f0f0_f0f0;
        let hi6 = w.wrapping_add(0x0606_0606_0606_0606) & 0xf0f0_f0f0_f0f0_f0f0;
        let m = (hi ^ 0x3030_3030_3030_3030) | (hi6 ^ 0x3030_3030_3030_3030);
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(b'0'..=b'9') = b.get(i) {
        i += 1;
    }
    i
}

/// Index of the first `"` or `\\` (or, if `CTRL`, byte below 0x20) at or after `i`;
/// `b.len()` if none. One 8-byte SWAR step (most strings are short), then 32-byte
/// chunks with an any-check that auto-vectorises, then SWAR to locate.
#[inline(always)]
fn find_special<const CTRL: bool>(b: &[u8], mut i: usize) -> usize {
    #[inline(always)]
    fn word(w: u64, ctrl: bool) -> u64 {
        let m = eq_mask(w, b'"') | eq_mask(w, b'\\');
        if ctrl { m | lt_mask(w, 0x20) } else { m }
    }
    if let Some(w) = load8(b, i) {
        let m = word(w, CTRL);
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(c) = b.get(i..).and_then(|s| s.first_chunk::<32>()) {
        let mut a = 0u8;
        for &x in c {
            a |= ((x == b'"') | (x == b'\\') | (CTRL & (x < 0x20))) as u8;
        }
        if a != 0 {
            break;
        }
        i += 32;
    }
    while let Some(w) = load8(b, i) {
        let m = word(w, CTRL);
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&x) = b.get(i) {
        if x == b'"' || x == b'\\' || (CTRL && x < 0x20) {
            return i;
        }
        i += 1;
    }
    i
}

/// Value of each byte as a hex digit; 0xff for bytes that are not one.
const HEX_VALUE: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut c = 0;
    while c < 10 {
        t[b'0' as usize + c] = c as u8;
        c += 1;
    }
    let mut c = 0;
    while c < 6 {
        t[b'a' as usize + c] = 10 + c as u8;
        t[b'A' as usize + c] = 10 + c as u8;
        c += 1;
    }
    t
};

/// A byte's value as a hex digit.
#[inline(always)]
pub(crate) fn hex_digit(c: u8) -> Option<u8> {
    let d = HEX_VALUE[usize::from(c)];
    (d < 16).then_some(d)
}

/// The four hex digits at `i` (a `\u` escape's), by table lookup: it is on the hot path.
#[inline(always)]
fn hex4(b: &[u8], i: usize) -> Option<u32> {
    let h = b.get(i..)?.first_chunk::<4>()?;
    let d = h.map(|c| HEX_VALUE[usize::from(c)]);
    if (d[0] | d[1] | d[2] | d[3]) & 0xf0 != 0 {
        return None;
    }
    Some(u32::from(d[0]) << 12 | u32::from(d[1]) << 8 | u32::from(d[2]) << 4 | u32::from(d[3]))
}

struct Parser<'a, 'o, 'p> {
    b: &'a [u8],
    text: &'a str,
    /// The record contains bytes below 0x20: strings must be checked for them.
    ctrl: bool,
    paths: &'p PathSet,
    out: Option<&'o mut Extracted<'a>>,
}

/// Facts about a number literal needed to convert it.
#[derive(Clone, Copy)]
struct Num {
    end: usize,
    is_int: bool,
}

impl<'a> Parser<'a, '_, '_> {
    /// `i` is just after an opening quote. Returns (index of the closing quote, had escapes).
    #[inline(always)]
    fn scan_string(&self, mut i: usize) -> Res<(usize, bool)> {
        let b = self.b;
        let mut esc = false;
        loop {
            i = if self.ctrl { find_special::<true>(b, i) } else { find_special::<false>(b, i) };
            match b.get(i) {
                Some(b'"') => return Ok((i, esc)),
                Some(b'\\') => {
                    esc = true;
                    // The common escapes inline (the API escapes every non-ASCII character,
                    // `/`, `<` and `>`: a tweet has ~120); surrogates and errors out of line.
                    i = match (b.get(i + 1), hex4(b, i + 2)) {
                        (Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't'), _) => i + 2,
                        (Some(b'u'), Some(n)) if !(0xd800..=0xdfff).contains(&n) => i + 6,
                        _ => self.escape(i)?,
                    };
                }
                None => return err(i, "EOF while parsing a string"),
                Some(_) => {
                    return err(
                        i,
                        "control character (\\u0000-\\u001F) found while parsing a string",
                    );
                }
            }
        }
    }

    /// `i` is at a backslash inside a string; validate the escape, return the index after it.
    #[inline(never)]
    fn escape(&self, i: usize) -> Res<usize> {
        let b = self.b;
        match b.get(i + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(i + 2),
            Some(b'u') => {
                let Some(n) = hex4(b, i + 2) else {
                    return err(i + 2, "invalid escape");
                };
                match n {
                    0xdc00..=0xdfff => err(i, "lone leading surrogate in hex escape"),
                    0xd800..=0xdbff => {
                        if b.get(i + 6) != Some(&b'\\') || b.get(i + 7) != Some(&b'u') {
                            return err(i + 6, "unexpected end of hex escape");
                        }
                        match hex4(b, i + 8) {
                            Some(0xdc00..=0xdfff) => Ok(i + 12),
                            Some(_) => err(i + 8, "lone leading surrogate in hex escape"),
                            None => err(i + 8, "invalid escape"),
                        }
                    }
                    _ => Ok(i + 6),
                }
            }
            None => err(i + 1, "EOF while parsing a string"),
            Some(_) => err(i + 1, "invalid escape"),
        }
    }

    /// `i` is at `-` or a digit. Validates grammar and range (finite as f64).
    #[inline(always)]
    fn scan_number(&self, start: usize) -> Res<Num> {
        let b = self.b;
        let mut i = start;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        let int_start = i;
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => i = skip_digits(b, i + 1),
            Some(_) => return err(i, "invalid number"),
            None => return err(i, "EOF while parsing a value"),
        }
        let int_digits = i - int_start;
        match b.get(i) {
            Some(b'.' | b'e' | b'E') => {}
            Some(b'0'..=b'9') => return err(i, "invalid number"), // leading zero
            _ => {
                if int_digits > 300 {
                    self.check_range(start, i)?;
                }
                return Ok(Num { end: i, is_int: true });
            }
        }
        self.scan_number_tail(start, i, int_digits)
    }

    #[inline(never)]
    fn scan_number_tail(&self, start: usize, mut i: usize, int_digits: usize) -> Res<Num> {
        let b = self.b;
        if b.get(i) == Some(&b'.') {
            let s = i + 1;
            i = skip_digits(b, s);
            if i == s {
                return err(i, "invalid number");
            }
        }
        let mut big = int_digits > 300;
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            let mut neg = false;
            match b.get(i) {
                Some(b'+') => i += 1,
                Some(b'-') => {
                    i += 1;
                    neg = true;
                }
                _ => {}
            }
            let s = i;
            i = skip_digits(b, s);
            if i == s {
                return err(i, "invalid number");
            }
            if !neg {
                // value < 10^(int_digits + exp): finite if that is <= 10^300.
                let mut e = 0usize;
                for &d in b.get(s..i).unwrap_or(&[]) {
                    e = (e * 10 + d.wrapping_sub(b'0') as usize).min(1_000_000);
                }
                big = big || int_digits + e > 300;
            }
        }
        if big {
            self.check_range(start, i)?;
        }
        Ok(Num { end: i, is_int: false })
    }

    #[cold]
    #[inline(never)]
    fn check_range(&self, start: usize, end: usize) -> Res<()> {
        let f = self.parse_f64(start, end);
        if f.is_infinite() { err(start, "number out of range") } else { Ok(()) }
    }

    fn parse_f64(&self, start: usize, end: usize) -> f64 {
        self.text.get(start..end).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0)
    }

    fn number_value(&self, start: usize, num: Num) -> Scalar<'a> {
        let b = self.b;
        if num.is_int {
            let (neg, ds) = match b.get(start) {
                Some(b'-') => (true, start + 1),
                _ => (false, start),
            };
            let digits = b.get(ds..num.end).unwrap_or(&[]);
            if digits.len() <= 19 {
                let mut m = 0u64;
                for &d in digits {
                    m = m.wrapping_mul(10).wrapping_add(d.wrapping_sub(b'0') as u64);
                }
                if neg {
                    if m == 0 {
                        return Scalar::Float(-0.0);
                    }
                    if m <= 1u64 << 63 {
                        return Scalar::Int((m as i64).wrapping_neg());
                    }
                } else if m <= i64::MAX as u64 {
                    return Scalar::Int(m as i64);
                }
            }
        }
        Scalar::Float(self.parse_f64(start, num.end))
    }

    #[inline(always)]
    fn literal(&self, i: usize, lit: &'static [u8]) -> Res<usize> {
        let end = i + lit.len();
        if self.b.get(i..end) == Some(lit) { Ok(end) } else { self.bad_literal(i, lit) }
    }

    #[cold]
    #[inline(never)]
    fn bad_literal(&self, i: usize, lit: &'static [u8]) -> Res<usize> {
        for (k, &c) in lit.iter().enumerate() {
            match self.b.get(i + k) {
                None => return err(i + k, "EOF while parsing a value"),
                Some(&x) if x != c => return err(i + k, "expected ident"),
                _ => {}
            }
        }
        err(i, "expected ident")
    }

    /// `i` is at a key's opening quote (or should be). Returns the index of the value.
    #[inline(always)]
    fn key_colon(&self, i: usize) -> Res<usize> {
        let b = self.b;
        match b.get(i) {
            Some(b'"') => {}
            None => return err(i, "EOF while parsing an object"),
            Some(_) => return err(i, "key must be a string"),
        }
        let (e, _) = self.scan_string(i + 1)?;
        self.colon(e + 1)
    }

    #[inline(always)]
    fn colon(&self, i: usize) -> Res<usize> {
        let b = self.b;
        let i = ws(b, i);
        match b.get(i) {
            Some(b':') => Ok(ws(b, i + 1)),
            None => err(i, "EOF while parsing an object"),
            Some(_) => err(i, "expected `:`"),
        }
    }

    /// Validate one value starting at `i` (whitespace already skipped), inside `depth`
    /// open containers. Returns the index just after it. Iterative: a bit stack records
    /// whether each open container is an object.
    fn skip_value(&self, mut i: usize, depth: usize) -> Res<usize> {
        let b = self.b;
        let mut stack: u128 = 0; // bit k: container at level k+1 is an object
        let mut level: usize = 0;
        let mut is_obj = false; // type of the innermost open container
        'value: loop {
            match b.get(i) {
                Some(b'"') => i = self.scan_string(i + 1)?.0 + 1,
                Some(&c @ (b'{' | b'[')) => {
                    if depth + level >= MAX_DEPTH {
                        return err(i, "recursion limit exceeded");
                    }
                    i = ws(b, i + 1);
                    if c == b'{' {
                        if b.get(i) == Some(&b'}') {
                            i += 1;
                        } else {
                            stack |= 1u128 << level;
                            level += 1;
                            is_obj = true;
                            i = self.key_colon(i)?;
                            continue 'value;
                        }
                    } else if b.get(i) == Some(&b']') {
                        i += 1;
                    } else {
                        stack &= !(1u128 << level);
                        level += 1;
                        is_obj = false;
                        continue 'value;
                    }
                }
                Some(b'-' | b'0'..=b'9') => i = self.scan_number(i)?.end,
                Some(b't') => i = self.literal(i, b"true")?,
                Some(b'f') => i = self.literal(i, b"false")?,
                Some(b'n') => i = self.literal(i, b"null")?,
                Some(_) => return err(i, "expected value"),
                None => return err(i, "EOF while parsing a value"),
            }
            // After a value: close containers / move to the next element.
            loop {
                if level == 0 {
                    return Ok(i);
                }
                i = ws(b, i);
                match b.get(i) {
                    Some(b',') => {
                        i = ws(b, i + 1);
                        if is_obj {
                            i = self.key_colon(i)?;
                        }
                        continue 'value;
                    }
                    Some(b'}') if is_obj => {
                        i += 1;
                        level -= 1;
                        is_obj = level > 0 && (stack >> (level - 1)) & 1 == 1;
                    }
                    Some(b']') if !is_obj => {
                        i += 1;
                        level -= 1;
                        is_obj = level > 0 && (stack >> (level - 1)) & 1 == 1;
                    }
                    None => return err(i, "EOF while parsing a list or object"),
                    Some(_) if is_obj => return err(i, "expected `,` or `}`"),
                    Some(_) => return err(i, "expected `,` or `]`"),
                }
            }
        }
    }

    /// Record `v` in every slot of `node`.
    #[inline]
    fn emit(&mut self, node: u32, v: Scalar<'a>) {
        let slots = &self.paths.node(node).slots;
        if let Some(out) = self.out.as_deref_mut() {
            if let [only] = slots.as_slice() {
                if let Some(s) = out.slots.get_mut(*only as usize) {
                    s.push(v);
                }
            } else {
                for &s in slots {
                    if let Some(s) = out.slots.get_mut(s as usize) {
                        s.push(v.clone());
                    }
                }
            }
        }
    }

    /// `i` is just after the `{` of an object at trie node `node` (which has children),
    /// at nesting `depth` (counting this object).
    fn object(&mut self, i: usize, node: u32, depth: usize) -> Res<usize> {
        let b = self.b;
        let mut i = ws(b, i);
        if b.get(i) == Some(&b'}') {
            return Ok(i + 1);
        }
        loop {
            match b.get(i) {
                Some(b'"') => {}
                None => return err(i, "EOF while parsing an object"),
                Some(_) => return err(i, "key must be a string"),
            }
            let ks = i + 1;
            let (ke, esc) = self.scan_string(ks)?;
            let target = self.match_key(node, ks, ke, esc);
            i = self.colon(ke + 1)?;
            i = match target {
                Some(n) => self.value(i, n, depth)?,
                None => self.skip_value(i, depth)?,
            };
            i = ws(b, i);
            match b.get(i) {
                Some(b',') => i = ws(b, i + 1),
                Some(b'}') => return Ok(i + 1),
                None => return err(i, "EOF while parsing an object"),
                Some(_) => return err(i, "expected `,` or `}`"),
            }
        }
    }

    #[inline]
    fn match_key(&mut self, node: u32, ks: usize, ke: usize, esc: bool) -> Option<u32> {
        let raw = self.b.get(ks..ke)?;
        if !esc {
            return self.paths.descend(node, raw);
        }
        let out = self.out.as_deref_mut()?;
        let mut buf = std::mem::take(&mut out.key_buf);
        buf.clear();
        unescape(self.text.get(ks..ke).unwrap_or(""), &mut buf);
        let r = self.paths.descend(node, buf.as_bytes());
        if let Some(out) = self.out.as_deref_mut() {
            out.key_buf = buf;
        }
        r
    }

    /// A value at trie node `node` (a key matched), inside `depth` open containers.
    fn value(&mut self, i: usize, node: u32, depth: usize) -> Res<usize> {
        let b = self.b;
        let n = self.paths.node(node);
        let has_slots = !n.slots.is_empty();
        let has_children = !n.children.is_empty();
        match b.get(i) {
            Some(b'{') => {
                if depth >= MAX_DEPTH {
                    return err(i, "recursion limit exceeded");
                }
                if has_slots {
                    self.emit(node, Scalar::Object);
                }
                if has_children {
                    self.object(i + 1, node, depth + 1)
                } else {
                    self.skip_value(i, depth)
                }
            }
            Some(b'[') => {
                if depth >= MAX_DEPTH {
                    return err(i, "recursion limit exceeded");
                }
                let mut j = ws(b, i + 1);
                if b.get(j) == Some(&b']') {
                    return Ok(j + 1);
                }
                loop {
                    j = self.value(j, node, depth + 1)?;
                    j = ws(b, j);
                    match b.get(j) {
                        Some(b',') => j = ws(b, j + 1),
                        Some(b']') => return Ok(j + 1),
                        None => return err(j, "EOF while parsing a list"),
                        Some(_) => return err(j, "expected `,` or `]`"),
                    }
                }
            }
            Some(b'"') => {
                let (e, esc) = self.scan_string(i + 1)?;
                if has_slots {
                    let v = if esc {
                        let mut s = String::new();
                        unescape(self.text.get(i + 1..e).unwrap_or(""), &mut s);
                        Cow::Owned(s)
                    } else {
                        Cow::Borrowed(self.text.get(i + 1..e).unwrap_or(""))
                    };
                    self.emit(node, Scalar::Str(v));
                }
                Ok(e + 1)
            }
            Some(b'-' | b'0'..=b'9') => {
                let num = self.scan_number(i)?;
                if has_slots {
                    let v = self.number_value(i, num);
                    self.emit(node, v);
                }
                Ok(num.end)
            }
            Some(b't') => {
                let e = self.literal(i, b"true")?;
                if has_slots {
                    self.emit(node, Scalar::Bool(true));
                }
                Ok(e)
            }
            Some(b'f') => {
                let e = self.literal(i, b"false")?;
                if has_slots {
                    self.emit(node, Scalar::Bool(false));
                }
                Ok(e)
            }
            Some(b'n') => {
                let e = self.literal(i, b"null")?;
                if has_slots {
                    self.emit(node, Scalar::Null);
                }
                Ok(e)
            }
            Some(_) => err(i, "expected value"),
            None => err(i, "EOF while parsing a value"),
        }
    }
}

/// Unescape a validated string body (between the quotes) into `out`.
fn unescape(s: &str, out: &mut String) {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let Some(k) = memchr::memchr(b'\\', &b[i..]) else {
            out.push_str(s.get(i..).unwrap_or(""));
            return;
        };
        out.push_str(s.get(i..i + k).unwrap_or(""));
        i += k;
        let c = match b.get(i + 1) {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                let n = hex4(b, i + 2).unwrap_or(0xfffd);
                if (0xd800..=0xdbff).contains(&n) {
                    let lo = hex4(b, i + 8).unwrap_or(0xdc00);
                    i += 6;
                    char::from_u32(
                        0x10000 + ((n - 0xd800) << 10) + (lo.wrapping_sub(0xdc00) & 0x3ff),
                    )
                    .unwrap_or('\u{fffd}')
                } else {
                    char::from_u32(n).unwrap_or('\u{fffd}')
                }
            }
            _ => '\u{fffd}',
        };
        out.push(c);
        i += if b.get(i + 1) == Some(&b'u') { 6 } else { 2 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(doc: &str, paths: &[&str]) -> Vec<Vec<Scalar<'static>>> {
        let ps = PathSet::new(paths);
        let mut out = Extracted::with_slots(0);
        extract(doc.as_bytes(), &ps, &mut out).expect("valid");
        let r = (0..ps.len())
            .map(|i| {
                out.values(i)
                    .iter()
                    .map(|v| match v {
                        Scalar::Str(s) => Scalar::Str(Cow::Owned(s.to_string())),
                        Scalar::Null => Scalar::Null,
                        Scalar::Bool(b) => Scalar::Bool(*b),
                        Scalar::Int(i) => Scalar::Int(*i),
                        Scalar::Float(f) => Scalar::Float(*f),
                        Scalar::Object => Scalar::Object,
                    })
                    .collect()
            })
            .collect();
        assert_eq!(validate(doc.as_bytes()), Ok(()));
        r
    }

    fn s(x: &str) -> Scalar<'static> {
        Scalar::Str(Cow::Owned(x.to_string()))
    }

    #[test]
    fn nested_and_dotted_keys() {
        assert_eq!(ex(r#"{"a":{"b":{"c":1}}}"#, &["a.b.c"]), vec![vec![Scalar::Int(1)]]);
        assert_eq!(ex(r#"{"a.b":{"c":1}}"#, &["a.b.c"]), vec![vec![Scalar::Int(1)]]);
        assert_eq!(ex(r#"{"a":{"b.c":1}}"#, &["a.b.c"]), vec![vec![Scalar::Int(1)]]);
        assert_eq!(
            ex(r#"{"a.b.c":1,"a":{"b":{"c":2}}}"#, &["a.b.c"]),
            vec![vec![Scalar::Int(1), Scalar::Int(2)]]
        );
        assert_eq!(ex(r#"{"a.b":1}"#, &["a"]), vec![Vec::<Scalar<'static>>::new()]);
        assert_eq!(ex(r#"{"a\u002eb":{"c":1}}"#, &["a.b.c"]), vec![vec![Scalar::Int(1)]]);
        assert_eq!(ex(r#"{"":{"x":1}}"#, &[".x"]), vec![vec![Scalar::Int(1)]]);
    }

    #[test]
    fn arrays_flatten() {
        let doc = r#"{"entities":{"hashtags":[{"text":"a"},{"text":"b"},{"text":"a"}]}}"#;
        assert_eq!(ex(doc, &["entities.hashtags.text"]), vec![vec![s("a"), s("b"), s("a")]]);
        assert_eq!(
            ex(r#"{"t":[1,[2,[3,[]]],[],"x"]}"#, &["t"]),
            vec![vec![Scalar::Int(1), Scalar::Int(2), Scalar::Int(3), s("x")]]
        );
        assert_eq!(ex(r#"{"t":[]}"#, &["t"]), vec![vec![]]);
        assert_eq!(
            ex(r#"{"a":[[{"b":1}],{"b":[2,3]}]}"#, &["a.b"]),
            vec![vec![Scalar::Int(1), Scalar::Int(2), Scalar::Int(3)]]
        );
        assert_eq!(
            ex(r#"{"a":[{"b":1},{},{"b":{"c":1}}]}"#, &["a.b", "a"]),
            vec![
                vec![Scalar::Int(1), Scalar::Object],
                vec![Scalar::Object, Scalar::Object, Scalar::Object]
            ]
        );
    }

    #[test]
    fn objects_scalars_and_overlaps() {
        let doc = r#"{"user":{"screen_name":"bob","id":7},"x":5}"#;
        assert_eq!(
            ex(doc, &["user", "user.screen_name", "user.screen_name", "x.y", "nope"]),
            vec![vec![Scalar::Object], vec![s("bob")], vec![s("bob")], vec![], vec![]]
        );
        assert_eq!(
            ex(r#"{"a":"x","a":{"b":1},"a":2}"#, &["a", "a.b"]),
            vec![vec![s("x"), Scalar::Object, Scalar::Int(2)], vec![Scalar::Int(1)]]
        );
        assert_eq!(
            ex(r#"{"a":null,"b":true,"c":false}"#, &["a", "b", "c"]),
            vec![vec![Scalar::Null], vec![Scalar::Bool(true)], vec![Scalar::Bool(false)]]
        );
    }

    #[test]
    fn numbers_and_strings() {
        let doc = r#"{"n":[0,-0,12,-9223372036854775808,9223372036854775807,9223372036854775808,1.5,1e2,-0.0,123456789012345678901234567890]}"#;
        assert_eq!(
            ex(doc, &["n"]),
            vec![vec![
                Scalar::Int(0),
                Scalar::Float(-0.0),
                Scalar::Int(12),
                Scalar::Int(i64::MIN),
                Scalar::Int(i64::MAX),
                Scalar::Float(9223372036854775808.0),
                Scalar::Float(1.5),
                Scalar::Float(100.0),
                Scalar::Float(-0.0),
                Scalar::Float(1.2345678901234568e29)
            ]]
        );
        let doc = r#"{"s":["plain","a\"b\\c\/\b\f\n\r\t","\u00e9\ud83d\ude00","é😀"]}"#;
        let ps = PathSet::new(&["s"]);
        let mut out = Extracted::with_slots(1);
        extract(doc.as_bytes(), &ps, &mut out).expect("valid");
        let v = out.values(0);
        assert!(matches!(&v[0], Scalar::Str(Cow::Borrowed("plain"))));
        assert_eq!(v[1], s("a\"b\\c/\u{8}\u{c}\n\r\t"));
        assert!(matches!(&v[1], Scalar::Str(Cow::Owned(_))));
        assert_eq!(v[2], s("é😀"));
        assert!(matches!(&v[3], Scalar::Str(Cow::Borrowed("é😀"))));
    }

    #[test]
    fn validity_edges() {
        let ok = [
            "{}",
            " \t\r\n{ } \n",
            r#"{"a":[1e308,-1e308,0e99999999999,1e-99999]}"#,
            r#"{"a":"\u007f"}"#,
        ];
        for d in ok {
            assert_eq!(validate(d.as_bytes()), Ok(()), "{d}");
        }
        let bad = [
            "",
            "[]",
            "1",
            "\"x\"",
            "{}x",
            "{}{}",
            "{\"a\":1,}",
            "{\"a\":01}",
            "{\"a\":1.}",
            "{\"a\":.5}",
            "{\"a\":+1}",
            "{\"a\":1e}",
            "{\"a\":1e400}",
            "{\"a\":-1.8e308}",
            "{\"a\":\"\\ud800\"}",
            "{\"a\":\"\\udc00\"}",
            "{\"a\":\"\\ud800\\u0041\"}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"\t\"}",
            "{\"a\":\"\u{1}\"}",
            "{\"a\":tru}",
            "{\"a\" 1}",
            "{a:1}",
            "{\"a\":1",
            "\u{feff}{}",
        ];
        for d in bad {
            assert!(validate(d.as_bytes()).is_err(), "{d:?}");
            let mut out = Extracted::with_slots(1);
            assert!(extract(d.as_bytes(), &PathSet::new(&["a"]), &mut out).is_err(), "{d:?}");
        }
        assert!(validate(b"{\"a\":\"\xff\"}").is_err());
        assert!(validate(b"{\"a\":\"\xc3\"}").is_err());
    }

    #[test]
    fn depth_limit() {
        for (d, ok) in [(126, true), (127, true), (128, false)] {
            // d levels in total, the top object included.
            let arr = format!("{{\"a\":{}{}}}", "[".repeat(d - 1), "]".repeat(d - 1));
            let obj = format!("{}{}", "{\"a\":".repeat(d), "}".repeat(d));
            let obj = obj.replacen("{\"a\":}", "{}", 1);
            for doc in [&arr, &obj] {
                assert_eq!(validate(doc.as_bytes()).is_ok(), ok, "{d}");
                for p in ["a", "a.a.a", "b"] {
                    let mut out = Extracted::with_slots(1);
                    assert_eq!(extract(doc.as_bytes(), &PathSet::new(&[p]), &mut out).is_ok(), ok);
                }
            }
        }
    }

    #[test]
    fn reuse_and_recycle() {
        let ps = PathSet::new(&["a"]);
        let mut spare: Extracted<'static> = Extracted::with_slots(1);
        let mut ptr = 0usize;
        for k in 0..3 {
            let buf = format!("{{\"a\":[{k},{k},{k},{k},{k}]}}").into_bytes();
            let mut out = spare.recycle();
            extract(&buf, &ps, &mut out).expect("valid");
            assert_eq!(out.values(0).len(), 5);
            assert_eq!(out.values(1), &[]);
            let p = out.values(0).as_ptr() as usize;
            if k > 0 {
                assert_eq!(p, ptr, "allocation reused");
            }
            ptr = p;
            spare = out.recycle();
        }
        let mut out = Extracted::with_slots(3);
        assert!(extract(b"{\"a\":1,", &ps, &mut out).is_err());
        assert_eq!(out.values(0), &[]);
        assert_eq!(out.slot_count(), 1);
        assert!(ps.len() == 1 && !ps.is_empty() && PathSet::new::<&str>(&[]).is_empty());
    }
}
