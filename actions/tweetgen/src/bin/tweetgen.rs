//! `tweetgen`: writes generated tweets as NDJSON (one JSON object a line) to stdout, for
//! `kappa ingest` and demos. See `tweetgen --help`.

use anyhow::{Context, Result, bail};
use kappa_tweetgen::{GenConfig, RecordFormat, TweetGen};
use std::io::{self, Write};
use std::path::PathBuf;

const HELP: &str = "\
tweetgen: writes generated tweets (a Wimbledon fortnight) as NDJSON to stdout

USAGE:
    tweetgen --count N [--seed S] [--start-index I] [--total T] [--format F] [--base PATH]

OPTIONS:
    --count N        number of records to write (required)
    --seed S         seed; the same seed gives the same log (default 2026)
    --start-index I  index of the first record (default 0)
    --total T        records spread over the 14 days (default I + N)
    --format F       api (default): bytes as the Twitter API sends them (non-ASCII as
                     \\uXXXX, `/` as \\/, `<` `>` escaped); reserialized: as serde_json
                     writes them (raw UTF-8, fewer escapes)
    --base PATH      base tweets, NDJSON (default $KAPPA_TWEETS, else
                     <repo>/.cache/tweets/base.ndjson from scripts/fetch-tweets.sh)
    -h, --help       this help

Record i is a pure function of (seed, i): with the same --seed and --total, ranges written by
separate runs join into the same log.
";

struct Args {
    count: u64,
    seed: u64,
    start: u64,
    total: Option<u64>,
    base: Option<PathBuf>,
    format: RecordFormat,
}

fn parse_args() -> Result<Option<Args>> {
    let mut count = None;
    let mut args = Args {
        count: 0,
        seed: GenConfig::default().seed,
        start: 0,
        total: None,
        base: None,
        format: RecordFormat::Api,
    };
    let mut it = std::env::args_os().skip(1);
    while let Some(arg) = it.next() {
        let arg = arg.to_string_lossy().into_owned();
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        if name == "-h" || name == "--help" {
            return Ok(None);
        }
        let mut value = || -> Result<String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => it
                    .next()
                    .map(|v| v.to_string_lossy().into_owned())
                    .with_context(|| format!("{name} needs a value")),
            }
        };
        let number = |v: String| -> Result<u64> {
            v.replace('_', "").parse::<u64>().with_context(|| format!("{name}: not a number: {v}"))
        };
        match name.as_str() {
            "--count" | "-n" => count = Some(number(value()?)?),
            "--seed" => args.seed = number(value()?)?,
            "--start-index" => args.start = number(value()?)?,
            "--total" => args.total = Some(number(value()?)?),
            "--format" => {
                args.format = value()?.parse().map_err(anyhow::Error::msg)?;
            }
            "--base" => args.base = Some(PathBuf::from(value()?)),
            _ => bail!("unknown argument {arg} (see --help)"),
        }
    }
    args.count = count.context("--count N is required (see --help)")?;
    Ok(Some(args))
}

fn main() -> Result<()> {
    let Some(args) = parse_args()? else {
        print!("{HELP}");
        return Ok(());
    };
    // KAPPA_TWEETS is read here, at the edge (default_base_path also honours it).
    let path = match args.base {
        Some(p) => p,
        None => TweetGen::default_base_path(),
    };
    let base = TweetGen::load_base(&path)?;
    let end = args.start.checked_add(args.count).context("--start-index + --count overflows")?;
    let config = GenConfig {
        seed: args.seed,
        total: args.total.unwrap_or(end).max(1),
        format: args.format,
        ..GenConfig::default()
    };
    let tweet_gen = TweetGen::new(base, config);

    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(1 << 20, stdout.lock());
    let mut buf = Vec::with_capacity(16_384);
    for i in args.start..end {
        buf.clear();
        tweet_gen.write_record(i, &mut buf);
        buf.push(b'\n');
        if let Err(e) = out.write_all(&buf) {
            if e.kind() == io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(e).context("writing stdout");
        }
    }
    match out.flush() {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing stdout"),
    }
}
