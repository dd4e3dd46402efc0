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
            if let Some(rest) = t.strip_prefix(prefix)
                && (rest.starts_with('+') || rest.starts_with('-'))
            {
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
    /// new offset), if any. Scans back a day at a time, so two transitions within one day may
    /// be seen as one.
    fn last_transition_between(&self, lo: i64, hi: i64) -> Option<i64> {
        if matches!(self, TimeZone::Fixed(_)) || hi <= lo {
            return None;
        }
        let mut seg_hi = hi;
        loop {
            let seg_lo = seg_hi.saturating_sub(MS_PER_DAY).max(lo);
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

/// One element of a parsed pattern.
#[derive(Debug, Clone, PartialEq)]
enum Item {
    /// Literal text (matched case-sensitively).
    Lit(String),
    /// Numeric field: parse `min..=max` digits, print zero-padded to `pad`.
    Num { field: Field, min: usize, max: usize, pad: usize },
    /// Year: parse `min..=max` digits (or a sign and up to 9 digits when `signed`); print padded
    /// to `pad`, with `+` beyond `pad` digits when `pad >= 4` (java.time `EXCEEDS_PAD`).
    Year { min: usize, max: usize, pad: usize, signed: bool },
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
            Item::Year { min, max, signed: false, .. } if min == max => Some(*min),
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
        self.alts.iter().find_map(|alt| match alt {
            Alt::EpochMillis => parse_epoch(s, false),
            Alt::EpochSecond => parse_epoch(s, true),
            Alt::Pattern { parse, .. } => {
                let mut p = Parsed::default();
                let end = parse_seq(parse, s.as_bytes(), 0, &mut p)?;
                if end != s.len() {
                    return None;
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
        signed: true,
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
        Item::Year { min: 4, max: 4, pad: 4, signed: false },
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
            1 => Some(Item::Year { min: 1, max: 9, pad: 1, signed: false }),
            2 => Some(Item::Year2),
            3..=9 => Some(Item::Year { min: n, max: 9, pad: n, signed: n >= 4 }),
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
        if let Some(wd) = self.weekday
            && wd != date.weekday().num_days_from_monday()
        {
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
            Item::Year { min, max, signed, .. } => {
                let sign = match b.get(pos) {
                    Some(b'+') if *signed => Some(1),
                    Some(b'-') if *signed => Some(-1),
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
