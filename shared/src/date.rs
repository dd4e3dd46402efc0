//! Elasticsearch 8.x date semantics: formats, time zones, intervals and bucket rounding.
//!
//! Everything here is pure computation (no clock, no I/O, no environment) so it runs the same
//! on a server and in wasm32.
//!
//! Design:
//! - A [`DateFormat`] is a list of alternatives (`a||b||c`). Each alternative is either an epoch
//!   format or a *pattern*: a small tree of [`Item`]s. Built-in named formats (ISO 8601 family)
//!   are expressed with the same items as Java-style patterns (`yyyy-MM-dd'T'HH:mm`), with
//!   optional sections (`[...]`) and variable digit widths, and have a separate parse tree and
//!   print tree, as in Elasticsearch where named formats parse leniently but print canonically.
//!   Parsing walks the tree greedily like `java.time`'s `DateTimeFormatterBuilder` (an optional
//!   section that fails is skipped, no further backtracking) and must consume the whole input.
//! - Time zones are either a fixed offset or an IANA zone from `chrono-tz`. Local to UTC
//!   conversion follows `java.time.ZonedDateTime.ofLocal`: in an overlap the earlier instant, in a
//!   gap the local time is moved forward by the length of the gap.
//! - Bucket rounding follows Elasticsearch's `Rounding` classes: calendar units of a day or more
//!   round to the first instant of the local day (start of the gap when midnight does not exist,
//!   earlier instant when midnight is ambiguous); minute/hour calendar units and fixed intervals
//!   round in local time and never round back across an offset transition (they retry from just
//!   before the transition instead), which is what `TimeIntervalRounding` does.
//! - All arithmetic on user-supplied numbers is checked or saturating: no input panics. Instants
//!   outside chrono's range (about ±262,000 years) are treated as UTC and returned unrounded.

use chrono::{
    DateTime, Datelike, LocalResult, Months, NaiveDate, NaiveDateTime, NaiveTime, Offset,
    TimeZone as _, Timelike,
};
use chrono_tz::Tz;
use std::fmt::Write as _;

/// Error for a bad format / interval / time zone spec: the message names the problem.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct DateSpecError(pub String);

fn spec_err<T>(msg: impl Into<String>) -> Result<T, DateSpecError> {
    Err(DateSpecError(msg.into()))
}

const MS_PER_SECOND: i64 = 1_000;
const MS_PER_MINUTE: i64 = 60_000;
const MS_PER_HOUR: i64 = 3_600_000;
const MS_PER_DAY: i64 = 86_400_000;

const MONTHS_FULL: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS_FULL: [&str; 7] =
    ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

// ---------------------------------------------------------------------------------------------
// Time zones
// ---------------------------------------------------------------------------------------------

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

    fn offset_ms(&self, utc_ms: i64) -> i64 {
        i64::from(self.offset_seconds_at(utc_ms)) * MS_PER_SECOND
    }

    /// Resolve a local wall-clock time (millis since the local epoch) to UTC instants.
    fn local_to_utc(&self, local_ms: i64) -> Resolved {
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
    fn local_to_utc_lenient(&self, local_ms: i64) -> i64 {
        match self.local_to_utc(local_ms) {
            Resolved::Single(x) | Resolved::Ambiguous(x, _) => x,
            Resolved::Gap { offset_before_ms, .. } => local_ms.saturating_sub(offset_before_ms),
        }
    }

    /// Latest offset transition `T` with `lo < T <= hi` (`T` is the first millisecond with the
    /// new offset), if any. Scans back a day at a time (coarser steps for windows over ~3
    /// years, to bound the cost at 1024 probes), so two transitions within one step may be seen
    /// as one or cancel out.
    fn last_transition_between(&self, lo: i64, hi: i64) -> Option<i64> {
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
enum Resolved {
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

// ---------------------------------------------------------------------------------------------
// Format items
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum Field {
    Month,
    Day,
    Hour,
    Hour12,
    Minute,
    Second,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum OffsetStyle {
    /// `Z`: `+0000` (never `Z`).
    HhmmNoZ,
    /// `x`: `+01`, or `+0130` when minutes are non-zero.
    HourNoZ,
    /// `xx`: `+0100`.
    NoColonNoZ,
    /// `xxx`: `+01:00`.
    ColonNoZ,
    /// `X`: `Z`, `+01` or `+0130`.
    HourZ,
    /// `XX`: `Z` or `+0100`.
    NoColonZ,
    /// `XXX` / `ZZZZZ`: `Z` or `+01:00`.
    ColonZ,
}

/// Whether a year item accepts a leading sign.
#[derive(Debug, Clone, Copy, PartialEq)]
enum YearSign {
    /// Digits only.
    No,
    /// `+` / `-` allowed (java.time `EXCEEDS_PAD`).
    Yes,
    /// Allowed only when a `-month` follows (ISO formats): a bare `-1000` is left to
    /// `epoch_millis` rather than read as the year -1000.
    BeforeDash,
}

/// One element of a parsed pattern.
#[derive(Debug, Clone, PartialEq)]
enum Item {
    /// Literal text (matched case-sensitively).
    Lit(String),
    /// Numeric field: parse `min..=max` digits, print zero-padded to `pad`.
    Num { field: Field, min: usize, max: usize, pad: usize },
    /// Year: parse `min..=max` digits (or a sign and up to 9 digits, as `sign` allows); print padded
    /// to `pad`, with `+` beyond `pad` digits when `pad >= 4` (java.time `EXCEEDS_PAD`).
    Year { min: usize, max: usize, pad: usize, sign: YearSign },
    /// `yy`: two digits, 2000-2099.
    Year2,
    /// Fraction of second: parse `min..=max` digits, print `print` digits.
    Frac { min: usize, max: usize, print: usize },
    /// English month name, short (`Jan`) or full (`January`).
    MonthName { full: bool },
    /// English day name, short (`Wed`) or full (`Wednesday`).
    DayName { full: bool },
    /// `AM` / `PM`.
    AmPm,
    /// Zone offset.
    Offset(OffsetStyle),
    /// Optional section `[...]`.
    Optional(Vec<Item>),
}

impl Item {
    /// Fixed-width numeric item: its width, for adjacent-value parsing.
    fn fixed_width(&self) -> Option<usize> {
        match self {
            Item::Num { min, max, .. } | Item::Frac { min, max, .. } if min == max => Some(*min),
            Item::Year { min, max, sign: YearSign::No, .. } if min == max => Some(*min),
            Item::Year2 => Some(2),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Alt {
    EpochMillis,
    EpochSecond,
    Pattern { parse: Vec<Item>, print: Vec<Item> },
}

/// An ES `format` string: one or more alternatives joined by `||`.
#[derive(Debug, Clone, PartialEq)]
pub struct DateFormat {
    spec: String,
    alts: Vec<Alt>,
}

impl DateFormat {
    /// Parse a format spec: built-in names (`strict_date_optional_time`, `epoch_millis`, ...)
    /// and Java-style patterns (`yyyy-MM-dd HH:mm:ss`, `EEE MMM dd HH:mm:ss Z yyyy`), joined by
    /// `||`. Unknown names, unsupported pattern letters and empty alternatives are errors.
    pub fn parse(spec: &str) -> Result<DateFormat, DateSpecError> {
        let parts: Vec<&str> = spec.split("||").map(str::trim).collect();
        let mut alts = Vec::with_capacity(parts.len());
        for part in &parts {
            if part.is_empty() {
                return spec_err(format!("empty alternative in date format [{spec}]"));
            }
            alts.push(parse_alt(part)?);
        }
        Ok(DateFormat { spec: parts.join("||"), alts })
    }

    /// Default of a date field without format: `"strict_date_optional_time||epoch_millis"`.
    pub fn default_format() -> DateFormat {
        let names = ["strict_date_optional_time", "epoch_millis"];
        DateFormat {
            spec: names.join("||"),
            alts: names.iter().filter_map(|n| named_alt(n)).collect(),
        }
    }

    /// The spec string as given, normalised (whitespace around `||` trimmed).
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// Parse a string value to epoch millis (UTC), trying each alternative in order. `tz` is the
    /// zone for values without an offset. `None` if no alternative parses. Sub-millisecond
    /// precision is floored.
    pub fn parse_millis(&self, s: &str, tz: &TimeZone) -> Option<i64> {
        self.parse_with(s, tz, false)
    }

    /// Like [`DateFormat::parse_millis`], but a component the string leaves out takes its
    /// largest value (hour 23, minute 59, second 59, nanosecond 999,999,999; month and day
    /// stay 01), as Elasticsearch's date math rounds a `gt` or `lte` bound: `lte: 2024-03-26`
    /// includes that whole day and `gt` excludes it.
    pub fn parse_millis_round_up(&self, s: &str, tz: &TimeZone) -> Option<i64> {
        self.parse_with(s, tz, true)
    }

    fn parse_with(&self, s: &str, tz: &TimeZone, round_up: bool) -> Option<i64> {
        self.alts.iter().find_map(|alt| match alt {
            Alt::EpochMillis => parse_epoch(s, false),
            Alt::EpochSecond => parse_epoch(s, true),
            Alt::Pattern { parse, .. } => {
                let mut p = Parsed::default();
                let end = parse_seq(parse, s.as_bytes(), 0, &mut p)?;
                if end != s.len() {
                    return None;
                }
                if round_up {
                    p.round_up_missing();
                }
                p.resolve(tz)
            }
        })
    }

    /// Interpretation of a numeric JSON value: epoch millis, or epoch seconds when the first
    /// epoch alternative of the format is `epoch_second`. Fractions are floored to the
    /// millisecond; non-finite or out-of-range numbers give `None`.
    pub fn number_to_millis(&self, n: f64) -> Option<i64> {
        let seconds = self
            .alts
            .iter()
            .find(|a| matches!(a, Alt::EpochMillis | Alt::EpochSecond))
            .is_some_and(|a| *a == Alt::EpochSecond);
        let ms = if seconds { n * 1000.0 } else { n };
        // Remove float noise below the microsecond (1.1 * 1000 = 1100.0000000000002).
        let ms = ((ms * 1000.0).round() / 1000.0).floor();
        if !ms.is_finite() || !(-9.2e18..=9.2e18).contains(&ms) {
            return None;
        }
        Some(ms as i64)
    }

    /// Render epoch millis with the FIRST alternative in zone `tz` (ES `key_as_string`).
    ///
    /// ISO formats print `2022-11-01T00:00:00.000Z` (UTC) or `...000+01:00`; `epoch_millis`
    /// prints the integer; `epoch_second` prints seconds with a fraction only when needed
    /// (`1667260800`, `1.5`); patterns print with the pattern. Instants outside chrono's range
    /// print as epoch millis.
    pub fn format_millis(&self, ms: i64, tz: &TimeZone) -> String {
        match self.alts.first() {
            None | Some(Alt::EpochMillis) => ms.to_string(),
            Some(Alt::EpochSecond) => format_epoch_second(ms),
            Some(Alt::Pattern { print, .. }) => {
                let off = tz.offset_seconds_at(ms);
                let local = ms.saturating_add(i64::from(off) * MS_PER_SECOND);
                match DateTime::from_timestamp_millis(local) {
                    Some(dt) => {
                        let mut out = String::new();
                        print_seq(print, &dt.naive_utc(), off, &mut out);
                        out
                    }
                    None => ms.to_string(),
                }
            }
        }
    }
}

fn parse_alt(part: &str) -> Result<Alt, DateSpecError> {
    if let Some(alt) = named_alt(part) {
        return Ok(alt);
    }
    match parse_pattern(part) {
        Ok(items) => Ok(Alt::Pattern { parse: items.clone(), print: items }),
        Err(DateSpecError(msg))
            if part.contains('_') && part.bytes().all(|c| c.is_ascii_lowercase() || c == b'_') =>
        {
            spec_err(format!(
                "unknown date format [{part}]: not a built-in format name, and not a valid \
                 pattern ({msg})"
            ))
        }
        Err(e) => Err(e),
    }
}

// Builders for the named formats.
fn lit(s: &str) -> Item {
    Item::Lit(s.to_string())
}
fn num(field: Field, strict: bool) -> Item {
    Item::Num { field, min: if strict { 2 } else { 1 }, max: 2, pad: 2 }
}
fn year(strict: bool) -> Item {
    Item::Year {
        min: if strict { 4 } else { 1 },
        max: if strict { 4 } else { 9 },
        pad: 4,
        sign: YearSign::BeforeDash,
    }
}
fn opt(items: Vec<Item>) -> Item {
    Item::Optional(items)
}
fn date_items(strict: bool) -> Vec<Item> {
    vec![year(strict), lit("-"), num(Field::Month, strict), lit("-"), num(Field::Day, strict)]
}
fn basic_date_items() -> Vec<Item> {
    vec![
        Item::Year { min: 4, max: 4, pad: 4, sign: YearSign::No },
        Item::Num { field: Field::Month, min: 2, max: 2, pad: 2 },
        Item::Num { field: Field::Day, min: 2, max: 2, pad: 2 },
    ]
}
fn frac_any() -> Item {
    Item::Frac { min: 1, max: 9, print: 3 }
}

/// Time-of-day items of precision `n` (1 = HH, 2 = HH:mm, 3 = HH:mm:ss), with `sep` between.
fn time_items(strict: bool, n: usize, sep: &str) -> Vec<Item> {
    let fields = [Field::Hour, Field::Minute, Field::Second];
    let mut v = Vec::new();
    for (i, f) in fields.iter().take(n).enumerate() {
        if i > 0 && !sep.is_empty() {
            v.push(lit(sep));
        }
        v.push(num(*f, strict));
    }
    v
}

fn pattern(parse: Vec<Item>, print: Vec<Item>) -> Alt {
    Alt::Pattern { parse, print }
}
fn same(items: Vec<Item>) -> Alt {
    pattern(items.clone(), items)
}
fn cat(parts: Vec<Vec<Item>>) -> Vec<Item> {
    parts.into_iter().flatten().collect()
}

/// Print tree of the ISO date-time formats: `yyyy-MM-dd'T'HH:mm:ss.SSSXXX`.
fn iso_print() -> Vec<Item> {
    cat(vec![
        date_items(true),
        vec![lit("T")],
        time_items(true, 3, ":"),
        vec![lit("."), Item::Frac { min: 3, max: 3, print: 3 }, Item::Offset(OffsetStyle::ColonZ)],
    ])
}

/// `strict_date_optional_time` / `date_optional_time` parse tree, shaped like ES's builder.
fn iso_optional(strict: bool) -> Alt {
    let fraction = vec![opt(vec![lit("."), frac_any()]), opt(vec![lit(","), frac_any()])];
    let seconds = opt(cat(vec![vec![lit(":"), num(Field::Second, strict)], fraction]));
    let minutes = opt(vec![lit(":"), num(Field::Minute, strict), seconds]);
    let hours = opt(vec![num(Field::Hour, strict), minutes]);
    let time = opt(vec![lit("T"), hours, opt(vec![Item::Offset(OffsetStyle::ColonZ)])]);
    let day = opt(vec![lit("-"), num(Field::Day, strict), time]);
    let month = opt(vec![lit("-"), num(Field::Month, strict), day]);
    pattern(vec![year(strict), month], iso_print())
}

/// Built-in named formats.
fn named_alt(name: &str) -> Option<Alt> {
    let (strict, base) = match name.strip_prefix("strict_") {
        Some(rest) => (true, rest),
        None => (false, name),
    };
    let offset = || Item::Offset(OffsetStyle::ColonZ);
    let alt = match (strict, base) {
        (false, "epoch_millis") => Alt::EpochMillis,
        (false, "epoch_second") => Alt::EpochSecond,
        (_, "date_optional_time") => iso_optional(strict),
        (false, "iso8601") => iso_optional(true),
        (_, "date_time") => pattern(
            cat(vec![
                date_items(strict),
                vec![lit("T")],
                time_items(strict, 3, ":"),
                vec![lit("."), frac_any(), offset()],
            ]),
            iso_print(),
        ),
        (_, "date_time_no_millis") => same(cat(vec![
            date_items(strict),
            vec![lit("T")],
            time_items(strict, 3, ":"),
            vec![offset()],
        ])),
        (_, "date") | (_, "year_month_day") => same(date_items(strict)),
        (_, "year_month") => same(vec![year(strict), lit("-"), num(Field::Month, strict)]),
        (_, "year") => same(vec![year(strict)]),
        (false, "basic_date") | (true, "basic_date") => same(basic_date_items()),
        (_, "basic_date_time") => {
            let tail = |f: Item| {
                cat(vec![
                    basic_date_items(),
                    vec![lit("T")],
                    time_items(true, 3, ""),
                    vec![lit("."), f, Item::Offset(OffsetStyle::NoColonZ)],
                ])
            };
            pattern(tail(frac_any()), tail(Item::Frac { min: 3, max: 3, print: 3 }))
        }
        (_, "basic_date_time_no_millis") => same(cat(vec![
            basic_date_items(),
            vec![lit("T")],
            time_items(true, 3, ""),
            vec![Item::Offset(OffsetStyle::NoColonZ)],
        ])),
        (_, "date_hour") => {
            same(cat(vec![date_items(strict), vec![lit("T")], time_items(strict, 1, ":")]))
        }
        (_, "date_hour_minute") => {
            same(cat(vec![date_items(strict), vec![lit("T")], time_items(strict, 2, ":")]))
        }
        (_, "date_hour_minute_second") => {
            same(cat(vec![date_items(strict), vec![lit("T")], time_items(strict, 3, ":")]))
        }
        (_, "date_hour_minute_second_millis") | (_, "date_hour_minute_second_fraction") => {
            let head = cat(vec![date_items(strict), vec![lit("T")], time_items(strict, 3, ":")]);
            let millis = Item::Frac { min: 3, max: 3, print: 3 };
            let parse_frac = if base.ends_with("millis") { millis.clone() } else { frac_any() };
            pattern(
                cat(vec![head.clone(), vec![lit("."), parse_frac]]),
                cat(vec![head, vec![lit("."), millis]]),
            )
        }
        (_, "hour") => same(time_items(strict, 1, ":")),
        (_, "hour_minute") => same(time_items(strict, 2, ":")),
        (_, "hour_minute_second") => same(time_items(strict, 3, ":")),
        _ => return None,
    };
    Some(alt)
}

/// Parse a Java `DateTimeFormatter`-style pattern into items.
fn parse_pattern(pat: &str) -> Result<Vec<Item>, DateSpecError> {
    let chars: Vec<char> = pat.chars().collect();
    let mut stack: Vec<Vec<Item>> = vec![Vec::new()];
    let push_lit = |stack: &mut Vec<Vec<Item>>, s: &str| {
        if let Some(top) = stack.last_mut() {
            if let Some(Item::Lit(prev)) = top.last_mut() {
                prev.push_str(s);
            } else {
                top.push(Item::Lit(s.to_string()));
            }
        }
    };
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        match c {
            '\'' => {
                if chars.get(i + 1) == Some(&'\'') {
                    push_lit(&mut stack, "'");
                    i += 2;
                    continue;
                }
                let mut text = String::new();
                let mut j = i + 1;
                loop {
                    match chars.get(j) {
                        None => {
                            return spec_err(format!(
                                "unterminated quoted literal in date format [{pat}]"
                            ));
                        }
                        Some('\'') if chars.get(j + 1) == Some(&'\'') => {
                            text.push('\'');
                            j += 2;
                        }
                        Some('\'') => break,
                        Some(ch) => {
                            text.push(*ch);
                            j += 1;
                        }
                    }
                }
                push_lit(&mut stack, &text);
                i = j + 1;
            }
            '[' => {
                stack.push(Vec::new());
                i += 1;
            }
            ']' => {
                if stack.len() < 2 {
                    return spec_err(format!("unmatched ']' in date format [{pat}]"));
                }
                let inner = stack.pop().unwrap_or_default();
                if let Some(top) = stack.last_mut() {
                    top.push(Item::Optional(inner));
                }
                i += 1;
            }
            '{' | '}' | '#' => {
                return spec_err(format!("reserved character '{c}' in date format [{pat}]"));
            }
            c if c.is_ascii_alphabetic() => {
                let mut n = 1;
                while chars.get(i + n) == Some(&c) {
                    n += 1;
                }
                let item = letter_item(c, n).ok_or_else(|| {
                    DateSpecError(format!(
                        "unsupported pattern letter '{}' in date format [{pat}]",
                        String::from(c).repeat(n)
                    ))
                })?;
                if let Some(top) = stack.last_mut() {
                    top.push(item);
                }
                i += n;
            }
            c => {
                push_lit(&mut stack, c.encode_utf8(&mut [0u8; 4]));
                i += 1;
            }
        }
    }
    if stack.len() != 1 {
        return spec_err(format!("unclosed '[' in date format [{pat}]"));
    }
    let items = stack.pop().unwrap_or_default();
    if items.is_empty() {
        return spec_err(format!("empty date format [{pat}]"));
    }
    Ok(items)
}

/// The item for a run of `n` copies of pattern letter `c`.
fn letter_item(c: char, n: usize) -> Option<Item> {
    let numeric = |field: Field| match n {
        1 => Some(Item::Num { field, min: 1, max: 2, pad: 1 }),
        2 => Some(Item::Num { field, min: 2, max: 2, pad: 2 }),
        _ => None,
    };
    match c {
        'y' | 'u' => match n {
            1 => Some(Item::Year { min: 1, max: 9, pad: 1, sign: YearSign::No }),
            2 => Some(Item::Year2),
            3..=9 => Some(Item::Year {
                min: n,
                max: 9,
                pad: n,
                sign: if n >= 4 { YearSign::Yes } else { YearSign::No },
            }),
            _ => None,
        },
        'M' | 'L' => match n {
            1 | 2 => numeric(Field::Month),
            3 => Some(Item::MonthName { full: false }),
            4 => Some(Item::MonthName { full: true }),
            _ => None,
        },
        'd' => numeric(Field::Day),
        'H' => numeric(Field::Hour),
        'h' => numeric(Field::Hour12),
        'm' => numeric(Field::Minute),
        's' => numeric(Field::Second),
        'S' if n <= 9 => Some(Item::Frac { min: n, max: n, print: n }),
        'E' => match n {
            1..=3 => Some(Item::DayName { full: false }),
            4 => Some(Item::DayName { full: true }),
            _ => None,
        },
        'a' if n == 1 => Some(Item::AmPm),
        'Z' => match n {
            1..=3 => Some(Item::Offset(OffsetStyle::HhmmNoZ)),
            5 => Some(Item::Offset(OffsetStyle::ColonZ)),
            _ => None,
        },
        'X' => match n {
            1 => Some(Item::Offset(OffsetStyle::HourZ)),
            2 => Some(Item::Offset(OffsetStyle::NoColonZ)),
            3 => Some(Item::Offset(OffsetStyle::ColonZ)),
            _ => None,
        },
        'x' => match n {
            1 => Some(Item::Offset(OffsetStyle::HourNoZ)),
            2 => Some(Item::Offset(OffsetStyle::NoColonNoZ)),
            3 => Some(Item::Offset(OffsetStyle::ColonNoZ)),
            _ => None,
        },
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing values
// ---------------------------------------------------------------------------------------------

/// Fields collected while parsing one value.
#[derive(Debug, Clone, Default)]
struct Parsed {
    year: Option<i64>,
    month: Option<i64>,
    day: Option<i64>,
    hour: Option<i64>,
    hour12: Option<i64>,
    pm: Option<bool>,
    minute: Option<i64>,
    second: Option<i64>,
    nano: Option<i64>,
    offset_secs: Option<i64>,
    weekday: Option<u32>,
}

/// Store `v` in `slot`; a second, different value for the same field is a conflict.
fn set<T: PartialEq>(slot: &mut Option<T>, v: T) -> Option<()> {
    match slot {
        Some(old) if *old != v => None,
        _ => {
            *slot = Some(v);
            Some(())
        }
    }
}

impl Parsed {
    /// Missing time-of-day components at their largest values (see
    /// [`DateFormat::parse_millis_round_up`]).
    fn round_up_missing(&mut self) {
        if self.hour.is_none() && self.hour12.is_none() {
            self.hour = Some(23);
        }
        self.minute.get_or_insert(59);
        self.second.get_or_insert(59);
        self.nano.get_or_insert(999_999_999);
    }

    fn resolve(&self, tz: &TimeZone) -> Option<i64> {
        let year = i32::try_from(self.year.unwrap_or(1970)).ok()?;
        let month = u32::try_from(self.month.unwrap_or(1)).ok()?;
        let day = u32::try_from(self.day.unwrap_or(1)).ok()?;
        let mut hour = self.hour;
        if let Some(h12) = self.hour12 {
            if !(1..=12).contains(&h12) {
                return None;
            }
            let h = h12 % 12 + if self.pm == Some(true) { 12 } else { 0 };
            set(&mut hour, h)?;
        }
        let hour = u32::try_from(hour.unwrap_or(0)).ok()?;
        let minute = u32::try_from(self.minute.unwrap_or(0)).ok()?;
        let second = u32::try_from(self.second.unwrap_or(0)).ok()?;
        let nano = u32::try_from(self.nano.unwrap_or(0)).ok()?;
        if nano >= 1_000_000_000 || second > 59 {
            return None;
        }
        let date = NaiveDate::from_ymd_opt(year, month, day)?;
        if self.weekday.is_some_and(|wd| wd != date.weekday().num_days_from_monday()) {
            return None;
        }
        let time = NaiveTime::from_hms_nano_opt(hour, minute, second, nano)?;
        let local = NaiveDateTime::new(date, time).and_utc().timestamp_millis();
        match self.offset_secs {
            Some(off) => local.checked_sub(off.checked_mul(MS_PER_SECOND)?),
            None => Some(tz.local_to_utc_lenient(local)),
        }
    }
}

fn digit_run(b: &[u8], pos: usize) -> usize {
    b.get(pos..).map_or(0, |s| s.iter().take_while(|c| c.is_ascii_digit()).count())
}

fn digits_value(b: &[u8], pos: usize, n: usize) -> Option<i64> {
    b.get(pos..pos.checked_add(n)?)?
        .iter()
        .try_fold(0i64, |acc, c| acc.checked_mul(10)?.checked_add(i64::from(c - b'0')))
}

/// Case-insensitive ASCII prefix match.
fn starts_with_ci(b: &[u8], pos: usize, word: &str) -> bool {
    let w = word.as_bytes();
    b.get(pos..pos + w.len()).is_some_and(|s| s.eq_ignore_ascii_case(w))
}

/// Match one of `names` (or their 3-letter abbreviations) at `pos`: (index, length).
fn match_name(b: &[u8], pos: usize, names: &[&str], full: bool) -> Option<(usize, usize)> {
    names.iter().enumerate().find_map(|(i, name)| {
        let word = if full { name } else { name.get(..3)? };
        starts_with_ci(b, pos, word).then_some((i, word.len()))
    })
}

/// Parse a zone offset at `pos`: `Z`, `+hh`, `+hhmm`, `+hh:mm` (leniently, whatever the style).
fn scan_offset(b: &[u8], pos: usize) -> Option<(i64, usize)> {
    let sign = match b.get(pos)? {
        b'Z' | b'z' => return Some((0, pos + 1)),
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let mut p = pos + 1;
    if digit_run(b, p) < 2 {
        return None;
    }
    let h = digits_value(b, p, 2)?;
    p += 2;
    let mut m = 0;
    if b.get(p) == Some(&b':') && digit_run(b, p + 1) >= 2 {
        m = digits_value(b, p + 1, 2)?;
        p += 3;
    } else if digit_run(b, p) >= 2 {
        m = digits_value(b, p, 2)?;
        p += 2;
    }
    if h > 18 || m > 59 || h * 60 + m > 18 * 60 {
        return None;
    }
    Some((sign * (h * 3600 + m * 60), p))
}

/// Greedily parse `items` from `b[pos..]`; returns the end position.
fn parse_seq(items: &[Item], b: &[u8], mut pos: usize, p: &mut Parsed) -> Option<usize> {
    for (i, item) in items.iter().enumerate() {
        // Digits to leave for directly following fixed-width numeric items (`yyyyMMdd`).
        let reserve = || -> usize { items[i + 1..].iter().map_while(Item::fixed_width).sum() };
        // How many digits a numeric item of width min..=max takes here.
        let take = |min: usize, max: usize| -> Option<usize> {
            let avail = digit_run(b, pos);
            let n = if min == max { min } else { max.min(avail.saturating_sub(reserve())) };
            (n >= min && n <= avail).then_some(n)
        };
        match item {
            Item::Lit(s) => {
                let w = s.as_bytes();
                if !b.get(pos..)?.starts_with(w) {
                    return None;
                }
                pos += w.len();
            }
            Item::Num { field, min, max, .. } => {
                let n = take(*min, *max)?;
                let v = digits_value(b, pos, n)?;
                pos += n;
                let slot = match field {
                    Field::Month => &mut p.month,
                    Field::Day => &mut p.day,
                    Field::Hour => &mut p.hour,
                    Field::Hour12 => &mut p.hour12,
                    Field::Minute => &mut p.minute,
                    Field::Second => &mut p.second,
                };
                set(slot, v)?;
            }
            Item::Year { min, max, sign: sign_mode, .. } => {
                let signed = *sign_mode != YearSign::No;
                let sign = match b.get(pos) {
                    Some(b'+') if signed => Some(1),
                    Some(b'-') if signed => Some(-1),
                    _ => None,
                };
                let v = match sign {
                    Some(sign) => {
                        pos += 1;
                        let n = digit_run(b, pos).min(9);
                        if n < (*min).max(1) {
                            return None;
                        }
                        let v = digits_value(b, pos, n)?;
                        pos += n;
                        if *sign_mode == YearSign::BeforeDash && b.get(pos) != Some(&b'-') {
                            return None;
                        }
                        sign * v
                    }
                    None => {
                        let n = take(*min, *max)?;
                        let v = digits_value(b, pos, n)?;
                        pos += n;
                        v
                    }
                };
                set(&mut p.year, v)?;
            }
            Item::Year2 => {
                let n = take(2, 2)?;
                let v = digits_value(b, pos, n)?;
                pos += n;
                set(&mut p.year, 2000 + v)?;
            }
            Item::Frac { min, max, .. } => {
                let n = take(*min, *max)?;
                let v = digits_value(b, pos, n)?;
                pos += n;
                let scale = 10i64.pow(u32::try_from(9usize.saturating_sub(n)).ok()?);
                set(&mut p.nano, v * scale)?;
            }
            Item::MonthName { full } => {
                let (i, len) = match_name(b, pos, &MONTHS_FULL, *full)?;
                pos += len;
                set(&mut p.month, i as i64 + 1)?;
            }
            Item::DayName { full } => {
                let (i, len) = match_name(b, pos, &DAYS_FULL, *full)?;
                pos += len;
                set(&mut p.weekday, i as u32)?;
            }
            Item::AmPm => {
                let pm = if starts_with_ci(b, pos, "AM") {
                    false
                } else if starts_with_ci(b, pos, "PM") {
                    true
                } else {
                    return None;
                };
                pos += 2;
                set(&mut p.pm, pm)?;
            }
            Item::Offset(_) => {
                let (off, np) = scan_offset(b, pos)?;
                pos = np;
                set(&mut p.offset_secs, off)?;
            }
            Item::Optional(sub) => {
                let saved = p.clone();
                match parse_seq(sub, b, pos, p) {
                    Some(np) => pos = np,
                    None => *p = saved,
                }
            }
        }
    }
    Some(pos)
}

/// `epoch_millis` / `epoch_second`: optional `-`, digits, optional `.` fraction (up to 6 digits
/// for millis, 9 for seconds). The instant is floored to the millisecond.
fn parse_epoch(s: &str, seconds: bool) -> Option<i64> {
    let b = s.as_bytes();
    let (neg, start) = if b.first() == Some(&b'-') { (true, 1) } else { (false, 0) };
    let int_len = digit_run(b, start);
    if int_len == 0 || int_len > 19 {
        return None;
    }
    let int = b.get(start..start + int_len)?;
    let int = int.iter().fold(0i128, |acc, c| acc * 10 + i128::from(c - b'0'));
    let mut pos = start + int_len;
    let mut frac_nanos: i128 = 0;
    // Nanoseconds per unit of the integer part.
    let unit: i128 = if seconds { 1_000_000_000 } else { 1_000_000 };
    if b.get(pos) == Some(&b'.') {
        let n = digit_run(b, pos + 1);
        let max = if seconds { 9 } else { 6 };
        if n == 0 || n > max {
            return None;
        }
        let f =
            b.get(pos + 1..pos + 1 + n)?.iter().fold(0i128, |a, c| a * 10 + i128::from(c - b'0'));
        // f / 10^n units, in nanos.
        frac_nanos = f * unit / 10i128.pow(n as u32);
        pos += 1 + n;
    }
    if pos != b.len() {
        return None;
    }
    let mut total = int * unit + frac_nanos;
    if neg {
        total = -total;
    }
    i64::try_from(total.div_euclid(1_000_000)).ok()
}

fn format_epoch_second(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let a = ms.unsigned_abs();
    let (secs, frac) = (a / 1000, a % 1000);
    if frac == 0 {
        format!("{sign}{secs}")
    } else {
        let f = format!("{frac:03}");
        format!("{sign}{secs}.{}", f.trim_end_matches('0'))
    }
}

// ---------------------------------------------------------------------------------------------
// Printing
// ---------------------------------------------------------------------------------------------

fn print_offset(style: OffsetStyle, secs: i32, out: &mut String) {
    let z_for_zero =
        matches!(style, OffsetStyle::HourZ | OffsetStyle::NoColonZ | OffsetStyle::ColonZ);
    if secs == 0 && z_for_zero {
        out.push('Z');
        return;
    }
    let sign = if secs < 0 { '-' } else { '+' };
    let a = secs.unsigned_abs();
    let (h, m) = (a / 3600, (a / 60) % 60);
    let _ = match style {
        OffsetStyle::HourNoZ | OffsetStyle::HourZ if m == 0 => write!(out, "{sign}{h:02}"),
        OffsetStyle::ColonNoZ | OffsetStyle::ColonZ => write!(out, "{sign}{h:02}:{m:02}"),
        _ => write!(out, "{sign}{h:02}{m:02}"),
    };
}

fn print_seq(items: &[Item], dt: &NaiveDateTime, off: i32, out: &mut String) {
    for item in items {
        match item {
            Item::Lit(s) => out.push_str(s),
            Item::Num { field, pad, .. } => {
                let v = match field {
                    Field::Month => dt.month(),
                    Field::Day => dt.day(),
                    Field::Hour => dt.hour(),
                    Field::Hour12 => match dt.hour() % 12 {
                        0 => 12,
                        h => h,
                    },
                    Field::Minute => dt.minute(),
                    Field::Second => dt.second(),
                };
                let _ = write!(out, "{v:0pad$}");
            }
            Item::Year { pad, .. } => {
                let y = dt.year();
                let a = y.unsigned_abs();
                if y < 0 {
                    out.push('-');
                } else if *pad >= 4 && u64::from(a) >= 10u64.pow(*pad as u32) {
                    out.push('+');
                }
                let _ = write!(out, "{a:0pad$}");
            }
            Item::Year2 => {
                let _ = write!(out, "{:02}", dt.year().rem_euclid(100));
            }
            Item::Frac { print, .. } => {
                let digits = (*print).min(9);
                let v = dt.nanosecond().min(999_999_999) / 10u32.pow(9 - digits as u32);
                let _ = write!(out, "{v:0digits$}");
            }
            Item::MonthName { full } => {
                let name = MONTHS_FULL.get(dt.month0() as usize).copied().unwrap_or("");
                out.push_str(if *full { name } else { name.get(..3).unwrap_or(name) });
            }
            Item::DayName { full } => {
                let i = dt.weekday().num_days_from_monday() as usize;
                let name = DAYS_FULL.get(i).copied().unwrap_or("");
                out.push_str(if *full { name } else { name.get(..3).unwrap_or(name) });
            }
            Item::AmPm => out.push_str(if dt.hour() < 12 { "AM" } else { "PM" }),
            Item::Offset(style) => print_offset(*style, off, out),
            Item::Optional(sub) => print_seq(sub, dt, off, out),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Intervals
// ---------------------------------------------------------------------------------------------

/// Calendar units of date_histogram calendar_interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CalendarUnit {
    /// One minute (`minute`, `1m`).
    Minute,
    /// One hour (`hour`, `1h`).
    Hour,
    /// One local day (`day`, `1d`).
    Day,
    /// One week starting Monday (`week`, `1w`).
    Week,
    /// One calendar month (`month`, `1M`).
    Month,
    /// One quarter starting Jan/Apr/Jul/Oct (`quarter`, `1q`).
    Quarter,
    /// One calendar year (`year`, `1y`).
    Year,
}

impl CalendarUnit {
    /// Accepts ES spellings: `minute|1m`, `hour|1h`, `day|1d`, `week|1w`, `month|1M`,
    /// `quarter|1q`, `year|1y`. Anything else (e.g. `2d`) is an error saying calendar intervals
    /// must be a single unit and suggesting `fixed_interval`.
    pub fn parse(s: &str) -> Result<CalendarUnit, DateSpecError> {
        let unit = match s.trim() {
            "minute" | "1m" => CalendarUnit::Minute,
            "hour" | "1h" => CalendarUnit::Hour,
            "day" | "1d" => CalendarUnit::Day,
            "week" | "1w" => CalendarUnit::Week,
            "month" | "1M" => CalendarUnit::Month,
            "quarter" | "1q" => CalendarUnit::Quarter,
            "year" | "1y" => CalendarUnit::Year,
            _ => {
                return spec_err(format!(
                    "the supplied interval [{s}] could not be parsed as a calendar interval: \
                     calendar_interval must be a single unit (minute/1m, hour/1h, day/1d, \
                     week/1w, month/1M, quarter/1q, year/1y); for multiples of a unit \
                     (e.g. 2d, 30s) use fixed_interval"
                ));
            }
        };
        Ok(unit)
    }

    /// Canonical spelling: `"1m"`, `"1h"`, `"1d"`, `"1w"`, `"1M"`, `"1q"`, `"1y"`.
    pub fn canonical(&self) -> &'static str {
        match self {
            CalendarUnit::Minute => "1m",
            CalendarUnit::Hour => "1h",
            CalendarUnit::Day => "1d",
            CalendarUnit::Week => "1w",
            CalendarUnit::Month => "1M",
            CalendarUnit::Quarter => "1q",
            CalendarUnit::Year => "1y",
        }
    }
}

/// Split `"30s"` into (`"30"`, `"s"`) at the first non-digit (always a char boundary).
fn split_number(t: &str) -> (&str, &str) {
    let idx = t.char_indices().find(|(_, c)| !c.is_ascii_digit()).map_or(t.len(), |(i, _)| i);
    t.split_at(idx)
}

/// Parse `<digits><unit>` with unit in ms|s|m|h|d into millis (`what` names the parameter).
fn parse_time_value(t: &str, what: &str, orig: &str) -> Result<i64, DateSpecError> {
    let (digits, unit) = split_number(t);
    if unit.starts_with('.') || unit.starts_with(',') {
        return spec_err(format!(
            "{what} [{orig}]: fractional values are not supported, use a smaller unit (e.g. 90m)"
        ));
    }
    if digits.is_empty() {
        return spec_err(format!(
            "{what} [{orig}]: expected an integer followed by a unit (ms, s, m, h, d), e.g. 30s"
        ));
    }
    let per: i64 = match unit {
        "ms" => 1,
        "s" => MS_PER_SECOND,
        "m" => MS_PER_MINUTE,
        "h" => MS_PER_HOUR,
        "d" => MS_PER_DAY,
        "w" | "M" | "q" | "y" => {
            return spec_err(format!(
                "{what} [{orig}]: unit [{unit}] is a calendar unit; use calendar_interval \
                 (fixed intervals support ms, s, m, h, d)"
            ));
        }
        "" => {
            return spec_err(format!("{what} [{orig}]: missing unit (ms, s, m, h, d)"));
        }
        _ => {
            return spec_err(format!(
                "{what} [{orig}]: unknown unit [{unit}] (supported: ms, s, m, h, d)"
            ));
        }
    };
    digits
        .parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(per))
        .ok_or_else(|| DateSpecError(format!("{what} [{orig}]: value too large")))
}

/// ES fixed_interval: integer + unit in `ms|s|m|h|d` (e.g. `"30s"`, `"5m"`, `"1500ms"`).
/// Returns millis > 0. Rejects units `w`/`M`/`q`/`y` (use calendar_interval), zero, negatives,
/// fractions and garbage.
pub fn parse_fixed_interval(s: &str) -> Result<i64, DateSpecError> {
    let t = s.trim();
    if t.starts_with('-') {
        return spec_err(format!("fixed_interval [{s}] must be positive"));
    }
    let ms = parse_time_value(t, "fixed_interval", s)?;
    if ms <= 0 {
        return spec_err(format!("fixed_interval [{s}] must be positive (zero is not allowed)"));
    }
    Ok(ms)
}

/// Canonical spelling of a fixed interval in millis: largest unit that divides it exactly
/// (`"1h"` for 3600000, `"90m"` for 5400000, `"1500ms"`).
pub fn fixed_interval_spec(ms: i64) -> String {
    if ms > 0 {
        for (per, unit) in
            [(MS_PER_DAY, "d"), (MS_PER_HOUR, "h"), (MS_PER_MINUTE, "m"), (MS_PER_SECOND, "s")]
        {
            if ms % per == 0 {
                return format!("{}{unit}", ms / per);
            }
        }
    }
    format!("{ms}ms")
}

/// ES date_histogram `offset` param like `"+6h"`, `"-30m"`, `"1d"` into millis (zero allowed).
pub fn parse_offset(s: &str) -> Result<i64, DateSpecError> {
    let t = s.trim();
    let (neg, rest) = if let Some(r) = t.strip_prefix('-') {
        (true, r)
    } else {
        (false, t.strip_prefix('+').unwrap_or(t))
    };
    let ms = if rest == "0" { 0 } else { parse_time_value(rest, "offset", s)? };
    Ok(if neg { -ms } else { ms })
}

// ---------------------------------------------------------------------------------------------
// Rounding
// ---------------------------------------------------------------------------------------------

/// `v` rounded down to a multiple of `interval` (> 0), saturating at the extremes.
fn floor_to(v: i64, interval: i64) -> i64 {
    v.saturating_sub(v.rem_euclid(interval))
}

/// Round `utc_ms` down in local time with `trunc` (local millis -> local millis), the way ES'
/// `TimeIntervalRounding` and sub-day `TimeUnitRounding` do: take the latest instant with the
/// truncated local time that is not after the input; if an offset transition lies between it
/// and the input, round from just before the transition instead.
fn round_local(utc_ms: i64, tz: &TimeZone, trunc: impl Fn(i64) -> i64) -> i64 {
    let mut instant = utc_ms;
    for _ in 0..16 {
        let local = instant.saturating_add(tz.offset_ms(instant));
        let candidate = match tz.local_to_utc(trunc(local)) {
            Resolved::Gap { transition, .. } => return transition.min(utc_ms),
            Resolved::Single(x) => x,
            Resolved::Ambiguous(a, b) => {
                if b <= instant {
                    b
                } else {
                    a
                }
            }
        };
        if let Some(t) = tz.last_transition_between(candidate, instant) {
            instant = t - 1;
            continue;
        }
        return candidate.min(utc_ms);
    }
    floor_to(utc_ms, MS_PER_SECOND)
}

fn local_date(local_ms: i64) -> Option<NaiveDate> {
    DateTime::from_timestamp_millis(local_ms).map(|d| d.date_naive())
}

/// First instant of the local day `date`: its midnight, the earlier one if ambiguous, the end
/// of the gap if midnight does not exist.
fn first_instant_of_day(date: NaiveDate, tz: &TimeZone) -> i64 {
    let local = date.and_time(NaiveTime::MIN).and_utc().timestamp_millis();
    match tz.local_to_utc(local) {
        Resolved::Single(x) | Resolved::Ambiguous(x, _) => x,
        Resolved::Gap { transition, .. } => transition,
    }
}

/// First local day of the bucket of `unit` (day or larger) containing `date`.
fn bucket_date(date: NaiveDate, unit: CalendarUnit) -> Option<NaiveDate> {
    match unit {
        CalendarUnit::Minute | CalendarUnit::Hour | CalendarUnit::Day => Some(date),
        CalendarUnit::Week => date
            .checked_sub_days(chrono::Days::new(u64::from(date.weekday().num_days_from_monday()))),
        CalendarUnit::Month => date.with_day(1),
        CalendarUnit::Quarter => {
            NaiveDate::from_ymd_opt(date.year(), (date.month0() / 3) * 3 + 1, 1)
        }
        CalendarUnit::Year => NaiveDate::from_ymd_opt(date.year(), 1, 1),
    }
}

fn add_unit(date: NaiveDate, unit: CalendarUnit) -> Option<NaiveDate> {
    match unit {
        CalendarUnit::Minute | CalendarUnit::Hour | CalendarUnit::Day => date.succ_opt(),
        CalendarUnit::Week => date.checked_add_days(chrono::Days::new(7)),
        CalendarUnit::Month => date.checked_add_months(Months::new(1)),
        CalendarUnit::Quarter => date.checked_add_months(Months::new(3)),
        CalendarUnit::Year => date.checked_add_months(Months::new(12)),
    }
}

fn sub_day_ms(unit: CalendarUnit) -> Option<i64> {
    match unit {
        CalendarUnit::Minute => Some(MS_PER_MINUTE),
        CalendarUnit::Hour => Some(MS_PER_HOUR),
        _ => None,
    }
}

/// Start (epoch ms, UTC) of the calendar bucket containing `utc_ms`, computed in the local time
/// of `tz`. Weeks start Monday; quarters start Jan/Apr/Jul/Oct. Units of a day or more start at
/// the first instant of the local day (ES `firstTimeOnDay`: earlier midnight in an overlap, the
/// transition when midnight falls in a gap). Apply a date_histogram `offset` as
/// `calendar_floor(t - offset) + offset`.
pub fn calendar_floor(utc_ms: i64, unit: CalendarUnit, tz: &TimeZone) -> i64 {
    if let Some(u) = sub_day_ms(unit) {
        return round_local(utc_ms, tz, |local| floor_to(local, u));
    }
    let local = utc_ms.saturating_add(tz.offset_ms(utc_ms));
    match local_date(local).and_then(|d| bucket_date(d, unit)) {
        Some(d) => first_instant_of_day(d, tz).min(utc_ms),
        None => utc_ms,
    }
}

/// Start of the next calendar bucket after the bucket starting at `bucket_start` (UTC ms).
/// Always greater than `bucket_start` (saturating at `i64::MAX`).
pub fn calendar_next(bucket_start: i64, unit: CalendarUnit, tz: &TimeZone) -> i64 {
    if let Some(u) = sub_day_ms(unit) {
        for k in 1..=2 {
            let r = calendar_floor(bucket_start.saturating_add(k * u), unit, tz);
            if r > bucket_start {
                return r;
            }
        }
        return bucket_start.saturating_add(u);
    }
    let local = bucket_start.saturating_add(tz.offset_ms(bucket_start));
    let mut date = match local_date(local).and_then(|d| bucket_date(d, unit)) {
        Some(d) => d,
        None => return bucket_start.saturating_add(MS_PER_DAY),
    };
    for _ in 0..4 {
        date = match add_unit(date, unit) {
            Some(d) => d,
            None => break,
        };
        let r = first_instant_of_day(date, tz);
        if r > bucket_start {
            return r;
        }
    }
    bucket_start.saturating_add(MS_PER_DAY)
}

/// Fixed-interval bucket start in `tz`, as ES rounds: in local time,
/// `floor((t - offset + off) / interval) * interval - off + offset` where `off` is the zone's
/// offset. For IANA zones the local rounding never goes back across an offset transition
/// (ES `TimeIntervalRounding`). `offset_ms` is the date_histogram `offset` param (may be 0).
/// A non-positive `interval_ms` returns `utc_ms` unchanged.
pub fn fixed_floor(utc_ms: i64, interval_ms: i64, offset_ms: i64, tz: &TimeZone) -> i64 {
    if interval_ms <= 0 {
        return utc_ms;
    }
    let t = utc_ms.saturating_sub(offset_ms);
    let rounded = match tz {
        TimeZone::Fixed(secs) => {
            let off = i64::from(*secs) * MS_PER_SECOND;
            floor_to(t.saturating_add(off), interval_ms).saturating_sub(off)
        }
        TimeZone::Named(_) => round_local(t, tz, |local| floor_to(local, interval_ms)),
    };
    rounded.saturating_add(offset_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reference instant from RFC 3339 via chrono (independent of this module's parser).
    fn at(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).map(|d| d.timestamp_millis()).unwrap_or(i64::MIN)
    }
    fn fmt(spec: &str) -> DateFormat {
        DateFormat::parse(spec).unwrap_or_else(|e| panic!("{spec}: {e}"))
    }
    fn tz(s: &str) -> TimeZone {
        TimeZone::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }
    fn utc() -> TimeZone {
        TimeZone::utc()
    }
    fn london() -> TimeZone {
        tz("Europe/London")
    }

    // ---- default format / ISO ----

    #[test]
    fn default_format_spec() {
        let f = DateFormat::default_format();
        assert_eq!(f.spec(), "strict_date_optional_time||epoch_millis");
        assert_eq!(f, fmt("strict_date_optional_time || epoch_millis"));
    }

    #[test]
    fn iso_optional_time_parses_all_precisions() {
        let f = DateFormat::default_format();
        let u = utc();
        let cases = [
            ("2022", "2022-01-01T00:00:00Z"),
            ("2022-11", "2022-11-01T00:00:00Z"),
            ("2022-11-01", "2022-11-01T00:00:00Z"),
            ("2022-11-01T10", "2022-11-01T10:00:00Z"),
            ("2022-11-01T10:15", "2022-11-01T10:15:00Z"),
            ("2022-11-01T10:15:30", "2022-11-01T10:15:30Z"),
            ("2022-11-01T10:15:30.5", "2022-11-01T10:15:30.500Z"),
            ("2022-11-01T10:15:30.123", "2022-11-01T10:15:30.123Z"),
            ("2022-11-01T10:15:30.123456789", "2022-11-01T10:15:30.123Z"),
            ("2022-11-01T10:15:30,25", "2022-11-01T10:15:30.250Z"),
            ("2022-11-01T10:15:30Z", "2022-11-01T10:15:30Z"),
            ("2022-11-01T10:15:30.000+01:00", "2022-11-01T09:15:30Z"),
            ("2022-11-01T10:15:30+0100", "2022-11-01T09:15:30Z"),
            ("2022-11-01T10:15:30-05", "2022-11-01T15:15:30Z"),
            ("2022-11-01T10:15-05:30", "2022-11-01T15:45:00Z"),
            ("2022-11-01T10Z", "2022-11-01T10:00:00Z"),
        ];
        for (input, want) in cases {
            assert_eq!(f.parse_millis(input, &u), Some(at(want)), "{input}");
        }
        assert_eq!(f.parse_millis("1667260800000", &u), Some(1_667_260_800_000));
        assert_eq!(f.parse_millis("-1000", &u), Some(-1000));
        // 8 digits is not a strict year: falls through to epoch_millis.
        assert_eq!(f.parse_millis("20221101", &u), Some(20_221_101));
    }

    #[test]
    fn iso_uses_tz_param_only_without_offset() {
        let f = DateFormat::default_format();
        assert_eq!(
            f.parse_millis("2022-11-01T10:00:00", &tz("+01:00")),
            Some(at("2022-11-01T09:00:00Z"))
        );
        assert_eq!(
            f.parse_millis("2022-11-01T10:00:00Z", &tz("+01:00")),
            Some(at("2022-11-01T10:00:00Z"))
        );
        assert_eq!(f.parse_millis("2022-07-01", &london()), Some(at("2022-06-30T23:00:00Z")));
        assert_eq!(f.parse_millis("2022-12-01", &london()), Some(at("2022-12-01T00:00:00Z")));
        // Gap (01:30 does not exist on 2022-03-27): moved forward by the gap, like java.time.
        assert_eq!(f.parse_millis("2022-03-27T01:30", &london()), Some(at("2022-03-27T01:30:00Z")));
        // Overlap (01:30 happens twice on 2022-10-30): the earlier instant.
        assert_eq!(f.parse_millis("2022-10-30T01:30", &london()), Some(at("2022-10-30T00:30:00Z")));
    }

    #[test]
    fn iso_rejects_bad_input() {
        let f = DateFormat::default_format();
        let u = utc();
        for bad in [
            "",
            "2022-11-1",
            "2022-02-30",
            "2022-13-01",
            "2022-11-01T25:00",
            "2022-11-01T10:60",
            "2022-11-01T10:00:60",
            "2022-11-01x",
            "2022-11-01T10:00:00Zjunk",
            "2022-11-01 10:00",
            "22-11-01",
            "2022-11-01T10:00:00+19:00",
            "abc",
            "é2022",
            "2022-11-01T10:00:00.1234567890",
        ] {
            assert_eq!(f.parse_millis(bad, &u), None, "{bad:?}");
        }
    }

    #[test]
    fn iso_extended_years() {
        let f = DateFormat::default_format();
        let u = utc();
        assert_eq!(f.parse_millis("1969-12-31T23:59:59.999Z", &u), Some(-1));
        assert_eq!(f.parse_millis("0001-01-01", &u), Some(at("0001-01-01T00:00:00Z")));
        let ms = f.parse_millis("+12345-01-01", &u);
        assert!(ms.is_some());
        assert_eq!(f.format_millis(ms.unwrap_or(0), &u), "+12345-01-01T00:00:00.000Z");
        let neg = f.parse_millis("-0001-01-01", &u).unwrap_or(0);
        assert_eq!(f.format_millis(neg, &u), "-0001-01-01T00:00:00.000Z");
    }

    #[test]
    fn date_optional_time_is_lenient() {
        let f = fmt("date_optional_time");
        assert_eq!(f.parse_millis("2022-1-5T1:2:3", &utc()), Some(at("2022-01-05T01:02:03Z")));
        assert_eq!(f.parse_millis("2022-11-01", &utc()), Some(at("2022-11-01T00:00:00Z")));
        assert_eq!(f.parse_millis("2022-02-30", &utc()), None);
        assert_eq!(f.format_millis(at("2022-01-05T01:02:03Z"), &utc()), "2022-01-05T01:02:03.000Z");
        assert_eq!(
            fmt("iso8601").parse_millis("2022-11-01T10Z", &utc()),
            Some(at("2022-11-01T10:00:00Z"))
        );
    }

    #[test]
    fn format_default() {
        let f = DateFormat::default_format();
        let t = 1_667_260_800_000;
        assert_eq!(f.format_millis(t, &utc()), "2022-11-01T00:00:00.000Z");
        assert_eq!(f.format_millis(t, &tz("+01:00")), "2022-11-01T01:00:00.000+01:00");
        assert_eq!(f.format_millis(t, &tz("-0530")), "2022-10-31T18:30:00.000-05:30");
        assert_eq!(f.format_millis(t + 7, &utc()), "2022-11-01T00:00:00.007Z");
        assert_eq!(
            f.format_millis(at("2022-07-01T12:00:00Z"), &london()),
            "2022-07-01T13:00:00.000+01:00"
        );
        assert_eq!(
            f.format_millis(at("2022-12-01T12:00:00Z"), &london()),
            "2022-12-01T12:00:00.000Z"
        );
        assert_eq!(f.format_millis(-1, &utc()), "1969-12-31T23:59:59.999Z");
        // Out of chrono's range: epoch millis text.
        assert_eq!(f.format_millis(i64::MAX, &utc()), i64::MAX.to_string());
    }

    // ---- epoch formats ----

    #[test]
    fn epoch_millis() {
        let f = fmt("epoch_millis");
        let u = utc();
        assert_eq!(f.parse_millis("1667260800000", &u), Some(1_667_260_800_000));
        assert_eq!(f.parse_millis("0", &u), Some(0));
        assert_eq!(f.parse_millis("-1", &u), Some(-1));
        assert_eq!(f.parse_millis("1.5", &u), Some(1));
        assert_eq!(f.parse_millis("-1.5", &u), Some(-2));
        for bad in ["", "-", "+1", "1e3", "1.", "12a", " 1", "99999999999999999999", "1.1234567"] {
            assert_eq!(f.parse_millis(bad, &u), None, "{bad:?}");
        }
        assert_eq!(f.format_millis(1_667_260_800_000, &tz("+05:00")), "1667260800000");
        assert_eq!(f.format_millis(-5, &u), "-5");
        assert_eq!(f.number_to_millis(1_667_260_800_000.0), Some(1_667_260_800_000));
        assert_eq!(f.number_to_millis(1.9), Some(1));
        assert_eq!(f.number_to_millis(f64::NAN), None);
        assert_eq!(f.number_to_millis(f64::INFINITY), None);
        assert_eq!(f.number_to_millis(1e30), None);
    }

    #[test]
    fn epoch_second() {
        let f = fmt("epoch_second");
        let u = utc();
        assert_eq!(f.parse_millis("1667260800", &u), Some(1_667_260_800_000));
        assert_eq!(f.parse_millis("1.5", &u), Some(1500));
        assert_eq!(f.parse_millis("-1.5", &u), Some(-1500));
        assert_eq!(f.parse_millis("1.0005", &u), Some(1000));
        assert_eq!(f.parse_millis("x", &u), None);
        assert_eq!(f.format_millis(1_667_260_800_000, &u), "1667260800");
        assert_eq!(f.format_millis(1500, &u), "1.5");
        assert_eq!(f.format_millis(-1500, &u), "-1.5");
        assert_eq!(f.format_millis(1001, &u), "1.001");
        assert_eq!(f.number_to_millis(1_667_260_800.0), Some(1_667_260_800_000));
        assert_eq!(f.number_to_millis(1.1), Some(1100));
        assert_eq!(
            fmt("strict_date_optional_time||epoch_second").number_to_millis(2.0),
            Some(2000)
        );
        assert_eq!(fmt("epoch_millis||epoch_second").number_to_millis(2.0), Some(2));
        assert_eq!(fmt("yyyy").number_to_millis(2.0), Some(2));
        // Mixed: the ISO alternative wins for ISO text, epoch_second for digits.
        let mixed = fmt("strict_date_optional_time||epoch_second");
        assert_eq!(mixed.parse_millis("1667260800", &u), Some(1_667_260_800_000));
        assert_eq!(mixed.parse_millis("2022-11-01", &u), Some(1_667_260_800_000));
        assert_eq!(mixed.format_millis(1_667_260_800_000, &u), "2022-11-01T00:00:00.000Z");
    }

    // ---- other named formats ----

    #[test]
    fn strict_date_time_and_date_time() {
        let u = utc();
        let f = fmt("strict_date_time");
        assert_eq!(
            f.parse_millis("2022-11-01T10:15:30.123Z", &u),
            Some(at("2022-11-01T10:15:30.123Z"))
        );
        assert_eq!(
            f.parse_millis("2022-11-01T10:15:30.1+01:00", &u),
            Some(at("2022-11-01T09:15:30.100Z"))
        );
        assert_eq!(f.parse_millis("2022-11-01T10:15:30Z", &u), None, "millis required");
        assert_eq!(f.parse_millis("2022-11-01T10:15:30.123", &u), None, "offset required");
        assert_eq!(f.format_millis(at("2022-11-01T10:15:30.123Z"), &u), "2022-11-01T10:15:30.123Z");
        let g = fmt("date_time");
        assert_eq!(g.parse_millis("2022-1-1T1:2:3.4Z", &u), Some(at("2022-01-01T01:02:03.400Z")));
        assert_eq!(fmt("strict_date_time").parse_millis("2022-1-1T1:2:3.4Z", &u), None);
        let h = fmt("strict_date_time_no_millis");
        assert_eq!(
            h.parse_millis("2022-11-01T10:15:30+01:00", &u),
            Some(at("2022-11-01T09:15:30Z"))
        );
        assert_eq!(
            h.format_millis(at("2022-11-01T10:15:30Z"), &tz("+01:00")),
            "2022-11-01T11:15:30+01:00"
        );
    }

    #[test]
    fn date_and_basic_date() {
        let u = utc();
        for name in ["date", "strict_date", "year_month_day", "strict_year_month_day"] {
            let f = fmt(name);
            assert_eq!(f.parse_millis("2022-11-01", &u), Some(1_667_260_800_000), "{name}");
            assert_eq!(f.parse_millis("2022-11-01T00:00", &u), None, "{name}");
            assert_eq!(f.format_millis(1_667_260_800_000 + 5000, &u), "2022-11-01", "{name}");
        }
        assert_eq!(fmt("date").parse_millis("2022-1-5", &u), Some(at("2022-01-05T00:00:00Z")));
        assert_eq!(fmt("strict_date").parse_millis("2022-1-5", &u), None);
        assert_eq!(
            fmt("date").parse_millis("2022-11-01", &tz("+01:00")),
            Some(at("2022-10-31T23:00:00Z"))
        );
        let b = fmt("basic_date");
        assert_eq!(b.parse_millis("20221101", &u), Some(1_667_260_800_000));
        assert_eq!(b.parse_millis("2022111", &u), None);
        assert_eq!(b.parse_millis("20221301", &u), None);
        assert_eq!(b.format_millis(1_667_260_800_000, &u), "20221101");
        let bt = fmt("basic_date_time");
        assert_eq!(
            bt.parse_millis("20221101T101530.123Z", &u),
            Some(at("2022-11-01T10:15:30.123Z"))
        );
        assert_eq!(
            bt.format_millis(at("2022-11-01T10:15:30.123Z"), &tz("+01:00")),
            "20221101T111530.123+0100"
        );
        assert_eq!(fmt("strict_year_month").parse_millis("2022-11", &u), Some(1_667_260_800_000));
        assert_eq!(fmt("strict_year").parse_millis("2022", &u), Some(at("2022-01-01T00:00:00Z")));
        assert_eq!(
            fmt("strict_hour_minute").parse_millis("10:15", &u),
            Some(10 * 3_600_000 + 15 * 60_000)
        );
    }

    #[test]
    fn date_hour_minute_second() {
        let u = utc();
        let f = fmt("strict_date_hour_minute_second");
        assert_eq!(f.parse_millis("2022-11-01T10:15:30", &u), Some(at("2022-11-01T10:15:30Z")));
        assert_eq!(
            f.parse_millis("2022-11-01T10:15:30", &tz("Europe/London")),
            Some(at("2022-11-01T10:15:30Z"))
        );
        assert_eq!(
            f.parse_millis("2022-11-01T10:15:30", &tz("+02:00")),
            Some(at("2022-11-01T08:15:30Z"))
        );
        assert_eq!(f.parse_millis("2022-11-01T10:15", &u), None);
        assert_eq!(f.parse_millis("2022-11-01T10:15:30Z", &u), None);
        assert_eq!(f.parse_millis("2022-11-1T10:15:30", &u), None);
        assert_eq!(f.format_millis(at("2022-11-01T10:15:30.999Z"), &u), "2022-11-01T10:15:30");
        let g = fmt("date_hour_minute_second");
        assert_eq!(g.parse_millis("2022-11-1T1:5:3", &u), Some(at("2022-11-01T01:05:03Z")));
        assert_eq!(g.format_millis(at("2022-11-01T01:05:03Z"), &u), "2022-11-01T01:05:03");
        let m = fmt("strict_date_hour_minute_second_millis");
        assert_eq!(
            m.parse_millis("2022-11-01T10:15:30.120", &u),
            Some(at("2022-11-01T10:15:30.120Z"))
        );
        assert_eq!(m.parse_millis("2022-11-01T10:15:30.12", &u), None);
        let fr = fmt("strict_date_hour_minute_second_fraction");
        assert_eq!(
            fr.parse_millis("2022-11-01T10:15:30.12", &u),
            Some(at("2022-11-01T10:15:30.120Z"))
        );
        assert_eq!(fr.format_millis(at("2022-11-01T10:15:30.120Z"), &u), "2022-11-01T10:15:30.120");
        assert_eq!(
            fmt("date_hour_minute").parse_millis("2022-11-01T10:15", &u),
            Some(at("2022-11-01T10:15:00Z"))
        );
        assert_eq!(
            fmt("date_hour").parse_millis("2022-11-01T10", &u),
            Some(at("2022-11-01T10:00:00Z"))
        );
    }

    // ---- patterns ----

    #[test]
    fn pattern_numeric_letters() {
        let u = utc();
        let f = fmt("yyyy/MM/dd HH:mm:ss");
        assert_eq!(f.parse_millis("2022/11/01 10:15:30", &u), Some(at("2022-11-01T10:15:30Z")));
        assert_eq!(f.parse_millis("2022/11/1 10:15:30", &u), None);
        assert_eq!(f.format_millis(at("2022-01-02T03:04:05Z"), &u), "2022/01/02 03:04:05");
        let g = fmt("d/M/y H:m:s");
        assert_eq!(g.parse_millis("5/1/2022 3:4:5", &u), Some(at("2022-01-05T03:04:05Z")));
        assert_eq!(g.parse_millis("05/01/2022 03:04:05", &u), Some(at("2022-01-05T03:04:05Z")));
        assert_eq!(g.format_millis(at("2022-01-05T03:04:05Z"), &u), "5/1/2022 3:4:5");
        let yy = fmt("dd.MM.yy");
        assert_eq!(yy.parse_millis("01.11.22", &u), Some(1_667_260_800_000));
        assert_eq!(yy.format_millis(1_667_260_800_000, &u), "01.11.22");
        let uu = fmt("uuuu-MM-dd");
        assert_eq!(uu.parse_millis("2022-11-01", &u), Some(1_667_260_800_000));
        assert_eq!(uu.format_millis(1_667_260_800_000, &u), "2022-11-01");
        // Adjacent numeric fields.
        let adj = fmt("yyyyMMddHHmm");
        assert_eq!(adj.parse_millis("202211011015", &u), Some(at("2022-11-01T10:15:00Z")));
        assert_eq!(adj.format_millis(at("2022-11-01T10:15:00Z"), &u), "202211011015");
        // Only time fields: date defaults to 1970-01-01.
        assert_eq!(fmt("HH:mm").parse_millis("10:15", &u), Some(36_900_000));
        // Year only.
        assert_eq!(fmt("yyyy").parse_millis("1969", &u), Some(at("1969-01-01T00:00:00Z")));
    }

    #[test]
    fn pattern_fraction_letters() {
        let u = utc();
        let f = fmt("HH:mm:ss.SSS");
        assert_eq!(f.parse_millis("10:15:30.123", &u), Some(36_930_123));
        assert_eq!(f.parse_millis("10:15:30.12", &u), None);
        assert_eq!(f.format_millis(36_930_123, &u), "10:15:30.123");
        let s1 = fmt("ss.S");
        assert_eq!(s1.parse_millis("01.5", &u), Some(1500));
        assert_eq!(s1.format_millis(1567, &u), "01.5");
        let s9 = fmt("ss.SSSSSSSSS");
        assert_eq!(s9.parse_millis("01.123456789", &u), Some(1123));
        assert_eq!(s9.format_millis(1123, &u), "01.123000000");
        assert!(DateFormat::parse("SSSSSSSSSS").is_err());
    }

    #[test]
    fn pattern_text_letters() {
        let u = utc();
        let f = fmt("dd MMM yyyy");
        assert_eq!(f.parse_millis("01 Nov 2022", &u), Some(1_667_260_800_000));
        assert_eq!(f.parse_millis("01 nov 2022", &u), Some(1_667_260_800_000));
        assert_eq!(f.parse_millis("01 NOV 2022", &u), Some(1_667_260_800_000));
        assert_eq!(f.parse_millis("01 November 2022", &u), None);
        assert_eq!(f.parse_millis("01 Xyz 2022", &u), None);
        assert_eq!(f.format_millis(1_667_260_800_000, &u), "01 Nov 2022");
        let g = fmt("MMMM d, yyyy");
        assert_eq!(g.parse_millis("November 1, 2022", &u), Some(1_667_260_800_000));
        assert_eq!(g.parse_millis("may 1, 2022", &u), Some(at("2022-05-01T00:00:00Z")));
        assert_eq!(g.format_millis(at("2022-09-07T00:00:00Z"), &u), "September 7, 2022");
        let e = fmt("EEE, dd MMM yyyy");
        assert_eq!(e.parse_millis("Tue, 01 Nov 2022", &u), Some(1_667_260_800_000));
        assert_eq!(e.parse_millis("tue, 01 Nov 2022", &u), Some(1_667_260_800_000));
        assert_eq!(e.parse_millis("Wed, 01 Nov 2022", &u), None, "day name must match the date");
        assert_eq!(e.format_millis(1_667_260_800_000, &u), "Tue, 01 Nov 2022");
        let e4 = fmt("EEEE yyyy-MM-dd");
        assert_eq!(e4.parse_millis("Tuesday 2022-11-01", &u), Some(1_667_260_800_000));
        assert_eq!(e4.format_millis(at("2022-11-02T00:00:00Z"), &u), "Wednesday 2022-11-02");
        let h = fmt("yyyy-MM-dd hh:mm a");
        assert_eq!(h.parse_millis("2022-11-01 12:05 AM", &u), Some(at("2022-11-01T00:05:00Z")));
        assert_eq!(h.parse_millis("2022-11-01 12:05 PM", &u), Some(at("2022-11-01T12:05:00Z")));
        assert_eq!(h.parse_millis("2022-11-01 01:05 pm", &u), Some(at("2022-11-01T13:05:00Z")));
        assert_eq!(h.parse_millis("2022-11-01 13:05 PM", &u), None);
        assert_eq!(h.parse_millis("2022-11-01 00:05 AM", &u), None);
        assert_eq!(h.format_millis(at("2022-11-01T00:05:00Z"), &u), "2022-11-01 12:05 AM");
        assert_eq!(h.format_millis(at("2022-11-01T13:05:00Z"), &u), "2022-11-01 01:05 PM");
    }

    #[test]
    fn pattern_offset_letters() {
        let u = utc();
        let t = at("2022-11-01T10:00:00Z");
        let z = fmt("yyyy-MM-dd HH:mm Z");
        assert_eq!(z.parse_millis("2022-11-01 11:00 +0100", &u), Some(t));
        assert_eq!(z.format_millis(t, &u), "2022-11-01 10:00 +0000");
        assert_eq!(z.format_millis(t, &tz("-05:30")), "2022-11-01 04:30 -0530");
        let x = fmt("yyyy-MM-dd HH:mm X");
        assert_eq!(x.parse_millis("2022-11-01 11:00 +01", &u), Some(t));
        assert_eq!(x.format_millis(t, &u), "2022-11-01 10:00 Z");
        assert_eq!(x.format_millis(t, &tz("+01:00")), "2022-11-01 11:00 +01");
        assert_eq!(x.format_millis(t, &tz("+05:30")), "2022-11-01 15:30 +0530");
        let xx = fmt("yyyy-MM-dd HH:mmXX");
        assert_eq!(xx.parse_millis("2022-11-01 10:00Z", &u), Some(t));
        assert_eq!(xx.format_millis(t, &tz("+01:00")), "2022-11-01 11:00+0100");
        let xxx = fmt("yyyy-MM-dd'T'HH:mmXXX");
        assert_eq!(xxx.parse_millis("2022-11-01T11:00+01:00", &u), Some(t));
        assert_eq!(xxx.format_millis(t, &u), "2022-11-01T10:00Z");
        assert_eq!(xxx.format_millis(t, &tz("-03:00")), "2022-11-01T07:00-03:00");
        assert_eq!(fmt("HH:mm xxx").format_millis(t, &u), "10:00 +00:00");
        assert_eq!(fmt("HH:mm ZZZZZ").format_millis(t, &u), "10:00 Z");
        // The offset in the value wins over the tz param.
        assert_eq!(z.parse_millis("2022-11-01 11:00 +0100", &tz("Asia/Tokyo")), Some(t));
    }

    #[test]
    fn pattern_literals_and_optional_sections() {
        let u = utc();
        let q = fmt("yyyy-MM-dd'T'HH:mm 'o''clock' ''");
        assert_eq!(
            q.parse_millis("2022-11-01T10:15 o'clock '", &u),
            Some(at("2022-11-01T10:15:00Z"))
        );
        assert_eq!(q.format_millis(at("2022-11-01T10:15:00Z"), &u), "2022-11-01T10:15 o'clock '");
        let o = fmt("yyyy-MM-dd[ HH:mm[:ss]]");
        assert_eq!(o.parse_millis("2022-11-01", &u), Some(1_667_260_800_000));
        assert_eq!(o.parse_millis("2022-11-01 10:15", &u), Some(at("2022-11-01T10:15:00Z")));
        assert_eq!(o.parse_millis("2022-11-01 10:15:30", &u), Some(at("2022-11-01T10:15:30Z")));
        assert_eq!(o.parse_millis("2022-11-01 10", &u), None);
        assert_eq!(o.format_millis(at("2022-11-01T10:15:30Z"), &u), "2022-11-01 10:15:30");
        let punct = fmt("yyyy.MM.dd,HH-mm|ss");
        assert_eq!(punct.parse_millis("2022.11.01,10-15|30", &u), Some(at("2022-11-01T10:15:30Z")));
        let uni = fmt("yyyy年MM月dd日");
        assert_eq!(uni.parse_millis("2022年11月01日", &u), Some(1_667_260_800_000));
        assert_eq!(uni.format_millis(1_667_260_800_000, &u), "2022年11月01日");
        assert_eq!(uni.parse_millis("2022年11月01", &u), None);
    }

    #[test]
    fn twitter_format() {
        let f = fmt("EEE MMM dd HH:mm:ss Z yyyy");
        let u = utc();
        assert_eq!(
            f.parse_millis("Wed Aug 27 13:08:45 +0000 2008", &u),
            Some(at("2008-08-27T13:08:45Z"))
        );
        assert_eq!(
            f.parse_millis("Tue Nov 01 09:05:07 +0100 2022", &u),
            Some(at("2022-11-01T08:05:07Z"))
        );
        assert_eq!(
            f.format_millis(at("2008-08-27T13:08:45Z"), &u),
            "Wed Aug 27 13:08:45 +0000 2008"
        );
        assert_eq!(
            f.format_millis(at("2022-11-01T08:05:07Z"), &tz("+01:00")),
            "Tue Nov 01 09:05:07 +0100 2022"
        );
        assert_eq!(f.parse_millis("Wed Aug 27 13:08:45 +0000 2008 ", &u), None);
        assert_eq!(f.parse_millis("Wed Aug 27 13:08:45 2008", &u), None);
        let with_default =
            fmt("EEE MMM dd HH:mm:ss Z yyyy||strict_date_optional_time||epoch_millis");
        assert_eq!(with_default.parse_millis("2022-11-01", &u), Some(1_667_260_800_000));
        assert_eq!(with_default.parse_millis("1667260800000", &u), Some(1_667_260_800_000));
    }

    #[test]
    fn format_spec_errors() {
        let msg = |s: &str| DateFormat::parse(s).err().map(|e| e.0).unwrap_or_default();
        assert!(msg("strict_foo_bar").contains("unknown date format [strict_foo_bar]"));
        assert!(msg("yyyy-MM-dd Q").contains("unsupported pattern letter 'Q'"));
        assert!(msg("yyyy-MM-dd'T").contains("unterminated"));
        assert!(msg("yyyy[-MM").contains("unclosed"));
        assert!(msg("yyyy]").contains("unmatched"));
        assert!(msg("yyyy{").contains("reserved"));
        assert!(msg("").contains("empty"));
        assert!(msg("yyyy||").contains("empty alternative"));
        assert!(msg("MMMMM").contains("MMMMM"));
        assert!(msg("ZZZZ").contains("ZZZZ"));
        assert!(msg("HHH").contains("HHH"));
        assert!(msg("k").contains("'k'"));
        assert_eq!(fmt("  date ||  epoch_millis ").spec(), "date||epoch_millis");
    }

    // ---- time zones ----

    #[test]
    fn time_zone_parse_and_spec() {
        for (s, secs, spec) in [
            ("Z", 0, "Z"),
            ("UTC", 0, "Z"),
            ("GMT", 0, "Z"),
            ("+00:00", 0, "Z"),
            ("+01:00", 3600, "+01:00"),
            ("-0530", -19800, "-05:30"),
            ("+01", 3600, "+01:00"),
            ("+1", 3600, "+01:00"),
            ("-08:00", -28800, "-08:00"),
            ("UTC+02:00", 7200, "+02:00"),
            ("GMT-3", -10800, "-03:00"),
            ("+18:00", 64800, "+18:00"),
            ("+01:00:30", 3630, "+01:00:30"),
        ] {
            let z = tz(s);
            assert_eq!(z, TimeZone::Fixed(secs), "{s}");
            assert_eq!(z.spec(), spec, "{s}");
            assert_eq!(z.offset_seconds_at(0), secs);
        }
        let l = london();
        assert_eq!(l.spec(), "Europe/London");
        assert_eq!(l.offset_seconds_at(at("2022-07-01T00:00:00Z")), 3600);
        assert_eq!(l.offset_seconds_at(at("2022-12-01T00:00:00Z")), 0);
        assert_eq!(l.offset_seconds_at(at("2022-03-27T00:59:59.999Z")), 0);
        assert_eq!(l.offset_seconds_at(at("2022-03-27T01:00:00Z")), 3600);
        assert_eq!(tz("Asia/Kolkata").offset_seconds_at(0), 19800);
        assert_eq!(l.offset_seconds_at(i64::MAX), 0);
        for bad in
            ["", "+19:00", "+25", "+01:60", "Mars/Base", "europe/london", "+1:00", "+", "UTC+", "€"]
        {
            assert!(TimeZone::parse(bad).is_err(), "{bad:?}");
        }
        assert!(
            TimeZone::parse("Mars/Base")
                .err()
                .map(|e| e.0)
                .unwrap_or_default()
                .contains("Mars/Base")
        );
    }

    // ---- intervals ----

    #[test]
    fn calendar_unit_parse() {
        for (s, u) in [
            ("minute", CalendarUnit::Minute),
            ("1m", CalendarUnit::Minute),
            ("hour", CalendarUnit::Hour),
            ("1h", CalendarUnit::Hour),
            ("day", CalendarUnit::Day),
            ("1d", CalendarUnit::Day),
            ("week", CalendarUnit::Week),
            ("1w", CalendarUnit::Week),
            ("month", CalendarUnit::Month),
            ("1M", CalendarUnit::Month),
            ("quarter", CalendarUnit::Quarter),
            ("1q", CalendarUnit::Quarter),
            ("year", CalendarUnit::Year),
            ("1y", CalendarUnit::Year),
        ] {
            assert_eq!(CalendarUnit::parse(s), Ok(u), "{s}");
            assert_eq!(CalendarUnit::parse(u.canonical()), Ok(u));
        }
        for bad in ["2d", "", "days", "1D", "30s", "1s", "0d"] {
            let e = CalendarUnit::parse(bad).err().map(|e| e.0).unwrap_or_default();
            assert!(e.contains("fixed_interval") && e.contains("single unit"), "{bad}: {e}");
        }
    }

    #[test]
    fn fixed_intervals() {
        for (s, ms) in [
            ("30s", 30_000),
            ("5m", 300_000),
            ("2h", 7_200_000),
            ("1d", 86_400_000),
            ("1500ms", 1500),
            ("90m", 5_400_000),
            (" 1h ", 3_600_000),
        ] {
            assert_eq!(parse_fixed_interval(s), Ok(ms), "{s}");
        }
        let err = |s: &str| parse_fixed_interval(s).err().map(|e| e.0).unwrap_or_default();
        for cal in ["1w", "1M", "1q", "1y"] {
            assert!(err(cal).contains("calendar_interval"), "{cal}");
        }
        assert!(err("0s").contains("positive"));
        assert!(err("-1h").contains("positive"));
        assert!(err("1.5h").contains("fractional"));
        assert!(err("h").contains("integer"));
        assert!(err("10").contains("missing unit"));
        assert!(err("10x").contains("unknown unit"));
        assert!(err("99999999999999999999d").contains("too large"));
        assert!(err("999999999999999d").contains("too large"));
        assert!(parse_fixed_interval("1hé").is_err());
        assert_eq!(fixed_interval_spec(3_600_000), "1h");
        assert_eq!(fixed_interval_spec(5_400_000), "90m");
        assert_eq!(fixed_interval_spec(1500), "1500ms");
        assert_eq!(fixed_interval_spec(86_400_000 * 7), "7d");
        assert_eq!(fixed_interval_spec(30_000), "30s");
        assert_eq!(fixed_interval_spec(0), "0ms");
        for ms in [1, 999, 1000, 61_000, 3_600_000, 5_400_000, 90_000_000] {
            assert_eq!(parse_fixed_interval(&fixed_interval_spec(ms)), Ok(ms));
        }
    }

    #[test]
    fn offsets() {
        assert_eq!(parse_offset("+6h"), Ok(6 * 3_600_000));
        assert_eq!(parse_offset("-30m"), Ok(-1_800_000));
        assert_eq!(parse_offset("1d"), Ok(86_400_000));
        assert_eq!(parse_offset("0"), Ok(0));
        assert_eq!(parse_offset("-0s"), Ok(0));
        assert_eq!(parse_offset("+1500ms"), Ok(1500));
        assert!(parse_offset("").is_err());
        assert!(parse_offset("+").is_err());
        assert!(parse_offset("6").is_err());
        assert!(parse_offset("1M").is_err());
        assert!(parse_offset("--1h").is_err());
    }

    // ---- rounding ----

    #[test]
    fn calendar_floor_and_next_every_unit_utc() {
        let u = utc();
        let t = at("2022-11-16T13:47:21.345Z"); // a Wednesday
        let cases = [
            (CalendarUnit::Minute, "2022-11-16T13:47:00Z", "2022-11-16T13:48:00Z"),
            (CalendarUnit::Hour, "2022-11-16T13:00:00Z", "2022-11-16T14:00:00Z"),
            (CalendarUnit::Day, "2022-11-16T00:00:00Z", "2022-11-17T00:00:00Z"),
            (CalendarUnit::Week, "2022-11-14T00:00:00Z", "2022-11-21T00:00:00Z"),
            (CalendarUnit::Month, "2022-11-01T00:00:00Z", "2022-12-01T00:00:00Z"),
            (CalendarUnit::Quarter, "2022-10-01T00:00:00Z", "2023-01-01T00:00:00Z"),
            (CalendarUnit::Year, "2022-01-01T00:00:00Z", "2023-01-01T00:00:00Z"),
        ];
        for (unit, floor, next) in cases {
            let f = calendar_floor(t, unit, &u);
            assert_eq!(f, at(floor), "{unit:?}");
            assert_eq!(calendar_next(f, unit, &u), at(next), "{unit:?}");
            assert_eq!(calendar_floor(f, unit, &u), f, "{unit:?} idempotent");
        }
        // Monday stays on itself; Sunday goes back six days.
        let mon = at("2022-10-31T05:00:00Z");
        assert_eq!(calendar_floor(mon, CalendarUnit::Week, &u), at("2022-10-31T00:00:00Z"));
        let sun = at("2022-11-06T23:59:59.999Z");
        assert_eq!(calendar_floor(sun, CalendarUnit::Week, &u), at("2022-10-31T00:00:00Z"));
        // Quarters.
        for (d, q) in [
            ("2022-01-01T00:00:00Z", "2022-01-01T00:00:00Z"),
            ("2022-03-31T23:59:59Z", "2022-01-01T00:00:00Z"),
            ("2022-04-01T00:00:00Z", "2022-04-01T00:00:00Z"),
            ("2022-06-15T00:00:00Z", "2022-04-01T00:00:00Z"),
            ("2022-07-15T00:00:00Z", "2022-07-01T00:00:00Z"),
            ("2022-09-30T00:00:00Z", "2022-07-01T00:00:00Z"),
            ("2022-12-31T23:00:00Z", "2022-10-01T00:00:00Z"),
        ] {
            assert_eq!(calendar_floor(at(d), CalendarUnit::Quarter, &u), at(q), "{d}");
        }
        assert_eq!(
            calendar_next(at("2022-10-01T00:00:00Z"), CalendarUnit::Quarter, &u),
            at("2023-01-01T00:00:00Z")
        );
        assert_eq!(
            calendar_next(at("2022-01-31T00:00:00Z"), CalendarUnit::Month, &u),
            at("2022-02-01T00:00:00Z")
        );
        assert_eq!(
            calendar_next(at("2024-02-01T00:00:00Z"), CalendarUnit::Month, &u),
            at("2024-03-01T00:00:00Z")
        );
    }

    #[test]
    fn calendar_floor_before_1970() {
        let u = utc();
        assert_eq!(calendar_floor(-1, CalendarUnit::Day, &u), -86_400_000);
        assert_eq!(calendar_floor(-1, CalendarUnit::Minute, &u), -60_000);
        assert_eq!(calendar_floor(-1, CalendarUnit::Hour, &u), -3_600_000);
        assert_eq!(calendar_floor(-1, CalendarUnit::Year, &u), at("1969-01-01T00:00:00Z"));
        assert_eq!(calendar_floor(-1, CalendarUnit::Week, &u), at("1969-12-29T00:00:00Z"));
        assert_eq!(calendar_floor(-1, CalendarUnit::Quarter, &u), at("1969-10-01T00:00:00Z"));
        let t = at("1905-06-15T12:34:56.789Z");
        assert_eq!(calendar_floor(t, CalendarUnit::Month, &u), at("1905-06-01T00:00:00Z"));
        assert_eq!(calendar_floor(t, CalendarUnit::Day, &u), at("1905-06-15T00:00:00Z"));
        assert_eq!(calendar_floor(t, CalendarUnit::Minute, &u), at("1905-06-15T12:34:00Z"));
        assert_eq!(calendar_next(at("1969-12-01T00:00:00Z"), CalendarUnit::Month, &u), 0);
        assert_eq!(fixed_floor(-1, 3_600_000, 0, &u), -3_600_000);
        assert_eq!(fixed_floor(-3_600_000, 3_600_000, 0, &u), -3_600_000);
    }

    #[test]
    fn calendar_fixed_offset_zone() {
        let z = tz("+05:30");
        let t = at("2022-11-16T20:00:00Z"); // 01:30 on the 17th local
        assert_eq!(calendar_floor(t, CalendarUnit::Day, &z), at("2022-11-16T18:30:00Z"));
        assert_eq!(
            calendar_next(at("2022-11-16T18:30:00Z"), CalendarUnit::Day, &z),
            at("2022-11-17T18:30:00Z")
        );
        assert_eq!(calendar_floor(t, CalendarUnit::Hour, &z), at("2022-11-16T19:30:00Z"));
        assert_eq!(calendar_floor(t, CalendarUnit::Month, &z), at("2022-10-31T18:30:00Z"));
        let ny = tz("-05:00");
        assert_eq!(
            calendar_floor(at("2022-01-01T03:00:00Z"), CalendarUnit::Year, &ny),
            at("2021-01-01T05:00:00Z")
        );
    }

    #[test]
    fn calendar_days_across_london_dst() {
        let l = london();
        let d = CalendarUnit::Day;
        // Spring forward 2022-03-27 01:00Z: a 23h local day.
        let start = calendar_floor(at("2022-03-27T12:00:00Z"), d, &l);
        assert_eq!(start, at("2022-03-27T00:00:00Z"));
        assert_eq!(calendar_next(start, d, &l), at("2022-03-27T23:00:00Z"));
        assert_eq!(calendar_floor(at("2022-03-27T23:30:00Z"), d, &l), at("2022-03-27T23:00:00Z"));
        assert_eq!(calendar_floor(at("2022-03-26T23:30:00Z"), d, &l), at("2022-03-26T00:00:00Z"));
        // Fall back 2022-10-30 01:00Z: a 25h local day.
        let start = calendar_floor(at("2022-10-30T12:00:00Z"), d, &l);
        assert_eq!(start, at("2022-10-29T23:00:00Z"));
        assert_eq!(calendar_next(start, d, &l), at("2022-10-31T00:00:00Z"));
        assert_eq!(calendar_floor(at("2022-10-30T00:30:00Z"), d, &l), at("2022-10-29T23:00:00Z"));
        assert_eq!(calendar_floor(at("2022-10-30T01:30:00Z"), d, &l), at("2022-10-29T23:00:00Z"));
        assert_eq!(
            calendar_floor(at("2022-10-29T22:59:59.999Z"), d, &l),
            at("2022-10-28T23:00:00Z")
        );
        // Month and week in summer time.
        assert_eq!(
            calendar_floor(at("2022-07-15T00:00:00Z"), CalendarUnit::Month, &l),
            at("2022-06-30T23:00:00Z")
        );
        assert_eq!(
            calendar_floor(at("2022-11-01T00:00:00Z"), CalendarUnit::Month, &l),
            at("2022-11-01T00:00:00Z")
        );
        assert_eq!(
            calendar_next(at("2022-10-01T00:00:00+01:00"), CalendarUnit::Month, &l),
            at("2022-11-01T00:00:00Z")
        );
        assert_eq!(
            calendar_floor(at("2022-10-30T12:00:00Z"), CalendarUnit::Week, &l),
            at("2022-10-23T23:00:00Z")
        );
        assert_eq!(
            calendar_next(at("2022-10-23T23:00:00Z"), CalendarUnit::Week, &l),
            at("2022-10-31T00:00:00Z")
        );
    }

    #[test]
    fn calendar_hours_across_london_dst() {
        let l = london();
        let h = CalendarUnit::Hour;
        // Fall back: 01:00-02:00 local happens twice; each UTC hour is its own bucket.
        assert_eq!(calendar_floor(at("2022-10-30T00:30:00Z"), h, &l), at("2022-10-30T00:00:00Z"));
        assert_eq!(calendar_floor(at("2022-10-30T01:30:00Z"), h, &l), at("2022-10-30T01:00:00Z"));
        assert_eq!(calendar_next(at("2022-10-30T00:00:00Z"), h, &l), at("2022-10-30T01:00:00Z"));
        assert_eq!(calendar_next(at("2022-10-30T01:00:00Z"), h, &l), at("2022-10-30T02:00:00Z"));
        // Spring forward.
        assert_eq!(calendar_floor(at("2022-03-27T00:30:00Z"), h, &l), at("2022-03-27T00:00:00Z"));
        assert_eq!(calendar_floor(at("2022-03-27T01:30:00Z"), h, &l), at("2022-03-27T01:00:00Z"));
        assert_eq!(calendar_next(at("2022-03-27T00:00:00Z"), h, &l), at("2022-03-27T01:00:00Z"));
        // Half-hour zone.
        let k = tz("Asia/Kolkata");
        assert_eq!(calendar_floor(at("2022-11-16T20:00:00Z"), h, &k), at("2022-11-16T19:30:00Z"));
        assert_eq!(
            calendar_floor(at("2022-11-16T20:00:30Z"), CalendarUnit::Minute, &k),
            at("2022-11-16T20:00:00Z")
        );
    }

    #[test]
    fn fixed_floor_cases() {
        let u = utc();
        let t = at("2022-11-16T13:47:21Z");
        assert_eq!(fixed_floor(t, 3_600_000, 0, &u), at("2022-11-16T13:00:00Z"));
        assert_eq!(fixed_floor(t, 30 * 60_000, 0, &u), at("2022-11-16T13:30:00Z"));
        assert_eq!(fixed_floor(t, 86_400_000, 0, &u), at("2022-11-16T00:00:00Z"));
        // offset +6h: buckets start at 06:00.
        assert_eq!(fixed_floor(t, 86_400_000, 6 * 3_600_000, &u), at("2022-11-16T06:00:00Z"));
        assert_eq!(
            fixed_floor(at("2022-11-16T05:00:00Z"), 86_400_000, 6 * 3_600_000, &u),
            at("2022-11-15T06:00:00Z")
        );
        // offset -30m on hours.
        assert_eq!(fixed_floor(t, 3_600_000, -30 * 60_000, &u), at("2022-11-16T13:30:00Z"));
        assert_eq!(
            fixed_floor(at("2022-11-16T13:10:00Z"), 3_600_000, -30 * 60_000, &u),
            at("2022-11-16T12:30:00Z")
        );
        // Fixed zone: days start at local midnight.
        let z = tz("+01:00");
        assert_eq!(fixed_floor(t, 86_400_000, 0, &z), at("2022-11-15T23:00:00Z"));
        assert_eq!(fixed_floor(t, 86_400_000, 3_600_000, &z), at("2022-11-16T00:00:00Z"));
        // 3h buckets in local +05:30 time.
        let k = tz("+05:30");
        assert_eq!(fixed_floor(t, 3 * 3_600_000, 0, &k), at("2022-11-16T12:30:00Z"));
        // Degenerate interval.
        assert_eq!(fixed_floor(t, 0, 0, &u), t);
        assert_eq!(fixed_floor(t, -5, 0, &u), t);
    }

    #[test]
    fn fixed_floor_named_zone() {
        let l = london();
        let day = 86_400_000;
        // Summer: local midnight is 23:00Z.
        assert_eq!(fixed_floor(at("2022-07-15T12:00:00Z"), day, 0, &l), at("2022-07-14T23:00:00Z"));
        assert_eq!(
            fixed_floor(at("2022-07-15T12:00:00Z"), 3_600_000, 0, &l),
            at("2022-07-15T12:00:00Z")
        );
        // Spring-forward day: never rounds back across the 01:00Z transition.
        assert_eq!(fixed_floor(at("2022-03-27T12:00:00Z"), day, 0, &l), at("2022-03-27T00:00:00Z"));
        assert_eq!(
            fixed_floor(at("2022-03-27T12:00:00Z"), 12 * 3_600_000, 0, &l),
            at("2022-03-27T11:00:00Z")
        );
        assert_eq!(
            fixed_floor(at("2022-03-27T05:00:00Z"), 12 * 3_600_000, 0, &l),
            at("2022-03-27T00:00:00Z")
        );
        assert_eq!(fixed_floor(at("2022-03-28T12:00:00Z"), day, 0, &l), at("2022-03-27T23:00:00Z"));
        // Fall-back day: the second 01:xx hour.
        assert_eq!(
            fixed_floor(at("2022-10-30T01:30:00Z"), 3_600_000, 0, &l),
            at("2022-10-30T01:00:00Z")
        );
        assert_eq!(
            fixed_floor(at("2022-10-30T00:30:00Z"), 3_600_000, 0, &l),
            at("2022-10-30T00:00:00Z")
        );
        // Like ES: rounding back to local midnight would cross the 01:00Z transition, so it
        // rounds from just before it, giving the BST midnight (a 25h bucket).
        assert_eq!(fixed_floor(at("2022-10-30T12:00:00Z"), day, 0, &l), at("2022-10-29T23:00:00Z"));
        assert_eq!(fixed_floor(at("2022-10-31T00:30:00Z"), day, 0, &l), at("2022-10-31T00:00:00Z"));
        // With an offset.
        assert_eq!(
            fixed_floor(at("2022-07-15T12:00:00Z"), day, 6 * 3_600_000, &l),
            at("2022-07-15T05:00:00Z")
        );
    }

    #[test]
    fn extreme_inputs_do_not_panic() {
        let zones = [utc(), london(), tz("+14:00"), tz("-12:00")];
        let f = DateFormat::default_format();
        for t in
            [i64::MIN, i64::MIN + 1, -8_210_298_412_800_001, 0, 8_210_298_412_800_000, i64::MAX]
        {
            for z in &zones {
                for unit in [
                    CalendarUnit::Minute,
                    CalendarUnit::Hour,
                    CalendarUnit::Day,
                    CalendarUnit::Week,
                    CalendarUnit::Month,
                    CalendarUnit::Quarter,
                    CalendarUnit::Year,
                ] {
                    let fl = calendar_floor(t, unit, z);
                    assert!(fl <= t);
                    let _ = calendar_next(fl, unit, z);
                }
                let _ = fixed_floor(t, 7, i64::MAX, z);
                let _ = fixed_floor(t, i64::MAX, i64::MIN, z);
                let _ = f.format_millis(t, z);
                let _ = fmt("EEE MMM yy hh a X").format_millis(t, z);
                let _ = fmt("epoch_second").format_millis(t, z);
            }
        }
        assert_eq!(
            fmt("epoch_millis").parse_millis("-9223372036854775808", &utc()),
            Some(i64::MIN)
        );
        assert_eq!(fmt("epoch_millis").parse_millis("9223372036854775808", &utc()), None);
        assert_eq!(fmt("epoch_second").parse_millis("9223372036854775807", &utc()), None);
        assert_eq!(fmt("yyyy").parse_millis("999999999", &utc()), None);
        assert_eq!(f.parse_millis("+999999999-01-01", &utc()), None);
    }

    fn zone_strategy() -> impl Strategy<Value = TimeZone> {
        prop_oneof![
            Just(TimeZone::utc()),
            (-18 * 3600..=18 * 3600i32).prop_map(|s| TimeZone::Fixed(s / 60 * 60)),
            Just(TimeZone::Named(chrono_tz::Europe::London)),
            Just(TimeZone::Named(chrono_tz::America::New_York)),
            Just(TimeZone::Named(chrono_tz::Asia::Kolkata)),
            Just(TimeZone::Named(chrono_tz::Australia::Lord_Howe)),
            Just(TimeZone::Named(chrono_tz::Europe::Berlin)),
        ]
    }

    fn unit_strategy() -> impl Strategy<Value = CalendarUnit> {
        prop_oneof![
            Just(CalendarUnit::Minute),
            Just(CalendarUnit::Hour),
            Just(CalendarUnit::Day),
            Just(CalendarUnit::Week),
            Just(CalendarUnit::Month),
            Just(CalendarUnit::Quarter),
            Just(CalendarUnit::Year),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn default_format_round_trips(ms in -2_000_000_000_000i64..=4_000_000_000_000i64, z in zone_strategy()) {
            let f = DateFormat::default_format();
            let s = f.format_millis(ms, &z);
            prop_assert_eq!(f.parse_millis(&s, &z), Some(ms), "{}", s);
            prop_assert_eq!(f.parse_millis(&s, &TimeZone::utc()), Some(ms), "{}", s);
        }

        #[test]
        fn calendar_floor_brackets(ms in -2_000_000_000_000i64..=4_000_000_000_000i64, z in zone_strategy(), unit in unit_strategy()) {
            let fl = calendar_floor(ms, unit, &z);
            let next = calendar_next(fl, unit, &z);
            prop_assert!(fl <= ms, "floor {} > {}", fl, ms);
            prop_assert!(ms < next, "next {} <= {}", next, ms);
            prop_assert_eq!(calendar_floor(fl, unit, &z), fl);
            prop_assert_eq!(calendar_floor(next, unit, &z), next);
        }

        #[test]
        fn fixed_floor_brackets(ms in -2_000_000_000_000i64..=4_000_000_000_000i64, z in zone_strategy(),
                                interval in prop_oneof![Just(1000i64), Just(60_000), Just(900_000), Just(3_600_000), Just(10_800_000), Just(86_400_000)],
                                offset in -86_400_000i64..86_400_000) {
            let fl = fixed_floor(ms, interval, offset, &z);
            prop_assert!(fl <= ms);
            prop_assert!(ms - fl < interval + 3_600_000);
            prop_assert_eq!(fixed_floor(fl, interval, offset, &z), fl);
        }

        #[test]
        fn other_formats_round_trip(ms in -2_000_000_000_000i64..=4_000_000_000_000i64, z in zone_strategy(),
                                    spec in prop_oneof![Just("strict_date_time"), Just("date_time"), Just("epoch_second"),
                                                        Just("epoch_millis"), Just("EEE MMM dd HH:mm:ss.SSS Z yyyy"),
                                                        Just("yyyy-MM-dd hh:mm:ss.SSS a XXX"), Just("basic_date_time")]) {
            let f = fmt(spec);
            let s = f.format_millis(ms, &z);
            prop_assert_eq!(f.parse_millis(&s, &z), Some(ms), "{} {}", spec, s);
        }

        #[test]
        fn no_panics_on_strings(s in "\\PC{0,40}", p in "[a-zA-Z'\\[\\]:. +-]{0,12}") {
            let zones = [TimeZone::utc(), TimeZone::Named(chrono_tz::Europe::London)];
            for spec in ["strict_date_optional_time||epoch_millis", "date_optional_time", "epoch_second", "EEE MMM dd HH:mm:ss Z yyyy", "yyyyMMddHHmmssSSS"] {
                for z in &zones {
                    let _ = fmt(spec).parse_millis(&s, z);
                }
            }
            if let Ok(f) = DateFormat::parse(&p) {
                let _ = f.parse_millis(&s, &TimeZone::utc());
                let _ = f.format_millis(0, &TimeZone::utc());
            }
            let _ = DateFormat::parse(&s);
            let _ = TimeZone::parse(&s);
            let _ = CalendarUnit::parse(&s);
            let _ = parse_fixed_interval(&s);
            let _ = parse_offset(&s);
        }

        #[test]
        fn no_panics_on_numbers(t in any::<i64>(), i in any::<i64>(), o in any::<i64>(), n in any::<f64>(), z in zone_strategy(), unit in unit_strategy()) {
            let f = DateFormat::default_format();
            let _ = f.format_millis(t, &z);
            let _ = f.number_to_millis(n);
            let _ = fixed_floor(t, i, o, &z);
            let fl = calendar_floor(t, unit, &z);
            prop_assert!(fl <= t);
            let _ = calendar_next(t, unit, &z);
            let _ = fixed_interval_spec(i);
            let _ = z.offset_seconds_at(t);
        }
    }
}
