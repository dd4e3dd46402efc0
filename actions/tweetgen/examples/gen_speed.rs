//! Measures generation speed: `cargo run --release -p kappa-tweetgen --example gen_speed [N]`.
//! Builds N records (default 1,000,000) in memory, as benchmarks do, and prints the rate.

#![allow(clippy::disallowed_methods, reason = "a speed measurement reads the clock")]

use kappa_tweetgen::{GenConfig, TweetGen};
use std::time::Instant;

fn main() -> std::io::Result<()> {
    let n: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let t0 = Instant::now();
    let base = TweetGen::load_default_base()?;
    let t1 = Instant::now();
    let tweet_gen = TweetGen::new(base, GenConfig { total: n, ..GenConfig::default() });
    let t2 = Instant::now();
    let records: Vec<_> = tweet_gen.iter(0..n).collect();
    let t3 = Instant::now();
    let bytes: usize = records.iter().map(|r| r.value.len()).sum();
    let federer = (0..n).filter(|&i| tweet_gen.is_federer(i)).count();
    let gen_s = (t3 - t2).as_secs_f64();
    println!(
        "base: {} tweets, loaded in {:.2}s; new() {:.2}s; {n} records in {gen_s:.2}s \
         ({:.0} records/s, {:.0} MB/s); mean size {:.0} B; Federer share {:.4}",
        tweet_gen.base_len(),
        (t1 - t0).as_secs_f64(),
        (t2 - t1).as_secs_f64(),
        n as f64 / gen_s,
        bytes as f64 / gen_s / 1e6,
        bytes as f64 / n as f64,
        federer as f64 / n as f64,
    );
    drop(records);
    let t4 = Instant::now();
    let mut buf = Vec::with_capacity(1 << 16);
    let mut total = 0usize;
    for i in 0..n {
        buf.clear();
        tweet_gen.write_record(i, &mut buf);
        total += buf.len();
    }
    let s = t4.elapsed().as_secs_f64();
    println!(
        "write_record into one buffer: {:.2}s ({:.0} records/s), {total} bytes",
        s,
        n as f64 / s
    );
    Ok(())
}
