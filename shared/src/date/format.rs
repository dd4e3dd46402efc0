//! Date formats: named formats and patterns as trees of items, how values parse against them
//! and how instants print.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use std::fmt::Write as _;

use super::*;

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

    /// [`DateFormat::default_format`], parsed once (the folds read it per record).
    pub(crate) fn default_ref() -> &'static DateFormat {
        static DEFAULT: std::sync::LazyLock<DateFormat> =
            std::sync::LazyLock::new(DateFormat::default_format);
        &DEFAULT
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
