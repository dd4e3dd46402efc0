//! Intervals: calendar units, fixed intervals and offsets as Elasticsearch writes them.

use super::*;

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
