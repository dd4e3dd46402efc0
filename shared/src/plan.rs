//! A compiled query: fold records into a partial state, merge states, render results.
//!
//! [`Plan`] is the one entry point the actions, `kappa dev` and the browser use. Its partial
//! state ([`PartialState`]) covers some set of records; [`Plan::empty_state`] is the identity of
//! [`Plan::merge`], and folding any split of a log and merging the parts in any grouping renders
//! the same result as one pass (see [`crate::agg`] for the laws).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::agg::{self, AggState, FoldCtx, RenderCtx, SEEN_KEY_OVERHEAD, SeenTerms};
use crate::error::{QueryError, StateError};
use crate::eval::{Doc, Record, matches};
use crate::hits::TopHits;
use crate::identity::{QueryId, query_id};
use crate::limits::Limits;
use crate::prefilter::Prefilter;
use crate::request::{AggKind, FieldRef, SearchRequest, parse_request};
use crate::scan::{self, Extracted, PathSet};
use crate::sort;
use crate::value::TermKey;

/// Format version of encoded partial states; bump on any change of [`PartialState`]'s layout.
///
/// 3: a stored state may be several encodings one after another ([`Plan::decode`]). The layout
/// of one is that of 2, which is still read; the byte changed so that a build that reads only
/// the first encoding (it ignored trailing bytes) refuses a state with more, instead of
/// silently losing what they added.
pub const STATE_FORMAT: u8 = 3;

/// The format before [`STATE_FORMAT`] 3, the same layout: a state written whole by an older build.
const STATE_FORMAT_WHOLE_ONLY: u8 = 2;

/// The partial result of a query over some set of records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartialState {
    records: u64,
    skipped: u64,
    hits: TopHits,
    aggs: Vec<AggState>,
    global: Vec<AggState>,
    /// Values seen in every record (matching or not) of each of the plan's `seen_fields`.
    seen: Vec<SeenTerms>,
    #[serde(skip)]
    bytes: usize,
}

impl PartialEq for PartialState {
    fn eq(&self, o: &Self) -> bool {
        // `bytes` is an estimate that depends on history, not part of the value.
        self.records == o.records
            && self.skipped == o.skipped
            && self.hits == o.hits
            && self.aggs == o.aggs
            && self.global == o.global
            && self.seen == o.seen
    }
}

impl PartialState {
    /// Records folded (every record passed over: matching or not, valid or skipped).
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Records that were not valid JSON objects.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Records that matched the query (`hits.total`).
    pub fn matched(&self) -> u64 {
        self.hits.total
    }

    /// Estimated heap bytes, checked against the memory budget.
    pub fn estimated_bytes(&self) -> usize {
        self.bytes
    }
}

/// What a render remembers for the next render of a state grown from the same one
/// ([`Plan::render_after`]): per top-level aggregation, in render order, what a `terms` showed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RenderMemo {
    terms: Vec<Option<agg::Shown>>,
}

impl RenderMemo {
    /// Estimated heap bytes, for a cache's budget.
    pub fn estimated_bytes(&self) -> usize {
        self.terms.iter().flatten().map(agg::Shown::estimated_bytes).sum()
    }
}

/// A validated, compiled query.
#[derive(Debug, Clone)]
pub struct Plan {
    request: SearchRequest,
    id: QueryId,
    paths: PathSet,
    prefilter: Option<Prefilter>,
    limits: Limits,
    /// Indexes of top-level aggregations that see every record (`global`), and of the others.
    global_aggs: Vec<usize>,
    query_aggs: Vec<usize>,
    /// Fields of `terms` aggregations with `min_doc_count: 0`, whose values are kept from
    /// every record.
    seen_fields: Vec<FieldRef>,
}

impl Plan {
    /// Parse, validate and compile a request body.
    pub fn parse(body: &Value, limits: &Limits) -> Result<Plan, QueryError> {
        Ok(Plan::new(parse_request(body, limits)?, limits.clone()))
    }

    /// Compile a parsed request.
    pub fn new(request: SearchRequest, limits: Limits) -> Plan {
        let id = query_id(&request);
        let paths = PathSet::new(&request.paths);
        let (global_aggs, query_aggs): (Vec<usize>, Vec<usize>) =
            (0..request.aggs.len()).partition(|&i| matches!(request.aggs[i].kind, AggKind::Global));
        let mut seen_fields = Vec::new();
        agg::seen_term_fields(&request.aggs, &mut seen_fields);
        // A record ruled out by the byte pre-filter is never seen by anything, so the
        // pre-filter is only sound when nothing looks at non-matching records.
        let prefilter = if global_aggs.is_empty() && seen_fields.is_empty() {
            Prefilter::for_query(&request.query)
        } else {
            None
        };
        Plan { request, id, paths, prefilter, limits, global_aggs, query_aggs, seen_fields }
    }

    /// The query id (`q_<hex>`).
    pub fn id(&self) -> &str {
        self.id.as_str()
    }

    /// The validated request.
    pub fn request(&self) -> &SearchRequest {
        &self.request
    }

    /// The limits this plan enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether a byte-level pre-filter rules out records before parsing.
    pub fn has_prefilter(&self) -> bool {
        self.prefilter.is_some()
    }

    /// The identity of [`Plan::merge`]: the state of no records.
    pub fn empty_state(&self) -> PartialState {
        let mut s = PartialState {
            records: 0,
            skipped: 0,
            hits: TopHits::default(),
            aggs: self.query_aggs.iter().map(|&i| agg::zero(&self.request.aggs[i])).collect(),
            global: self.global_aggs.iter().map(|&i| agg::zero(&self.request.aggs[i])).collect(),
            seen: vec![SeenTerms::new(); self.seen_fields.len()],
            bytes: 0,
        };
        s.bytes = self.heap_bytes(&s);
        s
    }

    /// An empty state to fold a batch into apart from `base`, the state it is then merged into:
    /// its estimate starts at `base`'s, so the fold is held to the budget of both together, as
    /// a fold into `base` is (else base and batch could each approach the budget, twice it in
    /// memory). It is only to be merged: a merge counts what it adds, not the other's estimate.
    pub fn empty_delta_of(&self, base: &PartialState) -> PartialState {
        PartialState { bytes: base.bytes, ..self.empty_state() }
    }

    /// Fold one record. A record that is not a JSON object is counted as skipped; the only
    /// error is a blown memory budget, after which the state must be discarded.
    pub fn fold(&self, state: &mut PartialState, record: &Record<'_>) -> Result<(), QueryError> {
        let mut scratch = Extracted::with_slots(self.paths.len());
        self.fold_with(state, record, &mut scratch)
    }

    /// Fold a batch of records in order.
    pub fn fold_all<'r>(
        &self,
        state: &mut PartialState,
        records: impl IntoIterator<Item = Record<'r>>,
    ) -> Result<(), QueryError> {
        // One extraction buffer for the whole batch: its slot vectors are reused per record.
        let mut scratch = Extracted::with_slots(self.paths.len());
        for r in records {
            self.fold_with(state, &r, &mut scratch)?;
        }
        Ok(())
    }

    fn fold_with<'r>(
        &self,
        state: &mut PartialState,
        record: &Record<'r>,
        ext: &mut Extracted<'r>,
    ) -> Result<(), QueryError> {
        state.records += 1;
        if let Some(pre) = &self.prefilter
            && !pre.may_match(record.value)
        {
            return Ok(());
        }
        if scan::extract(record.value, &self.paths, ext).is_err() {
            state.skipped += 1;
            return Ok(());
        }
        for field in &self.request.runtime {
            ext.convert_slot(field.slot, |v| field.convert(v));
        }
        self.fold_budgeted(state, &Doc::new(record, ext))
    }

    fn fold_budgeted(&self, state: &mut PartialState, doc: &Doc<'_, '_>) -> Result<(), QueryError> {
        let mut ctx = FoldCtx { bytes: state.bytes, budget: self.limits.max_state_bytes };
        let result = self.fold_doc(state, doc, &mut ctx);
        state.bytes = ctx.bytes;
        result
    }

    /// The paths this plan reads, slot by slot.
    pub(crate) fn path_names(&self) -> &[String] {
        &self.request.paths
    }

    /// The byte pre-filter, if one applies.
    pub(crate) fn prefilter(&self) -> Option<&Prefilter> {
        self.prefilter.as_ref()
    }

    /// Fold one record of a scan shared with other plans ([`crate::group`]): the same steps
    /// as [`Plan::fold`], with the pre-filter's answer (`candidate`) and the extraction
    /// (`None`: not valid JSON) made once for every plan, this plan's slot `i` being the
    /// scan's slot `map[i]`. `scratch` holds this plan's own copy when `runtime_mappings`
    /// convert its values (the scan is shared, so it is not converted in place).
    pub(crate) fn fold_shared<'r>(
        &self,
        state: &mut PartialState,
        record: &Record<'r>,
        candidate: bool,
        ext: Option<&Extracted<'r>>,
        map: &[u32],
        scratch: &mut Extracted<'r>,
    ) -> Result<(), QueryError> {
        state.records += 1;
        if !candidate {
            return Ok(());
        }
        let Some(ext) = ext else {
            state.skipped += 1;
            return Ok(());
        };
        if self.request.runtime.is_empty() {
            return self.fold_budgeted(state, &Doc::mapped(record, ext, Some(map)));
        }
        scratch.copy_mapped(ext, map);
        for field in &self.request.runtime {
            scratch.convert_slot(field.slot, |v| field.convert(v));
        }
        self.fold_budgeted(state, &Doc::new(record, scratch))
    }

    fn fold_doc(
        &self,
        state: &mut PartialState,
        doc: &Doc<'_, '_>,
        ctx: &mut FoldCtx,
    ) -> Result<(), QueryError> {
        for (&i, s) in self.global_aggs.iter().zip(&mut state.global) {
            agg::fold(&self.request.aggs[i], s, doc, ctx)?;
        }
        for (field, seen) in self.seen_fields.iter().zip(&mut state.seen) {
            for key in doc.values(field).iter().filter_map(TermKey::from_scalar) {
                if !seen.contains(&key) {
                    ctx.grow((key.heap_bytes() + SEEN_KEY_OVERHEAD) as isize)?;
                    seen.insert(key);
                }
            }
        }
        if !matches(&self.request.query, doc) {
            return Ok(());
        }
        let r = &self.request;
        let delta = state.hits.add(doc, r.size, &r.sort, &r.source);
        ctx.bytes = ctx.bytes.saturating_add_signed(delta);
        for (&i, s) in self.query_aggs.iter().zip(&mut state.aggs) {
            agg::fold(&r.aggs[i], s, doc, ctx)?;
        }
        if ctx.bytes > ctx.budget {
            return Err(budget_error(ctx.budget));
        }
        Ok(())
    }

    /// Merge `other` into `into`. Both must be states of this plan.
    pub fn merge(&self, into: &mut PartialState, other: &PartialState) -> Result<(), QueryError> {
        self.merge_unbudgeted(into, other);
        if into.bytes > self.limits.max_state_bytes {
            return Err(budget_error(self.limits.max_state_bytes));
        }
        Ok(())
    }

    /// [`Plan::merge`] without the budget check (the estimate still grows).
    fn merge_unbudgeted(&self, into: &mut PartialState, other: &PartialState) {
        into.records += other.records;
        into.skipped += other.skipped;
        // The estimate grows by what `other` brings (`agg::merge`), so a merge costs what
        // `other` holds, not what `into` does.
        let hits_before = into.hits.heap_bytes() as isize;
        into.hits.merge(&other.hits, self.request.size, &self.request.sort);
        let mut grown = into.hits.heap_bytes() as isize - hits_before;
        for ((&i, a), b) in self.query_aggs.iter().zip(&mut into.aggs).zip(&other.aggs) {
            grown += agg::merge(&self.request.aggs[i], a, b);
        }
        for ((&i, a), b) in self.global_aggs.iter().zip(&mut into.global).zip(&other.global) {
            grown += agg::merge(&self.request.aggs[i], a, b);
        }
        for (a, b) in into.seen.iter_mut().zip(&other.seen) {
            for key in b {
                if !a.contains(key) {
                    grown += (key.heap_bytes() + SEEN_KEY_OVERHEAD) as isize;
                    a.insert(key.clone());
                }
            }
        }
        into.bytes = into.bytes.saturating_add_signed(grown);
    }

    fn heap_bytes(&self, s: &PartialState) -> usize {
        let aggs =
            self.query_aggs.iter().zip(&s.aggs).chain(self.global_aggs.iter().zip(&s.global));
        let seen = s.seen.iter().flatten().map(|k| k.heap_bytes() + SEEN_KEY_OVERHEAD);
        128 + s.hits.heap_bytes()
            + aggs.map(|(&i, a)| agg::heap_bytes(&self.request.aggs[i], a)).sum::<usize>()
            + seen.sum::<usize>()
    }

    /// Whether merging `delta` into a state may change what [`Plan::render`] answers for it:
    /// not when no record of `delta` matched and no part of the plan sees the records the
    /// query does not match (`global` aggregations, terms with `min_doc_count: 0`), since only
    /// matched records reach the hits and the other aggregations (as for the pre-filter,
    /// [`Plan::new`]). A live refresh then keeps the result it knows instead of rendering it
    /// again to find it unchanged.
    pub fn may_change_result(&self, delta: &PartialState) -> bool {
        delta.matched() > 0 || !self.global_aggs.is_empty() || !self.seen_fields.is_empty()
    }

    /// The Elasticsearch response (`hits`, and `aggregations` when the request has any).
    pub fn render(&self, state: &PartialState) -> Result<Value, QueryError> {
        self.render_after(state, None, &[]).map(|(rendered, _)| rendered)
    }

    /// [`Plan::render`], and what to remember for the next render of a state that grew from
    /// this one. `since`: the memo of the render of a state that `merged` were merged into to
    /// give `state` (in any order); a top-level `terms` then ranks only the buckets it showed
    /// and those the merged states hold, instead of every key it ever saw (a live query's
    /// `terms` over an event's users: thousands of keys, for a wake-up's tens of records).
    /// The answer is [`Plan::render`]'s (`terms::renders_from_shown` says why).
    pub fn render_after(
        &self,
        state: &PartialState,
        since: Option<&RenderMemo>,
        merged: &[&PartialState],
    ) -> Result<(Value, RenderMemo), QueryError> {
        let r = &self.request;
        let mut ctx = RenderCtx {
            buckets: 0,
            max_buckets: self.limits.max_buckets,
            topic: &r.topic,
            seen: self.seen_fields.iter().zip(&state.seen).collect(),
            in_empty_bucket: false,
            terms_memo_from_keys: self.limits.terms_memo_from_keys,
        };
        let mut out = Map::new();
        out.insert("hits".into(), state.hits.render(&r.topic, &r.sort, &r.source));
        let mut memo = RenderMemo::default();
        if !r.aggs.is_empty() {
            let mut aggs = Map::new();
            // The merged states' aggregations in the same order as the state's.
            let merged: Vec<Vec<&AggState>> =
                merged.iter().map(|m| m.aggs.iter().chain(&m.global).collect()).collect();
            for (at, (&i, s)) in self
                .query_aggs
                .iter()
                .zip(&state.aggs)
                .chain(self.global_aggs.iter().zip(&state.global))
                .enumerate()
            {
                let agg = &r.aggs[i];
                let rendered = match s {
                    AggState::Terms(map) => {
                        // What it showed last, and the same aggregation's merged buckets.
                        let shown = since.and_then(|m| m.terms.get(at)).and_then(Option::as_ref);
                        let since = shown.and_then(|shown| {
                            let maps: Option<Vec<&agg::TermsMap>> = merged
                                .iter()
                                .map(|m| match m.get(at) {
                                    Some(AggState::Terms(map)) => Some(map),
                                    _ => None,
                                })
                                .collect();
                            Some((shown, maps?))
                        });
                        let (rendered, shown) = agg::render_from(
                            agg,
                            map,
                            &mut ctx,
                            since.as_ref().map(|(shown, maps)| (*shown, maps.as_slice())),
                        )?;
                        memo.terms.push(shown);
                        rendered
                    }
                    _ => {
                        memo.terms.push(None);
                        agg::render(agg, s, &mut ctx)?
                    }
                };
                aggs.insert(agg.name.clone(), rendered);
            }
            // Aggregations render in name order, whatever their kind.
            let mut sorted: Vec<(String, Value)> = aggs.into_iter().collect();
            sort::stable_by(&mut sorted, |a, b| a.0.cmp(&b.0));
            out.insert("aggregations".into(), Value::Object(sorted.into_iter().collect()));
        }
        Ok((Value::Object(out), memo))
    }

    /// Encode a state for the state store: format version, query-id check, then postcard.
    pub fn encode(&self, state: &PartialState) -> Vec<u8> {
        let mut out = vec![STATE_FORMAT];
        out.extend_from_slice(&self.id_tag());
        // Through `io::Write`, which copies each piece whole: `to_extend` pushed byte by byte,
        // two-thirds of the encode of a live query's state. Serialising plain data into a Vec
        // cannot fail.
        postcard::to_io(state, out).unwrap_or_default()
    }

    /// Decode a state written by [`Plan::encode`] for this query, or several written one after
    /// another: their merge, in order.
    ///
    /// Several: a live segment's checkpoint appends what each batch added (the records folded
    /// into an empty state) instead of encoding its whole state again, so a wake-up costs the
    /// size of its batch, not of the state (`StateStore::compare_and_append_checkpoint`). The
    /// merge is the one the committing process made in memory (the law of the merge: any
    /// grouping gives the same state), and it was within the budget then, so it is not checked
    /// again here; the estimate is counted afresh.
    pub fn decode(&self, bytes: &[u8]) -> Result<PartialState, StateError> {
        self.decode_pieces(std::iter::once(bytes))
    }

    /// [`Plan::decode`] of the concatenation of `parts` (each one or more encoded states),
    /// without copying them into one: the merge of every state they hold, in order.
    pub fn decode_pieces<'b>(
        &self,
        parts: impl IntoIterator<Item = &'b [u8]>,
    ) -> Result<PartialState, StateError> {
        let mut merged: Option<PartialState> = None;
        for part in parts {
            let mut rest = part;
            loop {
                let (piece, after) = self.decode_piece(rest)?;
                match &mut merged {
                    Some(state) => self.merge_unbudgeted(state, &piece),
                    None => merged = Some(piece),
                }
                rest = after;
                if rest.is_empty() {
                    break;
                }
            }
        }
        let mut state = merged.ok_or_else(|| StateError::Corrupt("empty".into()))?;
        state.bytes = self.heap_bytes(&state);
        Ok(state)
    }

    /// One state written by [`Plan::encode`] at the start of `bytes`, and the bytes after it.
    fn decode_piece<'b>(&self, bytes: &'b [u8]) -> Result<(PartialState, &'b [u8]), StateError> {
        let (&version, rest) =
            bytes.split_first().ok_or_else(|| StateError::Corrupt("empty".into()))?;
        if version != STATE_FORMAT && version != STATE_FORMAT_WHOLE_ONLY {
            return Err(StateError::Version { found: version, expected: STATE_FORMAT });
        }
        if rest.len() < 8 || rest[..8] != self.id_tag() {
            return Err(StateError::WrongQuery {
                found: hex::encode(rest.get(..8).unwrap_or(rest)),
                expected: self.id.to_string(),
            });
        }
        let (s, after): (PartialState, &[u8]) = postcard::take_from_bytes(&rest[8..])
            .map_err(|e| StateError::Corrupt(e.to_string()))?;
        if s.aggs.len() != self.query_aggs.len()
            || s.global.len() != self.global_aggs.len()
            || s.seen.len() != self.seen_fields.len()
        {
            return Err(StateError::ShapeMismatch);
        }
        Ok((s, after))
    }

    fn id_tag(&self) -> [u8; 8] {
        let mut tag = [0u8; 8];
        let hex = self.id.hex();
        for (i, b) in tag.iter_mut().enumerate() {
            *b =
                hex.get(2 * i..2 * i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()).unwrap_or(0);
        }
        tag
    }
}

fn budget_error(budget: usize) -> QueryError {
    QueryError {
        kind: crate::error::ErrorKind::CircuitBreaking,
        reason: format!(
            "the query's partial state exceeds its memory budget of {budget} bytes; narrow the query (fewer keys, smaller size)"
        ),
        path: String::new(),
    }
}

#[cfg(test)]
mod merge_budget_tests {
    use super::*;
    use crate::error::ErrorKind;

    /// Fold into `state` one record per key of `keys` (`plan`: a `terms` on `id`).
    fn fold_keys(
        plan: &Plan,
        state: &mut PartialState,
        keys: std::ops::Range<u32>,
    ) -> Result<(), QueryError> {
        keys.enumerate().try_for_each(|(offset, k)| {
            let value = format!(r#"{{"id":"key-{k}"}}"#).into_bytes();
            let rec = Record {
                value: &value,
                timestamp: 0,
                offset: offset as i64,
                partition: 0,
                key: None,
            };
            plan.fold(state, &rec)
        })
    }

    /// The state of `plan` (a `terms` on `id`) over one record per key of `keys`.
    fn folded(plan: &Plan, keys: std::ops::Range<u32>) -> PartialState {
        let mut state = plan.empty_state();
        fold_keys(plan, &mut state, keys).expect("within the budget");
        state
    }

    /// `state`'s estimate counted afresh (decoded).
    fn exact_bytes(plan: &Plan, state: &PartialState) -> usize {
        plan.decode(&plan.encode(state)).expect("decodes").estimated_bytes()
    }

    /// A `terms` on `id`: its body, its plan under the default limits, its states over keys
    /// 0..500 and 500..1000, and the larger of their estimates counted afresh.
    fn halves() -> (Value, Plan, PartialState, PartialState, usize) {
        let body = serde_json::json!({"topic": "t", "aggs": {"k": {"terms": {"field": "id"}}}});
        let roomy = Plan::parse(&body, &Limits::default()).expect("valid");
        let (left, right) = (folded(&roomy, 0..500), folded(&roomy, 500..1000));
        let half = exact_bytes(&roomy, &left).max(exact_bytes(&roomy, &right));
        (body, roomy, left, right, half)
    }

    #[test]
    fn a_merge_over_the_memory_budget_fails_though_each_part_is_within_it() {
        let (body, roomy, left, right, half) = halves();
        let mut union = left.clone();
        roomy.merge(&mut union, &right).expect("within the default budget");
        let union_bytes = exact_bytes(&roomy, &union);
        assert_eq!(union.estimated_bytes(), union_bytes, "the merge counted what it added");
        assert!(half < union_bytes);

        // A budget each half fits in and their union does not.
        let limits = Limits { max_state_bytes: (half + union_bytes) / 2, ..Limits::default() };
        let tight = Plan::parse(&body, &limits).expect("valid");
        let mut into = tight.decode(&tight.encode(&left)).expect("decodes");
        let right = tight.decode(&tight.encode(&right)).expect("decodes");
        let e = tight.merge(&mut into, &right).expect_err("over the budget");
        assert_eq!(e.kind, ErrorKind::CircuitBreaking, "{e:?}");
        // The same keys again add nothing: within the budget.
        let mut again = tight.decode(&tight.encode(&left)).expect("decodes");
        let same = tight.decode(&tight.encode(&left)).expect("decodes");
        tight.merge(&mut again, &same).expect("no new keys: within the budget");
    }

    #[test]
    fn a_delta_folded_apart_from_its_base_is_held_to_the_budget_of_both() {
        let (body, _, left, _, half) = halves();
        let limits = Limits { max_state_bytes: half + half / 2, ..Limits::default() };
        let tight = Plan::parse(&body, &limits).expect("valid");
        // Alone, the batch is within the budget; apart from its base, not.
        fold_keys(&tight, &mut tight.empty_state(), 500..1000).expect("the batch alone fits");
        let base = tight.decode(&tight.encode(&left)).expect("decodes");
        let e = fold_keys(&tight, &mut tight.empty_delta_of(&base), 500..1000)
            .expect_err("base and batch do not");
        assert_eq!(e.kind, ErrorKind::CircuitBreaking, "{e:?}");
    }

    /// The stored layout, whichever way postcard is driven: states written before stay
    /// readable.
    #[test]
    fn an_encoded_state_is_the_format_byte_the_id_tag_then_postcard() {
        let body = serde_json::json!({"topic": "t", "aggs": {"k": {"terms": {"field": "id"}}}});
        let plan = Plan::parse(&body, &Limits::default()).expect("valid");
        let state = folded(&plan, 0..300);
        let mut expected = vec![STATE_FORMAT];
        expected.extend_from_slice(&plan.id_tag());
        expected.extend(postcard::to_allocvec(&state).expect("encodes"));
        assert_eq!(plan.encode(&state), expected);
        // A state written by a build before pieces (format 2, the same layout) still reads.
        expected[0] = STATE_FORMAT_WHOLE_ONLY;
        assert_eq!(plan.decode(&expected).expect("format 2 reads"), state);
        // Bytes after a state that are not a state are refused, not ignored.
        let mut trailing = plan.encode(&state);
        trailing.extend_from_slice(b"\x01junk");
        assert!(plan.decode(&trailing).is_err());
    }
}
