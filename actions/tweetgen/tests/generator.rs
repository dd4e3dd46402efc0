//! Properties of the generated log. Needs the base tweets: run `scripts/fetch-tweets.sh` first
//! (or point `KAPPA_TWEETS` at a base.ndjson).

use kappa_tweetgen::{GenConfig, GeneratedRecord, TweetGen};
use serde_json::Value;
use std::sync::OnceLock;

const N: u64 = 20_000;

fn base() -> Vec<Value> {
    static BASE: OnceLock<Vec<Value>> = OnceLock::new();
    BASE.get_or_init(|| match TweetGen::load_default_base() {
        Ok(b) => b,
        Err(e) => {
            panic!("base tweets missing: run scripts/fetch-tweets.sh (or set KAPPA_TWEETS): {e}")
        }
    })
    .clone()
}

fn config() -> GenConfig {
    GenConfig { total: N, ..GenConfig::default() }
}

/// The generator with the test config, built once and shared by the tests.
fn tweet_gen() -> &'static TweetGen {
    static GEN: OnceLock<TweetGen> = OnceLock::new();
    GEN.get_or_init(|| TweetGen::new(base(), config()))
}

/// Records `0..N` of the shared generator, built once.
fn records() -> &'static [GeneratedRecord] {
    static RECORDS: OnceLock<Vec<GeneratedRecord>> = OnceLock::new();
    RECORDS.get_or_init(|| tweet_gen().iter(0..N).collect())
}

fn contains_federer(b: &[u8]) -> bool {
    b.windows(7).any(|w| w.eq_ignore_ascii_case(b"federer"))
}

/// Parses Twitter's `Wed Jul 01 13:08:45 +0000 2026` into Unix seconds.
fn parse_created_at(s: &str) -> i64 {
    let f: Vec<&str> = s.split(' ').collect();
    assert_eq!(f.len(), 6, "{s}");
    assert_eq!(f[4], "+0000", "{s}");
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let m = MONTHS.iter().position(|&m| m == f[1]).unwrap_or_else(|| panic!("{s}")) as i64 + 1;
    let d: i64 = f[2].parse().unwrap();
    let y: i64 = f[5].parse().unwrap();
    let hms: Vec<i64> = f[3].split(':').map(|x| x.parse().unwrap()).collect();
    // Days from civil (H. Hinnant).
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    assert_eq!(f[0], WEEKDAYS[days.rem_euclid(7) as usize], "weekday of {s}");
    days * 86_400 + hms[0] * 3_600 + hms[1] * 60 + hms[2]
}

#[test]
fn deterministic_and_order_independent() {
    let a = tweet_gen();
    let b = TweetGen::new(base(), config());
    let idx: Vec<u64> = (0..500u64).map(|k| (k * 7_919) % N).collect();
    let forward: Vec<_> = idx.iter().map(|&i| a.record(i)).collect();
    let backward: Vec<_> = idx.iter().rev().map(|&i| b.record(i)).collect();
    for (x, y) in forward.iter().zip(backward.iter().rev()) {
        assert_eq!(x, y);
    }
    let it: Vec<_> = a.iter(100..110).collect();
    assert_eq!(it, (100..110).map(|i| b.record(i)).collect::<Vec<_>>());

    let other = TweetGen::new(base(), GenConfig { seed: 7, ..config() });
    let differ = idx.iter().filter(|&&i| other.record(i).value != a.record(i).value).count();
    assert!(differ > idx.len() * 9 / 10, "seeds 2026 and 7 differ on only {differ} records");
}

#[test]
fn federer_share_and_nowhere_else() {
    let g = tweet_gen();
    let mut fed = 0;
    for r in records() {
        let i = r.key.parse::<u64>().unwrap() & 0x3f_ffff;
        let has = contains_federer(&r.value);
        assert_eq!(has, g.is_federer(i), "record {i}: {}", String::from_utf8_lossy(&r.value));
        fed += u64::from(has);
    }
    let share = fed as f64 / N as f64;
    assert!((0.04..=0.06).contains(&share), "Federer share {share}");
}

#[test]
fn average_size_near_real_tweets() {
    let bytes: usize = records().iter().map(|r| r.value.len()).sum();
    let kb = bytes as f64 / N as f64 / 1_000.0;
    assert!((4.0..=4.8).contains(&kb), "average record size {kb} KB");
}

#[test]
fn records_are_consistent_tweets_with_created_at() {
    let mut keys = std::collections::HashSet::new();
    for r in records() {
        let s = std::str::from_utf8(&r.value).expect("UTF-8");
        let v: Value = serde_json::from_str(s).expect("valid JSON");
        let o = v.as_object().expect("a JSON object");
        assert_eq!(o["id_str"].as_str(), Some(r.key.as_str()));
        assert_eq!(o["id"].as_u64().map(|x| x.to_string()), Some(r.key.clone()));
        assert!(keys.insert(r.key.clone()), "duplicate key {}", r.key);
        let text = o.get("full_text").or_else(|| o.get("text")).and_then(Value::as_str).unwrap();
        let chars: Vec<char> = text.chars().collect();
        let slice = |ix: &Value| -> String {
            let a = ix[0].as_u64().unwrap() as usize;
            let b = ix[1].as_u64().unwrap() as usize;
            chars[a..b].iter().collect()
        };
        let tags = o["entities"]["hashtags"].as_array().unwrap();
        assert!(tags.len() <= 4, "{s}");
        for h in tags {
            assert_eq!(slice(&h["indices"]), format!("#{}", h["text"].as_str().unwrap()));
        }
        for m in o["entities"]["user_mentions"].as_array().unwrap() {
            assert_eq!(slice(&m["indices"]), format!("@{}", m["screen_name"].as_str().unwrap()));
        }
        for u in o["entities"]["urls"].as_array().unwrap() {
            assert_eq!(slice(&u["indices"]), u["url"].as_str().unwrap());
        }
        assert!(o["user"]["screen_name"].is_string());
        assert!(o["lang"].is_string());
        assert!(o["retweet_count"].is_u64() && o["favorite_count"].is_u64());
        let created = o["created_at"].as_str().unwrap();
        assert_eq!(parse_created_at(created), r.timestamp_ms.div_euclid(1_000), "{created}");
    }
}

#[test]
fn timestamps_in_span_and_non_decreasing() {
    let c = config();
    let mut last = i64::MIN;
    for (i, r) in records().iter().enumerate() {
        assert!(
            (c.start_ms..c.start_ms + c.span_ms).contains(&r.timestamp_ms),
            "record {i} at {}",
            r.timestamp_ms
        );
        assert!(r.timestamp_ms >= last, "record {i} goes back in time");
        assert_eq!(r.timestamp_ms, tweet_gen().timestamp_ms(i as u64));
        last = r.timestamp_ms;
    }
    // The log covers the fortnight, not only its first days.
    let day = 86_400_000;
    let first_day = records().iter().filter(|r| r.timestamp_ms < c.start_ms + day).count();
    let last_day =
        records().iter().filter(|r| r.timestamp_ms >= c.start_ms + c.span_ms - day).count();
    assert!(first_day > 0 && first_day < N as usize / 5, "{first_day} records on the first day");
    assert!(last_day > 0 && last_day < N as usize / 5, "{last_day} records on the last day");
}

#[test]
fn public_word_lists() {
    assert_eq!(kappa_tweetgen::player_names()[0], "Federer");
    assert_eq!(kappa_tweetgen::top_hashtags()[0], "Wimbledon");
    assert!(kappa_tweetgen::top_hashtags().len() >= 50);
}

#[test]
fn api_format_is_byte_faithful_to_the_twitter_api() {
    // The same log re-serialised by serde_json: the same JSON values, fewer escapes.
    let reserialized = TweetGen::new(
        base(),
        GenConfig { format: kappa_tweetgen::RecordFormat::Reserialized, ..config() },
    );
    let (mut u_escapes, mut backslashes, mut surrogate_pairs) = (0usize, 0usize, 0usize);
    let sample = 2_000;
    for (i, api) in records().iter().take(sample).enumerate() {
        let plain = reserialized.record(i as u64);
        assert_eq!(api.key, plain.key);
        let a: Value = serde_json::from_slice(&api.value).expect("API bytes are JSON");
        let b: Value = serde_json::from_slice(&plain.value).expect("re-serialised bytes are JSON");
        assert_eq!(a, b, "record {i} decodes differently");
        // The API escapes every non-ASCII character, `/`, `<` and `>`.
        assert!(api.value.is_ascii(), "record {i} has raw non-ASCII bytes");
        for (k, w) in api.value.windows(2).enumerate() {
            if matches!(w[1], b'/' | b'<' | b'>') {
                assert_eq!(w[0], b'\\', "record {i}: unescaped {:?} at {k}", w[1] as char);
            }
        }
        let s = String::from_utf8_lossy(&api.value);
        u_escapes += s.matches("\\u").count();
        surrogate_pairs += s.matches("\\ud83").count();
        backslashes += api.value.iter().filter(|&&c| c == b'\\').count();
    }
    // Real API records carry ~40 `\u` escapes and ~130 backslashes each (shared/reference/data.md).
    let per = |n: usize| n as f64 / sample as f64;
    assert!((20.0..=80.0).contains(&per(u_escapes)), "{} \\u escapes a record", per(u_escapes));
    assert!(
        (60.0..=250.0).contains(&per(backslashes)),
        "{} backslashes a record",
        per(backslashes)
    );
    assert!(surrogate_pairs > 0, "emoji are written as surrogate pairs");
}
