#!/usr/bin/env python3
"""Helper of scripts/bench-replay-duckdb.sh: kappa dev replay speed side by side with DuckDB.

Three subcommands, each writing or reading JSON files so that the shell script owns the
servers' lifetimes:

  kappa   POST one query to a running `kappa dev` that holds the file, time the replay until
          GET /v1/queries/{id} shows caught_up and progress.processed == N (polled every 20 ms),
          and read the server's CPU time from /proc/<pid>/stat before and after;
  duckdb  the same two queries in DuckDB over the same NDJSON file (one thread, best of runs);
  report  check that both give the same answers and print the table.

Standard library only, plus the `duckdb` package for the `duckdb` subcommand.
"""

import argparse
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import urllib.parse

# The bodies of issue #12, exactly.
QUERIES = {
    "Q1": {"topic": "tweets", "size": 0, "query": {"match": {"text": "federer"}}},
    "Q2": {
        "topic": "tweets",
        "size": 0,
        "aggs": {
            "tags": {"terms": {"field": "entities.hashtags.text", "size": 10}},
            "per_hour": {
                "date_histogram": {
                    "field": "created_at",
                    "format": "EEE MMM dd HH:mm:ss Z yyyy",
                    "fixed_interval": "1h",
                }
            },
        },
    },
}
TITLES = {
    "Q1": 'match text "federer", count',
    "Q2": "terms hashtags top 10 + hourly date_histogram",
}
HOUR_MS = 3_600_000
POLL_S = 0.020

# --- DuckDB side -----------------------------------------------------------------------------

# Elasticsearch's standard analyzer splits on Unicode word boundaries (UAX #29) and lowercases;
# DuckDB has no word segmentation, so the token test is a regexp over lower(text) (RE2, where
# \pL, \pN, \pM are Unicode classes) that follows UAX #29 for the cases that occur around a
# word: letters (ALetter), digits, combining marks and connector punctuation such as `_`
# (ExtendNumLet) join a word; `.`, `'`, `’`, `:` and `·` (MidNumLet / Single_Quote / MidLetter)
# join only between two letters, so `federer's` and `x.federer` are tokens of their own while
# `federer.` and `#federer` hold `federer`; Han, Hiragana, Katakana (with the prolonged sound
# mark) and the Southeast Asian scripts are not ALetter, so `はfedererが` holds `federer`; any
# other character (space, `@`, `#`, `/`, emoji) is a boundary. Format characters (soft hyphen,
# bidi marks, joiners) and emoji skin tones right after the word attach to it (WB4).
_NOT_ALETTER = r"\x{30FC}\x{FF70}\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}"
_MID = r".'’:·"
_FORMAT = r"\x{00AD}\x{200C}-\x{200F}\x{202A}-\x{202E}\x{2060}-\x{2064}\x{2066}-\x{206F}\x{FEFF}\x{1F3FB}-\x{1F3FF}"
Q1_TOKEN_REGEX = (
    rf"(^|[^\pL\pN\pM\p{{Pc}}{_MID}]|[{_NOT_ALETTER}]|(^|[^\pL\pM]|[{_NOT_ALETTER}])[{_MID}])"
    r"federer"
    rf"($|[^\pL\pN\pM\p{{Pc}}{_FORMAT}{_MID}]|[{_NOT_ALETTER}]|[{_MID}]($|[^\pL]|[{_NOT_ALETTER}]))"
)
# The simpler approximation suggested in the issue (ASCII classes; `@`, `.`, `'` never a
# boundary): printed for comparison only.
Q1_SIMPLE_REGEX = r"(^|[^[:alnum:]_'.@])federer($|[^[:alnum:]_'.@])"

# records=true: without it (and with one declared column) read_ndjson samples the file at bind
# time to decide whether lines are records, which reads it twice.
DUCK_Q1 = """
SELECT count(*) AS hits
FROM read_ndjson($file, columns = {'text': 'VARCHAR'}, records = true)
WHERE regexp_matches(lower(text), $regex)
"""
# One scan of the file (a materialized CTE) for both aggregations. A terms bucket counts
# documents, not occurrences (list_distinct); ties in count order by key, as Elasticsearch does.
DUCK_Q2 = """
WITH t AS MATERIALIZED (
    SELECT list_distinct([h.text FOR h IN entities.hashtags]) AS tags,
           try_strptime(created_at, '%a %b %d %H:%M:%S %z %Y') AS ts
    FROM read_ndjson($file,
                     columns = {'entities': 'STRUCT(hashtags STRUCT(text VARCHAR)[])',
                                'created_at': 'VARCHAR'},
                     records = true)
),
pairs AS (SELECT unnest(tags) AS tag FROM t),
top AS (SELECT tag, count(*) AS c FROM pairs GROUP BY tag ORDER BY c DESC, tag LIMIT 10),
hours AS (SELECT epoch_ms(ts) // 3600000 * 3600000 AS k, count(*) AS c
          FROM t WHERE ts IS NOT NULL GROUP BY k)
SELECT 'tag' AS kind, tag, NULL::BIGINT AS k, c FROM top
UNION ALL SELECT 'hour', NULL, k, c FROM hours
UNION ALL SELECT 'pairs', NULL, NULL, count(*) FROM pairs
"""
# Not timed: context for Q1's answer.
DUCK_Q1_CONTEXT = """
SELECT count(text) AS with_text,
       count(full_text) AS with_full_text,
       count(*) FILTER (WHERE lower(text) LIKE '%federer%') AS text_substring,
       count(*) FILTER (WHERE regexp_matches(lower(text), $simple)) AS text_simple_regex,
       count(*) FILTER (WHERE regexp_matches(lower(full_text), $regex)) AS full_text_token
FROM read_ndjson($file, columns = {'text': 'VARCHAR', 'full_text': 'VARCHAR'}, records = true)
"""


def run_duckdb(args):
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads = 1")
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    out = {"version": duckdb.__version__, "threads": threads, "runs": args.runs, "queries": {}}
    print(f"duckdb {duckdb.__version__}, threads={threads}, {args.runs} runs per query", file=sys.stderr)
    plans = {
        "Q1": (DUCK_Q1, {"file": args.file, "regex": Q1_TOKEN_REGEX}),
        "Q2": (DUCK_Q2, {"file": args.file}),
    }
    for name, (sql, params) in plans.items():
        walls, cpus, rows = [], [], None
        for _ in range(args.runs):
            c0, t0 = time.process_time(), time.perf_counter()
            got = con.execute(sql, params).fetchall()
            t1, c1 = time.perf_counter(), time.process_time()
            walls.append(t1 - t0)
            cpus.append(c1 - c0)
            if rows is not None and sorted(got, key=repr) != sorted(rows, key=repr):
                sys.exit(f"duckdb {name}: runs gave different answers")
            rows = got
        best = min(range(len(walls)), key=walls.__getitem__)
        print(
            f"duckdb {name}: " + ", ".join(f"{w:.3f} s" for w in walls)
            + f" (best {walls[best]:.3f} s, {args.records / walls[best]:,.0f} rec/s)",
            file=sys.stderr,
        )
        q = {"walls_s": walls, "cpus_s": cpus, "best_s": walls[best], "best_cpu_s": cpus[best]}
        if name == "Q1":
            q["hits"] = rows[0][0]
        else:
            q["tags"] = [[r[1], r[3]] for r in rows if r[0] == "tag"]
            q["hours"] = sorted([r[2], r[3]] for r in rows if r[0] == "hour")
            q["pairs"] = next(r[3] for r in rows if r[0] == "pairs")
        out["queries"][name] = q
    ctx = con.execute(
        DUCK_Q1_CONTEXT,
        {"file": args.file, "simple": Q1_SIMPLE_REGEX, "regex": Q1_TOKEN_REGEX},
    ).fetchone()
    names = ["with_text", "with_full_text", "text_substring", "text_simple_regex", "full_text_token"]
    out["q1_context"] = dict(zip(names, ctx))
    with open(args.out, "w") as f:
        json.dump(out, f)


# --- kappa dev side --------------------------------------------------------------------------


def cpu_seconds(pid):
    """utime + stime of the whole process (all threads), seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


class Client:
    def __init__(self, server):
        u = urllib.parse.urlsplit(server)
        if u.hostname not in ("127.0.0.1", "localhost", "::1"):
            sys.exit(f"refusing non-loopback server {server}")
        self.host, self.port = u.hostname, u.port or 80
        self.conn = None

    def request(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            try:
                self.conn.request(method, path, body=data, headers=headers)
                resp = self.conn.getresponse()
                payload = resp.read()
                return resp.status, json.loads(payload) if payload else None
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


def run_kappa(args):
    body = QUERIES[args.query]
    client = Client(args.server)
    n = args.records
    # The server should be idle after the ingest; measure what idling costs (ticks, etc.).
    c0, t0 = cpu_seconds(args.pid), time.perf_counter()
    time.sleep(1.0)
    idle_cpu_per_s = (cpu_seconds(args.pid) - c0) / (time.perf_counter() - t0)

    timeline = []
    cpu_before = cpu_seconds(args.pid)
    start = time.perf_counter()
    status, created = client.request("POST", "/v1/queries", body)
    posted = time.perf_counter() - start
    if status not in (200, 201):
        sys.exit(f"POST /v1/queries answered {status}: {created}")
    if created.get("shared"):
        sys.exit("the query was already running on this server: not a fresh replay")
    qid = created["id"]
    deadline = start + max(300.0, n / 1000)
    polls = 0
    while True:
        asked = time.perf_counter() - start
        status, got = client.request("GET", f"/v1/queries/{qid}")
        now = time.perf_counter() - start
        polls += 1
        if status != 200:
            sys.exit(f"GET /v1/queries/{qid} answered {status}: {got}")
        progress = got.get("progress", {})
        processed = progress.get("processed", 0)
        # [answered at, processed, caught_up, version, asked at]
        timeline.append(
            [round(now, 4), processed, bool(got.get("caught_up")), got.get("version"), round(asked, 4)]
        )
        if got.get("caught_up") and processed == n:
            break
        if processed > n:
            sys.exit(f"processed {processed} > {n} records: the topic holds more than the file")
        if time.perf_counter() > deadline:
            sys.exit(f"no catch-up after {now:.0f} s: {json.dumps(progress)}")
        time.sleep(POLL_S)
    wall = time.perf_counter() - start
    cpu = cpu_seconds(args.pid) - cpu_before
    first = next((row[0] for row in timeline if row[1] > 0), None)
    out = {
        "query": args.query,
        "body": body,
        "id": qid,
        "post_s": posted,
        "wall_s": wall,
        "cpu_s": cpu,
        "idle_cpu_per_s": idle_cpu_per_s,
        "first_progress_s": first,
        "polls": polls,
        "peak_rss_mib": peak_rss_mib(args.pid),
        "timeline": timeline,
        "final": got,
    }
    print(
        f"kappa dev {args.query}: {qid} caught up over {n} records in {wall:.3f} s "
        f"({n / wall:,.0f} rec/s), server CPU {cpu:.2f} s ({n / cpu if cpu else float('inf'):,.0f} "
        f"rec/CPU-s), version {got.get('version')}, {polls} polls, first progress at "
        f"{first if first is None else round(first, 3)} s, idle CPU {idle_cpu_per_s:.3f} s/s",
        file=sys.stderr,
    )
    with open(args.out, "w") as f:
        json.dump(out, f)


# --- report ----------------------------------------------------------------------------------


def machine_info():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    date = subprocess.run(["date", "-u"], capture_output=True, text=True).stdout.strip()
    load = open("/proc/loadavg").read().split()[:3]
    mem = next(
        (int(line.split()[1]) // 1024 for line in open("/proc/meminfo") if line.startswith("MemTotal")), 0
    )
    return [
        f"date -u:  {date}",
        f"nproc:    {nproc}",
        f"CPU:      {model}",
        f"memory:   {mem} MiB, load average {' '.join(load)} (at report time)",
        f"kernel:   {platform.release()}, Python {platform.python_version()}",
    ]


def compare_q1(k, d, ctx, lines):
    kh = k["final"]["result"]["hits"]["total"]["value"]
    dh = d["hits"]
    lines.append(f"Q1: kappa hits.total.value = {kh}, duckdb count = {dh}")
    lines.append(
        f"    context (duckdb, not timed): {ctx['with_text']} records have `text`, "
        f"{ctx['with_full_text']} have `full_text` instead (the query reads `text` only); "
        f"{ctx['text_substring']} texts hold the substring, the issue's simpler regexp counts "
        f"{ctx['text_simple_regex']}; `federer` tokens in full_text: {ctx['full_text_token']}"
    )
    if kh != dh:
        lines.append(
            "    MISMATCH: DuckDB approximates the standard analyzer's UAX #29 word split with a "
            "regexp; a difference means a word boundary the regexp decides otherwise (e.g. "
            "letters joined by a mid-word character other than . ' ’ : ·, Format/Extend "
            "characters before the word, or scripts with their own segmentation rules)."
        )
    return kh == dh


def compare_q2(k, d, lines):
    aggs = k["final"]["result"]["aggregations"]
    ok = True
    ktags = [[b["key"], b["doc_count"]] for b in aggs["tags"]["buckets"]]
    dtags = d["tags"]
    tags_ok = ktags == dtags
    if not tags_ok:
        # Equal counts at the cut may be ordered or cut differently; that is not a disagreement.
        tags_ok = sorted(c for _, c in ktags) == sorted(c for _, c in dtags) and all(
            a == b for a, b in zip(ktags, dtags) if a[1] != ktags[-1][1]
        )
    ok &= tags_ok
    lines.append(
        "Q2 tags: kappa " + ", ".join(f"{a}={c}" for a, c in ktags)
    )
    lines.append(
        "         duckdb " + ", ".join(f"{a}={c}" for a, c in dtags)
        + f"  -> {'same' if tags_ok else 'DIFFERENT'}"
    )
    kother = aggs["tags"].get("sum_other_doc_count")
    dother = d["pairs"] - sum(c for _, c in dtags)
    other_ok = kother == dother
    ok &= other_ok
    lines.append(
        f"         sum_other_doc_count: kappa {kother}, duckdb {dother} "
        f"(document-tag pairs {d['pairs']} minus the top 10) -> {'same' if other_ok else 'DIFFERENT'}"
    )
    khours = [[b["key"], b["doc_count"]] for b in aggs["per_hour"]["buckets"]]
    dmap = dict((key, c) for key, c in d["hours"])
    if dmap:
        lo, hi = min(dmap), max(dmap)
        # Elasticsearch's date_histogram (min_doc_count 0) lists the empty hours in between.
        dhours = [[key, dmap.get(key, 0)] for key in range(lo, hi + HOUR_MS, HOUR_MS)]
    else:
        dhours = []
    hours_ok = khours == dhours
    ok &= hours_ok
    nonempty = sum(1 for _, c in dhours if c)
    lines.append(
        f"Q2 per_hour: kappa {len(khours)} buckets, {sum(c for _, c in khours)} docs; duckdb "
        f"{len(dhours)} buckets ({nonempty} non-empty, the rest filled as empty), "
        f"{sum(c for _, c in dhours)} docs -> "
        f"{'every key and doc_count the same' if hours_ok else 'DIFFERENT'}"
    )
    if not hours_ok:
        diffs = [
            (a, b) for a, b in zip(khours, dhours) if a != b
        ][:5]
        lines.append(f"         first differences (kappa, duckdb): {diffs}")
    if khours:
        first = aggs["per_hour"]["buckets"][0]
        lines.append(f"         first bucket: {first.get('key_as_string')} = {first['key']} ms")
    return ok


def fmt_rate(x):
    return f"{x:,.0f}"


def run_report(args):
    n = args.records
    with open(args.duckdb) as f:
        duck = json.load(f)
    kappa = {}
    for path in args.kappa:
        with open(path) as f:
            k = json.load(f)
        kappa[k["query"]] = k
    size = os.path.getsize(args.file)
    lines = []
    agree = {}
    if "Q1" in kappa:
        agree["Q1"] = compare_q1(kappa["Q1"], duck["queries"]["Q1"], duck["q1_context"], lines)
    if "Q2" in kappa:
        agree["Q2"] = compare_q2(kappa["Q2"], duck["queries"]["Q2"], lines)

    print()
    print(f"Replay: {n:,} records, {size / 1e6:,.1f} MB ({size / n:,.0f} bytes/record), {args.file}")
    print(
        "kappa dev: --partitions 1, pinned to core 1 (taskset -c 1), fresh server and data dir per "
        "query, time from POST /v1/queries until caught_up and processed == N (polls every 20 ms)"
    )
    print(
        f"DuckDB {duck['version']}: threads={duck['threads']}, read_ndjson with declared columns, "
        f"best of {duck['runs']}, client pinned to core 0"
    )
    print()
    for line in lines:
        print(line)
    print()
    for q in sorted(kappa):
        k = kappa[q]
        t = k["timeline"]
        slowest = max(t, key=lambda row: row[0] - row[4])
        seen = ", ".join(f"{row[1]}@{row[0]:.3f}s" for row in t[:8]) + (" ..." if len(t) > 8 else "")
        print(
            f"{q} kappa dev detail: POST answered in {k['post_s'] * 1000:.1f} ms; {k['polls']} polls "
            f"(processed@answered: {seen}); slowest GET {(slowest[0] - slowest[4]) * 1000:.0f} ms "
            f"(asked at {slowest[4]:.3f} s); last version {k['final'].get('version')}; server CPU "
            f"{k['cpu_s']:.2f} s over {k['wall_s']:.3f} s wall ({k['cpu_s'] / k['wall_s']:.0%} of one "
            f"core; /proc ticks are 10 ms); idle CPU before POST {k['idle_cpu_per_s']:.3f} s/s; "
            f"skipped {k['final']['progress'].get('skipped')}; peak RSS {k['peak_rss_mib']:.0f} MiB"
        )
    for q in sorted(duck["queries"]):
        d = duck["queries"][q]
        print(
            f"{q} duckdb runs: " + ", ".join(f"{w:.3f}" for w in d["walls_s"])
            + f" s (median {statistics.median(d['walls_s']):.3f} s); CPU of the best run "
            f"{d['best_cpu_s']:.2f} s"
        )
    print()
    head = ["query", "kappa dev rec/s (wall)", "kappa rec/CPU-s", "DuckDB rec/s", "DuckDB rec/CPU-s",
            "kappa/DuckDB", "answers agree"]
    rows = []
    for q in sorted(kappa):
        k, d = kappa[q], duck["queries"][q]
        kr = n / k["wall_s"]
        kc = n / k["cpu_s"] if k["cpu_s"] else float("inf")
        dr = n / d["best_s"]
        dc = n / d["best_cpu_s"] if d["best_cpu_s"] else float("inf")
        rows.append([f"{q} {TITLES[q]}", fmt_rate(kr), fmt_rate(kc), fmt_rate(dr), fmt_rate(dc),
                     f"{kr / dr:.2f}x", "yes" if agree.get(q) else "NO"])
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    def line(cells):
        return "| " + " | ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ) + " |"
    print(line(head))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(line(r))
    print()
    for m in machine_info():
        print(m)
    if not all(agree.values()):
        sys.exit(1)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("kappa", help="time one query's replay on a running kappa dev")
    k.add_argument("--query", choices=sorted(QUERIES), required=True)
    k.add_argument("--records", type=int, required=True)
    k.add_argument("--server", required=True)
    k.add_argument("--pid", type=int, required=True)
    k.add_argument("--out", required=True)
    d = sub.add_parser("duckdb", help="time the queries in DuckDB")
    d.add_argument("--file", required=True)
    d.add_argument("--records", type=int, required=True)
    d.add_argument("--runs", type=int, default=3)
    d.add_argument("--out", required=True)
    r = sub.add_parser("report", help="compare answers and print the table")
    r.add_argument("--records", type=int, required=True)
    r.add_argument("--file", required=True)
    r.add_argument("--kappa", nargs="+", required=True)
    r.add_argument("--duckdb", required=True)
    args = p.parse_args()
    {"kappa": run_kappa, "duckdb": run_duckdb, "report": run_report}[args.cmd](args)


if __name__ == "__main__":
    main()
