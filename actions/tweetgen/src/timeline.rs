//! Timestamps: an inhomogeneous rate over the span (daily rhythm, a tournament that grows
//! towards its final weekend, match bursts), turned into a cumulative table so that record `i`
//! gets its timestamp by inverse-CDF lookup, independently of any other record.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

const DAY_MS: i64 = 86_400_000;

/// Cumulative rate over fixed-width bins.
pub(crate) struct Timeline {
    start_ms: i64,
    span_ms: i64,
    bin_ms: i64,
    /// `cum[b]` = total rate of bins `0..b`; `cum.len() == bins + 1`.
    cum: Vec<f64>,
    total: u64,
}

fn unit(x: u64) -> f64 {
    (x >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

impl Timeline {
    pub(crate) fn new(seed: u64, start_ms: i64, span_ms: i64, total: u64) -> Self {
        let span_ms = span_ms.max(1);
        let bin_ms = if span_ms >= 60_000 * 1_000 { 60_000 } else { (span_ms / 1_000).max(1) };
        let bins = ((span_ms + bin_ms - 1) / bin_ms) as usize;
        let days = ((span_ms + DAY_MS - 1) / DAY_MS).max(1);

        // Match bursts: per day, 4-8 windows of 10-60 minutes at 3-8x the rate.
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xb125_7a11_0000_0001);
        let mut bursts: Vec<(i64, i64, f64)> = Vec::new();
        for d in 0..days {
            let n = 4 + rng.next_u64() % 5;
            for _ in 0..n {
                let at = d * DAY_MS + (10.5 * 3.6e6 + unit(rng.next_u64()) * 9.5 * 3.6e6) as i64;
                let len = (10.0 * 60_000.0 + unit(rng.next_u64()) * 50.0 * 60_000.0) as i64;
                let mult = 3.0 + unit(rng.next_u64()) * 5.0;
                bursts.push((at, at + len, mult));
            }
        }

        let mut cum = Vec::with_capacity(bins + 1);
        cum.push(0.0);
        let mut acc = 0.0f64;
        for b in 0..bins {
            // Offset from the start, in ms, of the middle of the bin; rhythm by UTC time of day.
            let mid = b as i64 * bin_ms + bin_ms / 2;
            let abs = start_ms + mid;
            let hour = abs.rem_euclid(DAY_MS) as f64 / 3.6e6;
            // Lowest around 03:00 UTC, highest around 16:00 UTC (play on the courts).
            let wave = 0.5 * (1.0 - ((hour - 4.0) / 24.0 * std::f64::consts::TAU).cos());
            let mut rate = 0.2 + wave * wave;
            let day = mid / DAY_MS;
            rate *= 1.0 + 0.05 * day as f64;
            if days >= 3 && day >= days - 2 {
                rate *= 1.6; // finals weekend
            }
            // Overlapping bursts do not compound: the strongest wins.
            let burst = bursts
                .iter()
                .filter(|&&(s, e, _)| mid >= s && mid < e)
                .map(|&(_, _, m)| m)
                .fold(1.0f64, f64::max);
            rate *= burst;
            acc += rate;
            cum.push(acc);
        }
        Timeline { start_ms, span_ms, bin_ms, cum, total: total.max(1) }
    }

    /// Timestamp of record `i`: non-decreasing in `i`, within `[start, start + span)` for
    /// `i < total`; later records repeat the pattern over the following spans.
    pub(crate) fn at(&self, i: u64) -> i64 {
        let cycle = (i / self.total) as i64;
        let k = i % self.total;
        let total_rate = *self.cum.last().unwrap_or(&1.0);
        let pos = (k as f64 + 0.5) / self.total as f64 * total_rate;
        // Bin b with cum[b] <= pos < cum[b + 1].
        let b = self.cum.partition_point(|&c| c <= pos).saturating_sub(1).min(self.cum.len() - 2);
        let w = self.cum[b + 1] - self.cum[b];
        let frac = if w > 0.0 { ((pos - self.cum[b]) / w).clamp(0.0, 1.0) } else { 0.0 };
        let within = ((frac * self.bin_ms as f64) as i64).min(self.bin_ms - 1);
        let off = (b as i64 * self.bin_ms + within).min(self.span_ms - 1);
        self.start_ms + cycle * self.span_ms + off
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] =
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// Writes `ms` (Unix epoch milliseconds) in Twitter's `created_at` format,
/// e.g. `Wed Jul 01 13:08:45 +0000 2026`.
pub(crate) fn write_created_at(ms: i64, out: &mut Vec<u8>) {
    use std::io::Write;
    let secs = ms.div_euclid(1_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let wd = WEEKDAYS[days.rem_euclid(7) as usize];
    let _ = write!(
        out,
        "{wd} {} {d:02} {:02}:{:02}:{:02} +0000 {y}",
        MONTHS[(m - 1) as usize],
        sod / 3_600,
        sod / 60 % 60,
        sod % 60
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_at_format() {
        let mut v = Vec::new();
        write_created_at(1_219_843_725_000, &mut v); // 2008-08-27T13:28:45Z
        assert_eq!(std::str::from_utf8(&v).unwrap(), "Wed Aug 27 13:28:45 +0000 2008");
        v.clear();
        write_created_at(1_782_691_200_000, &mut v);
        assert_eq!(std::str::from_utf8(&v).unwrap(), "Mon Jun 29 00:00:00 +0000 2026");
    }

    #[test]
    fn timeline_monotone_in_span() {
        let t = Timeline::new(7, 0, 14 * DAY_MS, 10_000);
        let mut last = i64::MIN;
        for i in 0..20_000 {
            let x = t.at(i);
            assert!(x >= last);
            if i < 10_000 {
                assert!((0..14 * DAY_MS).contains(&x));
            }
            last = x;
        }
    }
}
