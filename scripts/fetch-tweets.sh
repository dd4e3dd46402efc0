#!/usr/bin/env bash
# Puts real tweets (Twitter API v1.1 JSON objects) in
#   ${KAPPA_CACHE:-<repo>/.cache}/tweets/base.ndjson
# one compact tweet object per line, unique by id_str, for the generator in
# actions/tweetgen (tests, benchmarks, demos). Sources, both ordinary registry
# packages (see shared/reference/data.md):
#   - Debian r-cran-rtweet: recorded API responses (VCR cassettes) in
#     /usr/share/doc/r-cran-rtweet/tests/fixtures/*.json[.gz]; the package is
#     only downloaded and unpacked, never installed;
#   - npm simdjson@0.9.2: package/jsonexamples/twitter.json (`statuses`).
# Idempotent: once base.ndjson exists it only prints its line count.
# Set KAPPA_TWEETS_REFRESH=1 to rebuild it from the (cached) packages.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${KAPPA_CACHE:-$repo/.cache}"
dir="$cache/tweets"
out="$dir/base.ndjson"

if [[ -s "$out" && "${KAPPA_TWEETS_REFRESH:-0}" != "1" ]]; then
    echo "$(wc -l <"$out") tweets in $out (cached)"
    exit 0
fi

mkdir -p "$dir/pkgs"
pkgs="$dir/pkgs"

# --- Debian r-cran-rtweet -------------------------------------------------
fixtures="$pkgs/rtweet/usr/share/doc/r-cran-rtweet/tests/fixtures"
if [[ ! -d "$fixtures" ]]; then
    shopt -s nullglob
    debs=("$pkgs"/r-cran-rtweet_*.deb)
    if ((${#debs[@]} == 0)); then
        # apt-get download writes to the current directory; chmod so the
        # unprivileged _apt user can write there too (avoids a warning).
        chmod 0777 "$pkgs" 2>/dev/null || true
        if ! (cd "$pkgs" && apt-get download r-cran-rtweet); then
            echo "apt-get download failed; running apt-get update and retrying" >&2
            apt-get update
            (cd "$pkgs" && apt-get download r-cran-rtweet)
        fi
        debs=("$pkgs"/r-cran-rtweet_*.deb)
    fi
    shopt -u nullglob
    rm -rf "$pkgs/rtweet.tmp"
    dpkg-deb -x "${debs[0]}" "$pkgs/rtweet.tmp"
    rm -rf "$pkgs/rtweet"
    mv "$pkgs/rtweet.tmp" "$pkgs/rtweet"
fi

# --- npm simdjson@0.9.2 ---------------------------------------------------
simd="$pkgs/simdjson/package/jsonexamples/twitter.json"
if [[ ! -f "$simd" ]]; then
    if [[ ! -f "$pkgs/simdjson-0.9.2.tgz" ]]; then
        (cd "$pkgs" && npm pack --silent simdjson@0.9.2 >/dev/null)
    fi
    rm -rf "$pkgs/simdjson"
    mkdir -p "$pkgs/simdjson"
    tar xzf "$pkgs/simdjson-0.9.2.tgz" -C "$pkgs/simdjson" package/jsonexamples/twitter.json
fi

# --- walk the JSON, collect tweet objects ---------------------------------
python3 - "$out.tmp" "$fixtures" "$simd" <<'PY'
import glob
import gzip
import json
import os
import sys

out_path, fixtures, simd = sys.argv[1], sys.argv[2], sys.argv[3]


def is_tweet(o):
    return isinstance(o, dict) and all(
        k in o for k in ("id_str", "created_at", "user", "entities")
    )


def walk(o, found):
    """Collects tweet objects. A tweet nested in another one (retweeted or
    quoted status) is collected too, as a tweet of its own; the outer one keeps
    its nested copy. VCR cassettes hold response bodies as JSON text, parsed
    here when they look like JSON."""
    if isinstance(o, str):
        s = o.lstrip()
        if s[:1] in ("{", "["):
            try:
                walk(json.loads(s), found)
            except ValueError:
                pass
        return
    if is_tweet(o):
        found.append(o)
    if isinstance(o, dict):
        for v in o.values():
            walk(v, found)
    elif isinstance(o, list):
        for v in o:
            walk(v, found)


files = sorted(glob.glob(os.path.join(fixtures, "*.json")) +
               glob.glob(os.path.join(fixtures, "*.json.gz")))
files.append(simd)
seen = set()
n_files = 0
with open(out_path, "w", encoding="utf-8") as out:
    for f in files:
        opener = gzip.open if f.endswith(".gz") else open
        try:
            with opener(f, "rt", encoding="utf-8") as fh:
                doc = json.load(fh)
        except (OSError, ValueError) as e:
            print(f"skipping {f}: {e}", file=sys.stderr)
            continue
        n_files += 1
        found = []
        walk(doc, found)
        for t in found:
            if t["id_str"] in seen:
                continue
            seen.add(t["id_str"])
            out.write(json.dumps(t, separators=(",", ":"), ensure_ascii=False))
            out.write("\n")
print(f"read {n_files} files", file=sys.stderr)
if not seen:
    sys.exit("no tweets found")
PY
mv "$out.tmp" "$out"
echo "$(wc -l <"$out") tweets in $out"
