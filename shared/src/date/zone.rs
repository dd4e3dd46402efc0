//! Time zones: a fixed offset or an IANA zone, and local time to UTC as `java.time` does it.
//!
//! The date code asks an IANA zone one question: its offset at an instant ([`ZoneRules`]).
//! Local-to-UTC, gaps, overlaps and transitions are all computed here from that answer, so every
//! source of zone rules behaves alike. Native builds compile the tz database in (`chrono-tz`,
//! feature `tzdb`). The WASM host has one already, its JavaScript engine's `Intl`, and installs it
//! with [`install_zone_source`] instead: the database would be a third of the module.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use super::*;

/// Time zone param: `Z`/`UTC`, fixed offsets `+01:00`, `-0530`, `+01`, or an IANA name
/// (`Europe/London`).
#[derive(Debug, Clone, PartialEq)]
pub enum TimeZone {
    /// A fixed offset, in seconds east of UTC (`0` is UTC).
    Fixed(i32),
    /// An IANA time zone with daylight-saving rules.
    Named(Zone),
}

/// The rules of one IANA zone: the offset in force at an instant.
pub trait ZoneRules: Send + Sync {
    /// Offset from UTC, in seconds, at the instant `utc_ms` (epoch millis).
    fn offset_seconds_at(&self, utc_ms: i64) -> i32;
}

/// Where IANA zones come from, when not from the compiled-in database.
pub trait ZoneSource: Send + Sync {
    /// The rules of the zone called `name`, or `None` when the source does not know it.
    fn zone(&self, name: &str) -> Option<Arc<dyn ZoneRules>>;
}

static INSTALLED_SOURCE: OnceLock<Box<dyn ZoneSource>> = OnceLock::new();

/// Make `source` the one that resolves IANA names from now on (before the compiled-in database,
/// if any). Once per process: answers false, and changes nothing, when one was installed already.
pub fn install_zone_source(source: Box<dyn ZoneSource>) -> bool {
    INSTALLED_SOURCE.set(source).is_ok()
}

/// An IANA zone: its name as written in the request, and its rules.
#[derive(Clone)]
pub struct Zone {
    name: Arc<str>,
    rules: Arc<dyn ZoneRules>,
}

impl Zone {
    /// The zone called `name`: from the installed source, else the compiled-in database.
    pub fn lookup(name: &str) -> Option<Zone> {
        let rules = match INSTALLED_SOURCE.get() {
            Some(source) => source.zone(name),
            None => compiled_in(name),
        }?;
        Some(Zone { name: name.into(), rules })
    }

    /// The name, as the request wrote it.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Two zones are the same zone when they have the same name (from one source per process).
impl PartialEq for Zone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Zone({})", self.name)
    }
}

#[cfg(feature = "tzdb")]
fn compiled_in(name: &str) -> Option<Arc<dyn ZoneRules>> {
    name.parse::<chrono_tz::Tz>().ok().map(|tz| Arc::new(tz) as Arc<dyn ZoneRules>)
}

#[cfg(not(feature = "tzdb"))]
fn compiled_in(_name: &str) -> Option<Arc<dyn ZoneRules>> {
    None
}

#[cfg(feature = "tzdb")]
impl ZoneRules for chrono_tz::Tz {
    fn offset_seconds_at(&self, utc_ms: i64) -> i32 {
        use chrono::{DateTime, Offset, TimeZone as _};
        match DateTime::from_timestamp_millis(utc_ms) {
            Some(dt) => self.offset_from_utc_datetime(&dt.naive_utc()).fix().local_minus_utc(),
            None => 0,
        }
    }
}

/// A zone known only through a probe (the offset at an instant, e.g. a call into JavaScript),
/// remembered as spans of constant offset so that a record costs a map lookup, not a probe.
///
/// A span is found by probing a day apart up to a year each way from the instant asked about,
/// then bisecting each change to the millisecond: two transitions less than a day apart that
/// cancel out are not seen. No zone has had two transitions within a day since 1970 (checked on
/// the 600 zones of tzdata 2025b: consecutive transition times, from the TZif files).
pub struct ProbedZone<P> {
    probe: P,
    /// Start (inclusive) -> (end (exclusive), offset in seconds), in UTC millis.
    spans: Mutex<BTreeMap<i64, (i64, i32)>>,
}

/// Spans kept per zone before the memory starts over (a year or more each).
const MAX_SPANS: usize = 1024;
/// How far a span is searched each way from the instant asked about, in days.
const SPAN_SEARCH_DAYS: i64 = 366;

impl<P: Fn(i64) -> i32 + Send + Sync> ProbedZone<P> {
    /// A zone whose offset at `utc_ms` is `probe(utc_ms)`, in seconds.
    pub fn new(probe: P) -> Self {
        ProbedZone { probe, spans: Mutex::new(BTreeMap::new()) }
    }

    /// The span of constant offset around `t`: (start, end, offset).
    fn span_around(&self, t: i64) -> (i64, i64, i32) {
        let offset = (self.probe)(t);
        let edge = |direction: i64| {
            let mut inside = t;
            for day in 1..=SPAN_SEARCH_DAYS {
                let x = t.saturating_add(direction.saturating_mul(day * MS_PER_DAY));
                if (self.probe)(x) != offset {
                    // Bisect between `inside` (this offset) and `x` (another one).
                    let mut outside = x;
                    while inside.abs_diff(outside) > 1 {
                        let mid = inside + (outside - inside) / 2;
                        if (self.probe)(mid) == offset {
                            inside = mid;
                        } else {
                            outside = mid;
                        }
                    }
                    return inside;
                }
                inside = x;
            }
            inside
        };
        let (first, last) = (edge(-1), edge(1));
        (first, last.saturating_add(1), offset)
    }
}

impl<P: Fn(i64) -> i32 + Send + Sync> ZoneRules for ProbedZone<P> {
    fn offset_seconds_at(&self, utc_ms: i64) -> i32 {
        let mut spans = self.spans.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, &(end, offset))) = spans.range(..=utc_ms).next_back()
            && utc_ms < end
        {
            return offset;
        }
        let (start, end, offset) = self.span_around(utc_ms);
        if spans.len() >= MAX_SPANS {
            spans.clear();
        }
        spans.insert(start, (end, offset));
        offset
    }
}

impl TimeZone {
    /// UTC (a fixed offset of zero).
    pub fn utc() -> Self {
        TimeZone::Fixed(0)
    }

    /// Parse an ES `time_zone` parameter.
    ///
    /// Accepts `Z`, `UTC`, `GMT`, `UT`; offsets `+01:00`, `-0530`, `+01`, `+1`, `+01:00:30`
    /// (at most ±18:00, as `java.time.ZoneOffset`); those offsets prefixed by `UTC`/`GMT`/`UT`
    /// (`UTC+01:00`); and IANA names (case-sensitive, `Europe/London`).
    pub fn parse(s: &str) -> Result<TimeZone, DateSpecError> {
        let t = s.trim();
        if matches!(t, "Z" | "UTC" | "GMT" | "UT") {
            return Ok(TimeZone::Fixed(0));
        }
        for prefix in ["UTC", "GMT", "UT"] {
            let rest = t.strip_prefix(prefix).unwrap_or("");
            if rest.starts_with('+') || rest.starts_with('-') {
                return parse_offset_id(rest, s).map(TimeZone::Fixed);
            }
        }
        if t.starts_with('+') || t.starts_with('-') {
            return parse_offset_id(t, s).map(TimeZone::Fixed);
        }
        match Zone::lookup(t) {
            Some(zone) => Ok(TimeZone::Named(zone)),
            None => spec_err(format!(
                "unknown time_zone [{s}]: expected Z, UTC, an offset like +01:00 or -0530, \
                 or an IANA zone name like Europe/London"
            )),
        }
    }

    /// Offset from UTC, in seconds, in force at the instant `utc_ms` (epoch millis).
    pub fn offset_seconds_at(&self, utc_ms: i64) -> i32 {
        match self {
            TimeZone::Fixed(secs) => *secs,
            TimeZone::Named(zone) => zone.rules.offset_seconds_at(utc_ms),
        }
    }

    /// Canonical text: `"Z"` for UTC/`+00:00`, `"+01:00"` (or `"+01:00:30"`) for fixed offsets,
    /// the IANA name otherwise.
    pub fn spec(&self) -> String {
        match self {
            TimeZone::Fixed(0) => "Z".to_string(),
            TimeZone::Fixed(secs) => {
                let sign = if *secs < 0 { '-' } else { '+' };
                let a = secs.unsigned_abs();
                let (h, m, s) = (a / 3600, (a / 60) % 60, a % 60);
                if s == 0 {
                    format!("{sign}{h:02}:{m:02}")
                } else {
                    format!("{sign}{h:02}:{m:02}:{s:02}")
                }
            }
            TimeZone::Named(zone) => zone.name().to_string(),
        }
    }

    pub(super) fn offset_ms(&self, utc_ms: i64) -> i64 {
        i64::from(self.offset_seconds_at(utc_ms)) * MS_PER_SECOND
    }

    /// Resolve a local wall-clock time (millis since the local epoch) to UTC instants.
    ///
    /// An instant `u` shows local time `L` when `u + offset(u) = L`. Offsets change at most once
    /// within two days around `L` (checked against `chrono-tz`'s own resolution in the tests),
    /// so the offsets a day before, at and a day after `L` are the candidates: each gives the
    /// instant `L - offset`, valid when that offset is in force then. None valid is a gap, two an
    /// overlap.
    pub(super) fn local_to_utc(&self, local_ms: i64) -> Resolved {
        if let TimeZone::Fixed(secs) = self {
            return Resolved::Single(local_ms.saturating_sub(i64::from(*secs) * MS_PER_SECOND));
        }
        // The earliest and latest valid instants (no allocation: this runs once per record).
        let mut valid: Option<(i64, i64)> = None;
        for probe in
            [local_ms.saturating_sub(MS_PER_DAY), local_ms, local_ms.saturating_add(MS_PER_DAY)]
        {
            let instant = local_ms.saturating_sub(self.offset_ms(probe));
            if instant.saturating_add(self.offset_ms(instant)) == local_ms {
                valid = Some(
                    valid.map_or((instant, instant), |(lo, hi)| (lo.min(instant), hi.max(instant))),
                );
            }
        }
        match valid {
            None => self.gap_containing(local_ms),
            Some((only, same)) if only == same => Resolved::Single(only),
            Some((earlier, later)) => Resolved::Ambiguous(earlier, later),
        }
    }

    /// The transition that created the gap containing the local time `local_ms`.
    fn gap_containing(&self, local_ms: i64) -> Resolved {
        // p(x): the local time at instant x is later than local_ms. False before the gap, true
        // after it; gaps are shorter than a day and offsets within ±18h, so 2 days brackets it.
        let p = |x: i64| x.saturating_add(self.offset_ms(x)) > local_ms;
        let mut lo = local_ms.saturating_sub(2 * MS_PER_DAY);
        let mut hi = local_ms.saturating_add(2 * MS_PER_DAY);
        if p(lo) || !p(hi) {
            return Resolved::Single(local_ms.saturating_sub(self.offset_ms(local_ms)));
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if p(mid) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Resolved::Gap { transition: hi, offset_before_ms: self.offset_ms(hi - 1) }
    }

    /// Instant for a local time as `java.time.ZonedDateTime.ofLocal` resolves it: earlier
    /// instant in an overlap, shifted forward by the gap length in a gap.
    pub(super) fn local_to_utc_lenient(&self, local_ms: i64) -> i64 {
        match self.local_to_utc(local_ms) {
            Resolved::Single(x) | Resolved::Ambiguous(x, _) => x,
            Resolved::Gap { offset_before_ms, .. } => local_ms.saturating_sub(offset_before_ms),
        }
    }

    /// Latest offset transition `T` with `lo < T <= hi` (`T` is the first millisecond with the
    /// new offset), if any. Scans back a day at a time (coarser steps for windows over ~3
    /// years, to bound the cost at 1024 probes), so two transitions within one step may be seen
    /// as one or cancel out.
    pub(super) fn last_transition_between(&self, lo: i64, hi: i64) -> Option<i64> {
        if matches!(self, TimeZone::Fixed(_)) || hi <= lo {
            return None;
        }
        let step = MS_PER_DAY.max(i64::try_from(hi.abs_diff(lo) / 1024).unwrap_or(i64::MAX));
        let mut seg_hi = hi;
        loop {
            let seg_lo = seg_hi.saturating_sub(step).max(lo);
            let target = self.offset_ms(seg_hi);
            if self.offset_ms(seg_lo) != target {
                let (mut a, mut b) = (seg_lo, seg_hi);
                while b - a > 1 {
                    let mid = a + (b - a) / 2;
                    if self.offset_ms(mid) == target {
                        b = mid;
                    } else {
                        a = mid;
                    }
                }
                return Some(b);
            }
            if seg_lo <= lo {
                return None;
            }
            seg_hi = seg_lo;
        }
    }
}

/// Result of mapping a local time to UTC.
pub(super) enum Resolved {
    Single(i64),
    /// Overlap: (earlier, later) instants.
    Ambiguous(i64, i64),
    /// Gap: the local time does not exist.
    Gap {
        transition: i64,
        offset_before_ms: i64,
    },
}

/// Parse `+01:00`, `-0530`, `+01`, `+1`, `+01:00:30`, `+010030` into seconds (`orig` is for the
/// error message).
fn parse_offset_id(t: &str, orig: &str) -> Result<i32, DateSpecError> {
    let bad = || {
        spec_err(format!(
            "invalid time_zone offset [{orig}]: expected +hh:mm, +hhmm, +hh or Z, at most ±18:00"
        ))
    };
    let b = t.as_bytes();
    let sign: i32 = match b.first() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return bad(),
    };
    let rest = &b[1..];
    if !rest.iter().all(|c| c.is_ascii_digit() || *c == b':') {
        return bad();
    }
    let d = |i: usize| rest.get(i).map(|c| i32::from(c - b'0'));
    let two = |i: usize| Some(d(i)? * 10 + d(i + 1)?);
    let (h, m, s) = match rest.len() {
        1 => (d(0), Some(0), Some(0)),
        2 => (two(0), Some(0), Some(0)),
        4 => (two(0), two(2), Some(0)),
        5 if rest[2] == b':' => (two(0), two(3), Some(0)),
        6 => (two(0), two(2), two(4)),
        8 if rest[2] == b':' && rest[5] == b':' => (two(0), two(3), two(6)),
        _ => return bad(),
    };
    let (Some(h), Some(m), Some(s)) = (h, m, s) else { return bad() };
    let total = h * 3600 + m * 60 + s;
    if h > 18 || m > 59 || s > 59 || total > 18 * 3600 {
        return bad();
    }
    Ok(sign * total)
}

#[cfg(all(test, feature = "tzdb"))]
mod tests {
    use super::*;
    use chrono::{LocalResult, TimeZone as _};
    use proptest::prelude::*;

    const ZONES: [&str; 6] = [
        "Europe/London",
        "America/New_York",
        "Australia/Lord_Howe",
        "Asia/Kolkata",
        "America/Sao_Paulo",
        "Pacific/Apia",
    ];

    fn tz(name: &str) -> chrono_tz::Tz {
        name.parse().expect("a zone")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// Local-to-UTC computed from offsets alone resolves as the tz database itself does.
        #[test]
        fn local_to_utc_resolves_as_chrono_tz(local_ms in -2_500_000_000_000i64..=4_200_000_000_000i64, z in 0..ZONES.len()) {
            let zone = TimeZone::parse(ZONES[z]).expect("a zone");
            let naive = chrono::DateTime::from_timestamp_millis(local_ms).expect("in range").naive_utc();
            let ours = zone.local_to_utc(local_ms);
            match tz(ZONES[z]).from_local_datetime(&naive) {
                LocalResult::Single(dt) => {
                    prop_assert!(matches!(ours, Resolved::Single(x) if x == dt.timestamp_millis()));
                }
                LocalResult::Ambiguous(a, b) => {
                    let (a, b) = (a.timestamp_millis(), b.timestamp_millis());
                    prop_assert!(matches!(ours, Resolved::Ambiguous(x, y) if x == a.min(b) && y == a.max(b)));
                }
                LocalResult::None => prop_assert!(matches!(ours, Resolved::Gap { transition: _, offset_before_ms: _ }), "a gap"),
            }
        }

        /// A zone known only by probing answers as the rules probed, whatever order it is asked in.
        #[test]
        fn a_probed_zone_answers_as_its_probe(instants in prop::collection::vec(-2_500_000_000_000i64..=4_200_000_000_000i64, 1..40), z in 0..ZONES.len()) {
            let rules = tz(ZONES[z]);
            let probed = ProbedZone::new(move |t| rules.offset_seconds_at(t));
            for t in instants {
                prop_assert_eq!(probed.offset_seconds_at(t), rules.offset_seconds_at(t), "at {}", t);
                // Right at the span's edges too.
                for edge in [t - 1, t + 1] {
                    prop_assert_eq!(probed.offset_seconds_at(edge), rules.offset_seconds_at(edge));
                }
            }
        }
    }

    #[test]
    fn a_probed_zone_keeps_at_most_max_spans_and_stays_right_after_starting_over() {
        let london = tz("Europe/London");
        let probed = ProbedZone::new(move |t| london.offset_seconds_at(t));
        // Instants three years apart: each needs a span of its own.
        const THREE_YEARS_MS: i64 = 3 * 366 * MS_PER_DAY;
        for i in 0..(MAX_SPANS as i64 + 100) {
            let t = -60_000_000_000_000 + i * THREE_YEARS_MS;
            assert_eq!(probed.offset_seconds_at(t), london.offset_seconds_at(t), "at {t}");
            let kept = probed.spans.lock().expect("not poisoned").len();
            assert!(kept <= MAX_SPANS, "{kept} spans kept");
        }
        let kept = probed.spans.lock().expect("not poisoned").len();
        assert!(kept < MAX_SPANS, "the memory started over: {kept} spans");
    }

    #[test]
    fn a_probed_zone_finds_transitions_to_the_millisecond() {
        let london = tz("Europe/London");
        let probed = ProbedZone::new(move |t| london.offset_seconds_at(t));
        // 2024-03-31T01:00:00Z: GMT to BST.
        let change = 1_711_846_800_000;
        assert_eq!(probed.offset_seconds_at(change - 1), 0);
        assert_eq!(probed.offset_seconds_at(change), 3600);
        assert_eq!(probed.offset_seconds_at(change - 86_400_000), 0);
    }
}
