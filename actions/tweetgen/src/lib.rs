//! Deterministic generator of realistic tweet records for Kappa's tests, benchmarks and demos.
//!
//! Kappa runs live queries over a Kafka log of tweets during a sports event. This crate builds
//! such a log: a Wimbledon fortnight (from 2026-06-29) of Twitter API v1.1 tweet objects, made
//! from real tweets that ship inside packages (`scripts/fetch-tweets.sh` collects them into
//! `.cache/tweets/base.ndjson`, see `shared/reference/data.md`) and varied per record:
//!
//! - a unique snowflake `id`/`id_str` (the record key), `created_at` in Twitter's format matching
//!   [`GeneratedRecord::timestamp_ms`], which rises over the span with a daily rhythm, match
//!   bursts and a busier finals weekend;
//! - a new text (`full_text` or `text`) about the matches of the day in the record's `lang`
//!   (en ~55 %, es, fr, de, ja, it, pt, und), consistent `entities.hashtags` (0-4, Zipf over a
//!   vocabulary of 2,000 event hashtags, see [`top_hashtags`]) and `entities.user_mentions`;
//! - exactly the records for which [`TweetGen::is_federer`] holds (≈ [`GenConfig::federer_share`])
//!   mention Federer, in mixed forms (`Federer`, `FEDERER`, `#Federer`, `@rogerfederer`, ...);
//!   no other record contains "federer" in any case anywhere (the base tweets are scrubbed);
//! - the author from a Zipf over 50,000 users, heavy-tailed `retweet_count`/`favorite_count`,
//!   a `place` on a few records, and an average record size of ~4.4 KB: the share of records
//!   built from retweets/quotes (which nest another tweet) is set to land there (~30 % with the
//!   packaged tweets); a retweet's text starts with `RT @author: `.
//!
//! Record `i` is a pure function of `(seed, i)`: any record can be built alone, in any order, on
//! any thread, with the same bytes on every platform.
//!
//! ```no_run
//! use kappa_tweetgen::{GenConfig, TweetGen};
//! let base = TweetGen::load_base(&TweetGen::default_base_path())?;
//! let config = GenConfig { total: 1_000_000, ..GenConfig::default() };
//! let tweet_gen = TweetGen::new(base, config);
//! for r in tweet_gen.iter(0..10) {
//!     println!("{} {} {}", r.timestamp_ms, r.key, String::from_utf8_lossy(&r.value));
//! }
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Run: `scripts/fetch-tweets.sh` once (it caches), then
//! `cargo run --release -p kappa-tweetgen -- --count 1000 > tweets.ndjson`
//! (`--seed S`, `--start-index I`, `--total T`, `--help`); `cargo test -p kappa-tweetgen`;
//! generation speed: `cargo run --release -p kappa-tweetgen --example gen_speed [N]`.
//! The base file is `.cache/tweets/base.ndjson` at the repository root, or `$KAPPA_TWEETS`.

mod template;
mod timeline;
mod vocab;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use std::io::{self, BufRead, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use template::{Slot, Template};
use timeline::Timeline;

/// Mean record size the generator aims at, in bytes.
pub const TARGET_MEAN_SIZE: usize = 4_400;

/// 2026-06-29T00:00:00Z, the first day of Wimbledon 2026.
pub const WIMBLEDON_2026_START_MS: i64 = 1_782_691_200_000;

const DAY_MS: i64 = 86_400_000;
/// Share of records with a `place` (geotagged), unless more are needed to reach the size.
const BASE_PLACE_SHARE: f64 = 0.03;
/// Twitter's snowflake epoch (2010-11-04T01:42:54.657Z).
const TWITTER_EPOCH_MS: i64 = 1_288_834_974_657;

/// Parameters of a generated log.
#[derive(Clone, Debug, PartialEq)]
pub struct GenConfig {
    /// Seed: the same seed builds the same log.
    pub seed: u64,
    /// Start of the span, Unix epoch milliseconds (default: 2026-06-29T00:00:00Z, Wimbledon).
    pub start_ms: i64,
    /// Length of the span in milliseconds (default: 14 days).
    pub span_ms: i64,
    /// Number of records spread over the span: records `0..total` get timestamps within it,
    /// records past it continue over the following spans.
    pub total: u64,
    /// Share of records that mention Federer (default 0.05).
    pub federer_share: f64,
    /// How records are serialised (default: byte-faithful to the Twitter API).
    pub format: RecordFormat,
}

/// How a generated record is serialised.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecordFormat {
    /// As the Twitter v1.1 API sends it, and so as a Kafka topic fed from the API holds it:
    /// compact JSON with every non-ASCII character escaped as `\uXXXX` (lowercase hex; characters
    /// beyond the BMP as surrogate pairs), `/` as `\/`, and `<`, `>` as `\u003c`, `\u003e`.
    #[default]
    Api,
    /// Re-serialised by `serde_json` (raw UTF-8, no optional escapes): an easier input than any
    /// topic fed from the API holds; kept as a second column for benchmarks.
    Reserialized,
}

impl std::str::FromStr for RecordFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "api" => Ok(RecordFormat::Api),
            "reserialized" => Ok(RecordFormat::Reserialized),
            other => Err(format!("unknown record format {other:?} (api or reserialized)")),
        }
    }
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            seed: 2026,
            start_ms: WIMBLEDON_2026_START_MS,
            span_ms: 14 * DAY_MS,
            total: 1_000_000,
            federer_share: 0.05,
            format: RecordFormat::Api,
        }
    }
}

/// One generated log record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeneratedRecord {
    /// Event time, Unix epoch milliseconds (`created_at` is this, to the second).
    pub timestamp_ms: i64,
    /// The tweet's `id_str`.
    pub key: String,
    /// The tweet: a compact UTF-8 JSON object.
    pub value: Vec<u8>,
}

/// The generator: base tweet templates plus the distributions, built once.
pub struct TweetGen {
    config: GenConfig,
    templates: Vec<Template>,
    timeline: Timeline,
    vocab: Vec<String>,
    vocab_federer: Vec<bool>,
    tag_cdf: Vec<f64>,
    user_cdf: Vec<f64>,
    /// Bases by kind: plain tweets, and retweets/quotes (which nest another tweet).
    plain: Vec<usize>,
    nested: Vec<usize>,
    /// Share of records built from a retweet/quote base.
    nested_prob: f64,
    place_prob: f64,
}

/// Surnames of the players the generated texts name (`Federer` first), for demo queries.
pub fn player_names() -> &'static [&'static str] {
    vocab::PLAYERS
}

/// The most used hashtags (without `#`), most popular first, for demo queries.
pub fn top_hashtags() -> &'static [&'static str] {
    vocab::TOP_HASHTAGS
}

/// Query `i` of a newsroom's desk mix on `topic`, for benchmarks of many distinct queries: a
/// `terms` panel on `lang`, a `date_histogram` timeline, a player's `match` with a hashtag
/// `terms`, a `range` + `stats` on followers, in turn; each one distinct from the others of its
/// kind by its size, interval, player or threshold.
pub fn desk_query(topic: &str, i: usize) -> serde_json::Value {
    use serde_json::json;
    let k = i / 4;
    let players = player_names();
    match i % 4 {
        0 => {
            json!({"topic": topic, "size": 0, "aggs": {"langs": {"terms": {"field": "lang", "size": 1 + k}}}})
        }
        1 => {
            json!({"topic": topic, "size": 0, "aggs": {"timeline": {"date_histogram": {"field": "@timestamp", "fixed_interval": format!("{}m", 1 + k)}}}})
        }
        2 => {
            json!({"topic": topic, "size": 0, "query": {"match": {"text": players[k % players.len()]}},
                    "aggs": {"tags": {"terms": {"field": "entities.hashtags.text", "size": 1 + k / players.len()}}}})
        }
        _ => {
            json!({"topic": topic, "size": 0, "query": {"range": {"user.followers_count": {"gte": k * 100}}},
                    "aggs": {"followers": {"stats": {"field": "user.followers_count"}}}})
        }
    }
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Uniform in `[0, 1)`.
fn unit(x: u64) -> f64 {
    (x >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Uniform in `(0, 1]`.
fn unit_open0(x: u64) -> f64 {
    ((x >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Uniform in `0..n`.
fn below(rng: &mut ChaCha8Rng, n: usize) -> usize {
    ((rng.next_u64() as u128 * n as u128) >> 64) as usize
}

fn zipf_cdf(n: usize, s: f64) -> Vec<f64> {
    zipf_mandelbrot_cdf(n, s, 0.0)
}

/// CDF of ranks `0..n` with weights `(rank + 1 + q)^-s`.
fn zipf_mandelbrot_cdf(n: usize, s: f64, q: f64) -> Vec<f64> {
    let mut acc = 0.0;
    let mut cdf: Vec<f64> = (1..=n)
        .map(|k| {
            acc += (k as f64 + q).powf(-s);
            acc
        })
        .collect();
    for c in &mut cdf {
        *c /= acc;
    }
    cdf
}

fn sample_cdf(cdf: &[f64], u: f64) -> usize {
    cdf.partition_point(|&c| c <= u).min(cdf.len() - 1)
}

/// What a record says, before it is written.
struct Parts {
    timestamp_ms: i64,
    id: u64,
    base: usize,
    lang: usize,
    user: u64,
    text: String,
    text_chars: usize,
    hashtags: Vec<(usize, usize, usize)>,
    mentions: Vec<(Mention, usize, usize)>,
    /// Indices of the base tweet's link in the text.
    link: Option<(usize, usize)>,
    retweets: u64,
    favorites: u64,
    place: Option<usize>,
}

enum Mention {
    User(u64),
    Federer,
    /// The author of the base retweet's `retweeted_status`.
    Retweeted,
}

/// Appends to a text while counting its characters (entity indices are in code points).
struct TextBuf<'a> {
    text: &'a mut String,
    chars: usize,
}

impl TextBuf<'_> {
    fn push(&mut self, s: &str) {
        self.text.push_str(s);
        self.chars += s.chars().count();
    }
}

impl TweetGen {
    /// Reads base tweets from an NDJSON file (one tweet object per line, blank lines skipped).
    pub fn load_base(path: &Path) -> io::Result<Vec<Value>> {
        let file = std::fs::File::open(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot read base tweets {}: {e} (run scripts/fetch-tweets.sh to fetch them)",
                    path.display()
                ),
            )
        })?;
        let mut out = Vec::new();
        for (n, line) in io::BufReader::new(file).lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(&line).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}:{}: {e}", path.display(), n + 1),
                )
            })?;
            out.push(v);
        }
        Ok(out)
    }

    /// Where the base tweets are: `$KAPPA_TWEETS` if set, else
    /// `<repository root>/.cache/tweets/base.ndjson` (where `scripts/fetch-tweets.sh` puts them
    /// with the default `KAPPA_CACHE`), found from this crate's manifest directory at compile
    /// time.
    pub fn default_base_path() -> PathBuf {
        // `var_os`: a test-data location, not configuration of a Kappa component.
        if let Some(p) = std::env::var_os("KAPPA_TWEETS").filter(|p| !p.is_empty()) {
            return PathBuf::from(p);
        }
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/tweets/base.ndjson")
    }

    /// [`Self::load_base`] of [`Self::default_base_path`]; its error says to run
    /// `scripts/fetch-tweets.sh` when the file is missing.
    pub fn load_default_base() -> io::Result<Vec<Value>> {
        Self::load_base(&Self::default_base_path())
    }

    /// Builds a generator from base tweets (JSON objects; others are ignored).
    ///
    /// Base tweets are scrubbed of "federer" in any case. The share of records built from
    /// retweets/quotes (big) rather than plain tweets, and if needed of records with a `place`,
    /// is set so that the mean record size is close to [`TARGET_MEAN_SIZE`].
    ///
    /// # Panics
    /// If `base` holds no JSON object.
    pub fn new(base: Vec<Value>, config: GenConfig) -> Self {
        let mut templates: Vec<Template> = Vec::with_capacity(base.len());
        for mut v in base {
            if !v.is_object() {
                continue;
            }
            template::scrub(&mut v);
            templates.extend(template::build(v));
        }
        assert!(!templates.is_empty(), "no base tweets (run scripts/fetch-tweets.sh)");
        let (nested, plain): (Vec<usize>, Vec<usize>) =
            (0..templates.len()).partition(|&b| templates[b].nested);

        let vocab = vocab::hashtag_vocab();
        let vocab_federer = vocab.iter().map(|t| vocab::contains_federer(t.as_bytes())).collect();
        let mut tweet_gen = TweetGen {
            timeline: Timeline::new(config.seed, config.start_ms, config.span_ms, config.total),
            config,
            templates,
            nested_prob: if plain.is_empty() { 1.0 } else { 0.5 },
            plain,
            nested,
            vocab,
            vocab_federer,
            tag_cdf: zipf_cdf(vocab::VOCAB_SIZE, 1.1),
            user_cdf: zipf_mandelbrot_cdf(vocab::USERS as usize, 1.0, 10.0),
            place_prob: BASE_PLACE_SHARE,
        };
        tweet_gen.calibrate_size();
        tweet_gen
    }

    /// Sets the share of records built from retweets/quotes (big: they nest another tweet)
    /// against plain tweets, and if that is not enough the share of records with a `place`, so
    /// that the expected record size in the API's bytes is [`TARGET_MEAN_SIZE`]. Per kind, a record's size is its
    /// template's fixed bytes (mean known exactly) plus the bytes it writes (mean sampled).
    fn calibrate_size(&mut self) {
        const SAMPLES: u64 = 4_000;
        let mean_fixed = |bases: &[usize]| -> f64 {
            let n = bases.len().max(1) as f64;
            bases.iter().map(|&b| self.templates[b].fixed_len as f64).sum::<f64>() / n
        };
        let (fixed_plain, fixed_nested) = (mean_fixed(&self.plain), mean_fixed(&self.nested));
        let (mut written, mut count) = ([0.0f64; 2], [0u64; 2]);
        let mut buf = Vec::with_capacity(16_384);
        let mut compact = Vec::with_capacity(16_384);
        for k in 0..SAMPLES {
            let i = mix(k ^ 0x51ce) % self.config.total.max(1);
            let p = self.parts(i);
            buf.clear();
            // Calibrated on the API's bytes whatever the format, so that both formats are
            // the same log (the same records, serialised two ways).
            self.write_reserialized(&p, &mut compact);
            write_api_escaped(&compact, &mut buf);
            compact.clear();
            let kind = usize::from(self.templates[p.base].nested);
            written[kind] += (buf.len() - self.templates[p.base].fixed_len) as f64;
            count[kind] += 1;
        }
        let size_plain = fixed_plain + written[0] / count[0].max(1) as f64;
        let size_nested = fixed_nested + written[1] / count[1].max(1) as f64;
        let target = TARGET_MEAN_SIZE as f64;
        if self.plain.is_empty() || self.nested.is_empty() || size_nested <= size_plain {
            return;
        }
        let q = (target - size_plain) / (size_nested - size_plain);
        self.nested_prob = q.clamp(0.0, 1.0);
        if q > 1.0 {
            // Even all retweets are too small: more places.
            let with_place =
                self.nested.iter().filter(|&&b| self.templates[b].slots.contains(&Slot::Place));
            let share = with_place.count() as f64 / self.nested.len() as f64;
            let place_len = vocab::PLACES.iter().map(|p| p.len() - 4).sum::<usize>() as f64
                / vocab::PLACES.len() as f64;
            if share > 0.0 {
                self.place_prob = (self.place_prob
                    + (target - size_nested) / (place_len * share * (1.0 - self.place_prob)))
                    .min(1.0);
            }
        }
    }

    /// The configuration.
    pub fn config(&self) -> &GenConfig {
        &self.config
    }

    /// Number of base tweets in use.
    pub fn base_len(&self) -> usize {
        self.templates.len()
    }

    /// Whether record `i` mentions Federer (and only those records contain "federer" in any
    /// case). Cheap: benchmarks can count expected hits with it.
    pub fn is_federer(&self, i: u64) -> bool {
        unit(mix(self.config.seed ^ 0xfede_5e1e_c7ed_0001 ^ mix(i))) < self.config.federer_share
    }

    /// Timestamp of record `i` (non-decreasing in `i`).
    pub fn timestamp_ms(&self, i: u64) -> i64 {
        self.timeline.at(i)
    }

    /// Record `i`: a deterministic function of `(seed, i)`: same `i`, same bytes, whatever
    /// order records are built in.
    pub fn record(&self, i: u64) -> GeneratedRecord {
        let p = self.parts(i);
        let mut value = Vec::with_capacity(self.templates[p.base].fixed_len + 2_048);
        self.write_parts(&p, &mut value);
        // Benchmarks keep millions of records in memory: no slack (an in-place shrink).
        value.shrink_to_fit();
        GeneratedRecord { timestamp_ms: p.timestamp_ms, key: p.id.to_string(), value }
    }

    /// Appends record `i`'s value to `out` (for callers that reuse a buffer); returns its
    /// timestamp and id (the key is the id in decimal).
    pub fn write_record(&self, i: u64, out: &mut Vec<u8>) -> (i64, u64) {
        let p = self.parts(i);
        self.write_parts(&p, out);
        (p.timestamp_ms, p.id)
    }

    /// Records `range`, in order.
    pub fn iter(&self, range: Range<u64>) -> impl Iterator<Item = GeneratedRecord> + '_ {
        range.map(move |i| self.record(i))
    }

    fn parts(&self, i: u64) -> Parts {
        let timestamp_ms = self.timeline.at(i);
        // Snowflake: time in the high bits, the record index in the 22 low bits: unique unless
        // 4 M records fall in the same millisecond.
        let id = (((timestamp_ms - TWITTER_EPOCH_MS).max(0) as u64) << 22) | (i & 0x3f_ffff);
        let federer = self.is_federer(i);
        let mut rng = ChaCha8Rng::seed_from_u64(mix(self.config.seed) ^ mix(i ^ 0x7ee7));
        let kind = if unit(rng.next_u64()) < self.nested_prob { &self.nested } else { &self.plain };
        let kind = if kind.is_empty() { &self.nested } else { kind };
        let base = kind[below(&mut rng, kind.len())];
        let u = unit(rng.next_u64());
        let mut acc = 0.0;
        let lang = vocab::LANGS
            .iter()
            .position(|&(_, w)| {
                acc += w;
                u < acc
            })
            .unwrap_or(0);
        let user = sample_cdf(&self.user_cdf, unit(rng.next_u64())) as u64;
        let day = ((timestamp_ms - self.config.start_ms).div_euclid(DAY_MS)).max(0);
        let round = ((day / 2) as usize).min(6);

        let mut text = String::with_capacity(320);
        let mut hashtags = Vec::with_capacity(5);
        let mut mentions = Vec::new();
        let mut tb = TextBuf { text: &mut text, chars: 0 };

        // A retweet names its author; other tweets may reply to a user.
        if let Some((sn, _, _)) = &self.templates[base].retweeted {
            tb.push("RT ");
            let start = tb.chars;
            tb.push("@");
            tb.push(sn);
            mentions.push((Mention::Retweeted, start, tb.chars));
            tb.push(": ");
        } else if rng.next_u64() % 100 < 15 {
            let to = sample_cdf(&self.user_cdf, unit(rng.next_u64())) as u64;
            let mut sn = String::with_capacity(24);
            vocab::screen_name(to, &mut sn);
            let start = tb.chars;
            tb.push("@");
            tb.push(&sn);
            mentions.push((Mention::User(to), start, tb.chars));
            tb.push(" ");
        }
        // The sentence about a match.
        let templates = vocab::TEMPLATES[lang];
        let tpl = templates[below(&mut rng, templates.len())];
        let (lo, hi) = if rng.next_u64() % 2 == 0 {
            (1, vocab::FIRST_WOMAN)
        } else {
            (vocab::FIRST_WOMAN, vocab::PLAYERS.len())
        };
        let a = lo + below(&mut rng, hi - lo);
        let mut b = lo + below(&mut rng, hi - lo - 1);
        if b >= a {
            b += 1;
        }
        let court = vocab::COURTS[[0, 0, 0, 1, 1, 2, 3, 4, 5][below(&mut rng, 9)]];
        let mut rest = tpl;
        while let Some(p) = rest.find('%') {
            tb.push(&rest[..p]);
            let marker = rest[p + 1..].chars().next().unwrap_or('%');
            match marker {
                'a' => tb.push(vocab::PLAYERS[a]),
                'b' => tb.push(vocab::PLAYERS[b]),
                'c' => tb.push(court),
                'r' => tb.push(vocab::ROUNDS[lang][round]),
                's' => {
                    let sets = 1 + below(&mut rng, 3);
                    let mut score = String::with_capacity(24);
                    for s in 0..sets {
                        if s > 0 {
                            score.push(' ');
                        }
                        let lost = below(&mut rng, 7);
                        let (x, y) = if lost == 6 { (7, 6) } else { (6, lost.min(4)) };
                        let (x, y) = if rng.next_u64() % 4 == 0 { (y, x) } else { (x, y) };
                        score.push_str(&format!("{x}-{y}"));
                        if lost == 6 {
                            score.push_str(&format!("({})", below(&mut rng, 8)));
                        }
                    }
                    tb.push(&score);
                }
                other => {
                    tb.push("%");
                    tb.push(other.encode_utf8(&mut [0; 4]));
                }
            }
            rest = &rest[p + 1 + marker.len_utf8()..];
        }
        tb.push(rest);

        // Federer, in one of his forms.
        let mut inline_tags = 0;
        if federer {
            let phrases = vocab::FEDERER_PHRASES[lang];
            let phrase = phrases[below(&mut rng, phrases.len())];
            let form = vocab::FEDERER_FORMS[below(&mut rng, vocab::FEDERER_FORMS.len())];
            tb.push(" ");
            let (before, after) = phrase.split_once("%f").unwrap_or((phrase, ""));
            tb.push(before);
            let start = tb.chars;
            tb.push(form);
            if let Some(tag) = form.strip_prefix('#') {
                if let Some(v) =
                    self.vocab[..vocab::TOP_HASHTAGS.len()].iter().position(|t| t == tag)
                {
                    hashtags.push((v, start, tb.chars));
                    inline_tags = 1;
                }
            } else if form.starts_with('@') {
                mentions.push((Mention::Federer, start, tb.chars));
            }
            tb.push(after);
        }
        // A remark, an emoji.
        if rng.next_u64() % 10 < 3 {
            let c = vocab::COMMENTS[lang];
            tb.push(" ");
            tb.push(c[below(&mut rng, c.len())]);
        }
        if rng.next_u64() % 10 < 2 {
            tb.push([" 🎾", " 🔥", " 👏👏", " 😱", " 🍓", " 🏆", " 🙌"][below(&mut rng, 7)]);
        }
        // The base tweet's link.
        let link = self.templates[base].link.as_ref().map(|(url, _)| {
            tb.push(" ");
            let start = tb.chars;
            tb.push(url);
            (start, tb.chars)
        });
        // Hashtags: 0-4 in all, Zipf over the vocabulary, Federer's only in Federer records.
        let u = rng.next_u64() % 100;
        let count = [22, 52, 76, 90, 100].iter().position(|&c| u < c).unwrap_or(0);
        let count = count.saturating_sub(inline_tags);
        for _ in 0..count {
            for _ in 0..16 {
                let v = sample_cdf(&self.tag_cdf, unit(rng.next_u64()));
                if (self.vocab_federer[v] && !federer) || hashtags.iter().any(|h| h.0 == v) {
                    continue;
                }
                tb.push(" ");
                let start = tb.chars;
                tb.push("#");
                tb.push(&self.vocab[v]);
                hashtags.push((v, start, tb.chars));
                break;
            }
        }
        let text_chars = tb.chars;

        // Heavy-tailed engagement.
        let retweets = if rng.next_u64() % 100 < 60 {
            0
        } else {
            (unit_open0(rng.next_u64()).powf(-1.0 / 1.2) as u64).min(2_000_000)
        };
        let favorites = ((unit_open0(rng.next_u64()).powf(-1.0 / 1.1) * 1.5) as u64)
            .saturating_sub(1)
            .saturating_add(retweets.saturating_mul(2))
            .min(5_000_000);
        let place =
            (unit(rng.next_u64()) < self.place_prob).then(|| below(&mut rng, vocab::PLACES.len()));

        Parts {
            timestamp_ms,
            id,
            base,
            lang,
            user,
            text,
            text_chars,
            hashtags,
            mentions,
            link,
            retweets,
            favorites,
            place,
        }
    }

    fn write_parts(&self, p: &Parts, out: &mut Vec<u8>) {
        let start = out.len();
        self.write_reserialized(p, out);
        if self.config.format == RecordFormat::Api {
            let compact = out.split_off(start);
            write_api_escaped(&compact, out);
        }
    }

    fn write_reserialized(&self, p: &Parts, out: &mut Vec<u8>) {
        let t = &self.templates[p.base];
        let mut name = String::with_capacity(32);
        for (seg, slot) in t.segs.iter().zip(&t.slots) {
            out.extend_from_slice(seg);
            // Writes into a Vec<u8> cannot fail.
            let _ = match slot {
                Slot::Id => write!(out, "{}", p.id),
                Slot::IdStr => write!(out, "\"{}\"", p.id),
                Slot::CreatedAt => {
                    out.push(b'"');
                    timeline::write_created_at(p.timestamp_ms, out);
                    out.push(b'"');
                    Ok(())
                }
                Slot::Text => write_json_str(out, &p.text),
                Slot::DisplayRange => write!(out, "[0,{}]", p.text_chars),
                Slot::Hashtags => {
                    out.push(b'[');
                    for (n, &(v, s, e)) in p.hashtags.iter().enumerate() {
                        if n > 0 {
                            out.push(b',');
                        }
                        out.extend_from_slice(b"{\"text\":");
                        let _ = write_json_str(out, &self.vocab[v]);
                        let _ = write!(out, ",\"indices\":[{s},{e}]}}");
                    }
                    out.push(b']');
                    Ok(())
                }
                Slot::Mentions => {
                    out.push(b'[');
                    for (n, (m, s, e)) in p.mentions.iter().enumerate() {
                        if n > 0 {
                            out.push(b',');
                        }
                        let (sn, dn, id) = match m {
                            Mention::User(k) => {
                                let mut sn = String::with_capacity(24);
                                vocab::screen_name(*k, &mut sn);
                                name.clear();
                                vocab::display_name(*k, &mut name);
                                (sn, name.as_str(), vocab::user_id(*k))
                            }
                            Mention::Federer => {
                                let (sn, dn, id) = vocab::FEDERER_ACCOUNT;
                                (sn.to_string(), dn, id)
                            }
                            Mention::Retweeted => match &t.retweeted {
                                Some((sn, dn, id)) => (sn.clone(), dn.as_str(), *id),
                                None => (String::new(), "", 0),
                            },
                        };
                        out.extend_from_slice(b"{\"screen_name\":");
                        let _ = write_json_str(out, &sn);
                        out.extend_from_slice(b",\"name\":");
                        let _ = write_json_str(out, dn);
                        let _ =
                            write!(out, ",\"id\":{id},\"id_str\":\"{id}\",\"indices\":[{s},{e}]}}");
                    }
                    out.push(b']');
                    Ok(())
                }
                Slot::Urls => {
                    out.push(b'[');
                    if let (Some((url, rest)), Some((s, e))) = (&t.link, p.link) {
                        out.extend_from_slice(b"{\"url\":");
                        let _ = write_json_str(out, url);
                        out.extend_from_slice(rest.as_bytes());
                        let _ = write!(out, ",\"indices\":[{s},{e}]}}");
                    }
                    out.push(b']');
                    Ok(())
                }
                Slot::UserId => write!(out, "{}", vocab::user_id(p.user)),
                Slot::UserIdStr => write!(out, "\"{}\"", vocab::user_id(p.user)),
                Slot::UserScreenName => {
                    name.clear();
                    vocab::screen_name(p.user, &mut name);
                    write_json_str(out, &name)
                }
                Slot::UserName => {
                    name.clear();
                    vocab::display_name(p.user, &mut name);
                    write_json_str(out, &name)
                }
                Slot::RetweetCount => write!(out, "{}", p.retweets),
                Slot::FavoriteCount => write!(out, "{}", p.favorites),
                Slot::Lang | Slot::IsoLang => write!(out, "\"{}\"", vocab::LANGS[p.lang].0),
                Slot::Place => {
                    match p.place {
                        Some(k) => out.extend_from_slice(vocab::PLACES[k].as_bytes()),
                        None => out.extend_from_slice(b"null"),
                    }
                    Ok(())
                }
            };
        }
        if let Some(last) = t.segs.last() {
            out.extend_from_slice(last);
        }
    }
}

fn write_json_str(out: &mut Vec<u8>, s: &str) -> io::Result<()> {
    serde_json::to_writer(out, s).map_err(io::Error::from)
}

/// Re-encodes compact JSON (as `serde_json` writes it) the way the Twitter API does: every
/// non-ASCII character as `\uXXXX` (surrogate pairs beyond the BMP), `/` as `\/`, `<` and `>`
/// as `\u003c` and `\u003e`. These characters only occur inside strings of compact JSON, and
/// none of them is part of an escape `serde_json` writes, so a per-character rewrite is exact.
pub fn write_api_escaped(compact: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let text = String::from_utf8_lossy(compact);
    out.reserve(compact.len() + compact.len() / 8);
    let unit = |out: &mut Vec<u8>, u: u16| {
        out.extend_from_slice(b"\\u");
        for shift in [12, 8, 4, 0] {
            out.push(HEX[usize::from((u >> shift) & 0xf)]);
        }
    };
    for c in text.chars() {
        match c {
            '/' => out.extend_from_slice(b"\\/"),
            '<' | '>' => unit(out, c as u16),
            c if c.is_ascii() => out.push(c as u8),
            c => {
                let mut units = [0u16; 2];
                for &u in c.encode_utf16(&mut units).iter() {
                    unit(out, u);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn screen_names_unique_and_clean() {
        let mut seen = HashSet::new();
        for k in 0..vocab::USERS {
            let mut s = String::new();
            vocab::screen_name(k, &mut s);
            assert!(!vocab::contains_federer(s.as_bytes()));
            assert!(seen.insert(s), "duplicate screen name for user {k}");
        }
        let ids: HashSet<u64> = (0..vocab::USERS).map(vocab::user_id).collect();
        assert_eq!(ids.len(), vocab::USERS as usize);
    }

    #[test]
    fn vocab_is_long_and_unique() {
        let v = vocab::hashtag_vocab();
        assert_eq!(v.len(), vocab::VOCAB_SIZE);
        let lower: HashSet<String> = v.iter().map(|t| t.to_ascii_lowercase()).collect();
        assert_eq!(lower.len(), v.len());
        assert_eq!(v[0], "Wimbledon");
        assert!(v.iter().all(|t| !t.is_empty() && t.chars().all(char::is_alphanumeric)));
    }

    #[test]
    fn zipf_sampling_bounds() {
        let cdf = zipf_cdf(10, 1.1);
        assert_eq!(sample_cdf(&cdf, 0.0), 0);
        assert_eq!(sample_cdf(&cdf, 0.999_999_999), 9);
    }
}
