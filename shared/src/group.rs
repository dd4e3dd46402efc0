//! Many plans over one scan: each record read and parsed once for every query of a topic.
//!
//! Distinct queries of one topic read the same records. A [`ScanGroup`] compiles their plans'
//! paths into one [`PathSet`] (a path several plans read fills one slot) and their byte
//! pre-filters into one [`PrefilterSet`]; [`ScanGroup::scan`] then validates and extracts each
//! record of a chunk once, and finds once which plans' pre-filters let it through. Each plan
//! folds the chunk from there ([`ScanGroup::fold`]), into its own state, over its own range of
//! offsets, so one plan's cost can be measured (and its failure kept) apart from the others'.
//!
//! The law (property-tested in `tests/props.rs`): folding records through a group gives each
//! plan exactly the state [`Plan::fold_all`] gives it over the same records, whatever the other
//! plans of the group are.

use std::ops::Range;

use crate::error::QueryError;
use crate::eval::Record;
use crate::plan::{PartialState, Plan};
use crate::prefilter::{Found, PrefilterSet};
use crate::scan::{self, Extracted, PathSet};

/// The compiled union of several plans' reads. Member `i` is the `i`-th plan given to
/// [`ScanGroup::new`]; the same plans, in the same order, must be given to [`ScanGroup::fold`].
#[derive(Debug, Clone)]
pub struct ScanGroup {
    paths: PathSet,
    /// Per member: its slot `i` is the union's slot `slot_maps[member][i]`.
    slot_maps: Vec<Vec<u32>>,
    prefilters: PrefilterSet,
    /// Whether the pre-filters run: only when every member has one, so that a record none of
    /// them may match is not extracted at all. When a member has none, every record is
    /// extracted for it anyway, and the pass over the record's bytes would only spare the
    /// others their evaluation, which costs less: on the desk mix of 100 queries (25 `match`
    /// members), the pass took 9 µs of a 13.5 µs scan per tweet and spared ~1 µs of folds
    /// (`cargo bench -p kappa-core --bench core`, BENCHMARKS.md).
    filtered: bool,
}

impl ScanGroup {
    /// The group of `plans`.
    pub fn new(plans: &[&Plan]) -> ScanGroup {
        let mut union: Vec<&str> = Vec::new();
        let slot_maps = plans
            .iter()
            .map(|plan| {
                plan.path_names()
                    .iter()
                    .map(|path| {
                        let slot = union.iter().position(|p| p == path).unwrap_or_else(|| {
                            union.push(path);
                            union.len() - 1
                        });
                        slot as u32
                    })
                    .collect()
            })
            .collect();
        let prefilters =
            PrefilterSet::new(&plans.iter().map(|p| p.prefilter()).collect::<Vec<_>>());
        ScanGroup {
            paths: PathSet::new(&union),
            slot_maps,
            filtered: plans.iter().all(|p| p.prefilter().is_some()),
            prefilters,
        }
    }

    /// Number of member plans.
    pub fn len(&self) -> usize {
        self.slot_maps.len()
    }

    /// Whether the group has no member.
    pub fn is_empty(&self) -> bool {
        self.slot_maps.is_empty()
    }

    /// Validate and extract each of `records` once for every member. `spare` keeps extraction
    /// buffers between chunks ([`Scanned::recycle`] gives them back).
    pub fn scan<'r>(
        &self,
        records: impl IntoIterator<Item = Record<'r>>,
        spare: &mut Vec<Extracted<'static>>,
    ) -> Scanned<'r> {
        let words = if self.filtered { self.len().div_ceil(64) } else { 0 };
        let mut scanned =
            Scanned { records: Vec::new(), words, candidates: Vec::new(), docs: Vec::new() };
        // One pass over the bytes for every member's pre-filter; the members it lets through
        // are kept as bits, so each member's fold tests one bit a record.
        let mut found = Found::default();
        for record in records {
            let needed = if self.filtered {
                self.prefilters.find(record.value, &mut found);
                let at = scanned.candidates.len();
                scanned.candidates.resize(at + words, 0);
                for member in (0..self.len()).filter(|&m| self.prefilters.candidate(m, &found)) {
                    scanned.candidates[at + member / 64] |= 1 << (member % 64);
                }
                scanned.candidates[at..].iter().any(|&w| w != 0)
            } else {
                true
            };
            let doc = if needed {
                let mut ext = spare.pop().unwrap_or_default().recycle();
                match scan::extract(record.value, &self.paths, &mut ext) {
                    Ok(()) => Some(Ok(ext)),
                    Err(_) => {
                        spare.push(ext.recycle());
                        Some(Err(()))
                    }
                }
            } else {
                None
            };
            scanned.records.push(record);
            scanned.docs.push(doc);
        }
        scanned
    }

    /// Fold the records at positions `range` of `scanned` into `state`, `plan` being member
    /// `member`: the state [`Plan::fold_all`] would give over those records.
    pub fn fold(
        &self,
        plan: &Plan,
        member: usize,
        state: &mut PartialState,
        scanned: &Scanned<'_>,
        range: Range<usize>,
    ) -> Result<(), QueryError> {
        let map = &self.slot_maps[member];
        let mut scratch = Extracted::default();
        for i in range {
            let doc = scanned.docs[i].as_ref();
            let ext = doc.and_then(|d| d.as_ref().ok());
            let candidate = if self.filtered {
                // A candidate of any member was extracted (`docs[i]` is `Some`).
                scanned.candidates[i * scanned.words + member / 64] & (1 << (member % 64)) != 0
            } else {
                // Every record was extracted. Not valid JSON: alone, a member with a
                // pre-filter neither reads nor counts as skipped a record its pre-filter rules
                // out, so here too (rare records: its pre-filter runs on these alone).
                ext.is_some()
                    || plan.prefilter().is_none_or(|p| p.may_match(scanned.records[i].value))
            };
            plan.fold_shared(state, &scanned.records[i], candidate, ext, map, &mut scratch)?;
        }
        Ok(())
    }
}

/// A chunk of records, each validated and extracted once for a [`ScanGroup`].
#[derive(Debug)]
pub struct Scanned<'r> {
    records: Vec<Record<'r>>,
    /// Words of member bits per record (0 when no member has a pre-filter).
    words: usize,
    /// Per record, `words` words: bit `m` set when member `m`'s pre-filter lets it through.
    candidates: Vec<u64>,
    /// `None`: no member needed the record; `Some(Err)`: not a valid JSON object.
    docs: Vec<Option<Result<Extracted<'r>, ()>>>,
}

impl Scanned<'_> {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the chunk is empty.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The positions of the records with offsets in `from..end` (records are in offset order).
    pub fn positions(&self, from: i64, end: Option<i64>) -> Range<usize> {
        let start = self.records.partition_point(|r| r.offset < from);
        let stop = match end {
            Some(end) => self.records.partition_point(|r| r.offset < end),
            None => self.records.len(),
        };
        start..stop.max(start)
    }

    /// Give the extraction buffers back for the next chunk.
    pub fn recycle(self, spare: &mut Vec<Extracted<'static>>) {
        spare.extend(self.docs.into_iter().flatten().flatten().map(Extracted::recycle));
    }
}
