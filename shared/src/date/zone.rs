//! Time zones: a fixed offset or an IANA zone, and local time to UTC as `java.time` does it.

use chrono::{DateTime, LocalResult, Offset, TimeZone as _};
use chrono_tz::Tz;

use super::*;

/// Time zone param: `Z`/`UTC`, fixed offsets `+01:00`, `-0530`, `+01`, or an IANA name
/// (`Europe/London`).
#[derive(Debug, Clone, PartialEq)]
pub enum TimeZone {
    /// A fixed offset, in seconds east of UTC (`0` is UTC).
    Fixed(i32),
    /// An IANA time zone with daylight-saving rules.
    Named(Tz),
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
        match t.parse::<Tz>() {
            Ok(tz) => Ok(TimeZone::Named(tz)),
            Err(_) => spec_err(format!(
                "unknown time_zone [{s}]: expected Z, UTC, an offset like +01:00 or -0530, \
                 or an IANA zone name like Europe/London"
            )),
        }
    }

    /// Offset from UTC, in seconds, in force at the instant `utc_ms` (epoch millis).
    pub fn offset_seconds_at(&self, utc_ms: i64) -> i32 {
        match self {
            TimeZone::Fixed(secs) => *secs,
            TimeZone::Named(tz) => match DateTime::from_timestamp_millis(utc_ms) {
                Some(dt) => tz.offset_from_utc_datetime(&dt.naive_utc()).fix().local_minus_utc(),
                None => 0,
            },
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
            TimeZone::Named(tz) => tz.name().to_string(),
        }
    }

    pub(super) fn offset_ms(&self, utc_ms: i64) -> i64 {
        i64::from(self.offset_seconds_at(utc_ms)) * MS_PER_SECOND
    }

    /// Resolve a local wall-clock time (millis since the local epoch) to UTC instants.
    pub(super) fn local_to_utc(&self, local_ms: i64) -> Resolved {
        let tz = match self {
            TimeZone::Fixed(secs) => {
                return Resolved::Single(local_ms.saturating_sub(i64::from(*secs) * MS_PER_SECOND));
            }
            TimeZone::Named(tz) => tz,
        };
        let Some(naive) = DateTime::from_timestamp_millis(local_ms).map(|d| d.naive_utc()) else {
            return Resolved::Single(local_ms);
        };
        match tz.from_local_datetime(&naive) {
            LocalResult::Single(dt) => Resolved::Single(dt.timestamp_millis()),
            LocalResult::Ambiguous(a, b) => {
                let (a, b) = (a.timestamp_millis(), b.timestamp_millis());
                Resolved::Ambiguous(a.min(b), a.max(b))
            }
            LocalResult::None => self.gap_containing(local_ms),
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
