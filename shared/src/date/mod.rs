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
//! - Time zones are either a fixed offset or an IANA zone, whose offsets come from the compiled-in
//!   tz database (`chrono-tz`, feature `tzdb`) or from the host (`zone.rs`). Local to UTC
//!   conversion follows `java.time.ZonedDateTime.ofLocal`: in an overlap the earlier instant, in a
//!   gap the local time is moved forward by the length of the gap.
//! - Bucket rounding follows Elasticsearch's `Rounding` classes: calendar units of a day or more
//!   round to the first instant of the local day (start of the gap when midnight does not exist,
//!   earlier instant when midnight is ambiguous); minute/hour calendar units and fixed intervals
//!   round in local time and never round back across an offset transition (they retry from just
//!   before the transition instead), which is what `TimeIntervalRounding` does.
//! - All arithmetic on user-supplied numbers is checked or saturating: no input panics. Instants
//!   outside chrono's range (about ±262,000 years) are treated as UTC and returned unrounded.
//!
//! One file per part: `zone.rs` (time zones), `format.rs` (formats: items, parsing, printing),
//! `interval.rs` (calendar units, fixed intervals, offsets), `rounding.rs` (buckets).

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

mod format;
mod interval;
mod rounding;
mod zone;

pub use format::*;
pub use interval::*;
pub use rounding::*;
pub use zone::*;

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;
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

    fn zone(name: &str) -> TimeZone {
        TimeZone::parse(name).expect("a zone of the tz database")
    }

    fn zone_strategy() -> impl Strategy<Value = TimeZone> {
        prop_oneof![
            Just(TimeZone::utc()),
            (-18 * 3600..=18 * 3600i32).prop_map(|s| TimeZone::Fixed(s / 60 * 60)),
            Just(zone("Europe/London")),
            Just(zone("America/New_York")),
            Just(zone("Asia/Kolkata")),
            Just(zone("Australia/Lord_Howe")),
            Just(zone("Europe/Berlin")),
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
            let zones = [TimeZone::utc(), zone("Europe/London")];
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
