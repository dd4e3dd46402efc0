//! Rounding instants to buckets, calendar and fixed, in a time zone.

use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveTime};

use super::*;

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
