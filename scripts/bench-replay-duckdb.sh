#!/usr/bin/env bash
# Replay speed of `kappa dev` side by side with DuckDB on the same file (issue #12).
#
#   KAPPA_BENCH_RECORDS=200000 scripts/bench-replay-duckdb.sh
#
# 1. builds the release binaries, fetches the base tweets (scripts/fetch-tweets.sh) and writes
#    N records (KAPPA_BENCH_RECORDS, default 200000) of Twitter API wire format with
#    `tweetgen --count N` to .cache/bench/tweets-N.ndjson (reused when it has N lines);
# 2. installs DuckDB's Python package into .cache/bench/venv (duckdb==2.0.1, else the newest);
# 3. for each query, starts a fresh `kappa dev` (fresh data dir, one partition) pinned to core 1
#    with `taskset -c 1`, ingests the file with `kappa ingest` (not timed), then times the replay:
#    POST /v1/queries until GET /v1/queries/{id} shows caught_up and progress.processed == N,
#    polled every 20 ms, and the server's CPU time (utime+stime from /proc/<pid>/stat);
# 4. runs the same two queries in DuckDB (one thread, read_ndjson with declared columns, best of
#    3), checks that both give the same answers, and prints a table.
# The client (Python, DuckDB) runs on core 0. Only loopback is used.
#
# Pinned to one core, kappa dev's tokio runtime has one worker thread, and a replay holds it
# from batch to batch: GETs are answered only once the replay is over, so the polls see no
# intermediate progress (the timing is still POST to caught-up). TOKIO_WORKER_THREADS=2 in the
# environment gives the server a second worker on the same core.
#
# Environment: KAPPA_BENCH_RECORDS (200000), KAPPA_BENCH_BATCH_RECORDS (kappa dev's
# --batch-records; its default when unset), KAPPA_BENCH_DUCKDB_RUNS (3).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
records=${KAPPA_BENCH_RECORDS:-200000}
bench="$repo/.cache/bench"
data="$bench/tweets-$records.ndjson"
venv="$bench/venv"
helper="$repo/scripts/bench_replay_duckdb.py"
step() { printf '\n==> %s\n' "$*" >&2; }

if ! [[ "$records" =~ ^[1-9][0-9]*$ ]]; then
    echo "KAPPA_BENCH_RECORDS must be a positive integer, not '$records'" >&2
    exit 2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kappa-bench.XXXXXX")
server_pid=
stop_server() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    server_pid=
}
cleanup() {
    stop_server
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "build (release): kappa, tweetgen"
cargo build --release -p kappa -p kappa-tweetgen
kappa="$repo/target/release/kappa"
tweetgen="$repo/target/release/tweetgen"

step "data: $records records"
scripts/fetch-tweets.sh >&2
mkdir -p "$bench"
if [[ -f "$data" ]] && [[ "$(wc -l <"$data")" -eq "$records" ]]; then
    echo "reusing $data" >&2
else
    "$tweetgen" --count "$records" >"$data.part"
    mv "$data.part" "$data"
fi
bytes=$(stat -c %s "$data")
echo "$data: $records records, $bytes bytes ($((bytes / records)) bytes/record)" >&2

step "duckdb (Python) in $venv"
py="$venv/bin/python"
if ! [[ -x "$py" ]] || ! "$py" -c 'import duckdb' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check duckdb==2.0.1 ||
        "$venv/bin/pip" install -q --disable-pip-version-check duckdb
fi
echo "duckdb $("$py" -c 'import duckdb; print(duckdb.__version__)')" >&2

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts a fresh `kappa dev` on core 1 with the file ingested; sets server_pid and port.
start_server() {
    local name=$1 dir="$tmp/data-$1" log="$tmp/server-$1.log"
    port=$(free_port)
    local args=(dev --listen "127.0.0.1:$port" --data-dir "$dir" --partitions 1)
    if [[ -n "${KAPPA_BENCH_BATCH_RECORDS:-}" ]]; then
        args+=(--batch-records "$KAPPA_BENCH_BATCH_RECORDS")
    fi
    mkdir -p "$dir"
    taskset -c 1 "$kappa" "${args[@]}" >"$log" 2>&1 &
    server_pid=$!
    for _ in $(seq 300); do
        if curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then break; fi
        if ! kill -0 "$server_pid" 2>/dev/null; then
            echo "kappa dev exited; its log:" >&2
            cat "$log" >&2
            exit 1
        fi
        sleep 0.1
    done
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null
    echo "kappa dev pid $server_pid on 127.0.0.1:$port (taskset -c 1), data dir $dir" >&2
    local t0=$SECONDS
    taskset -c 0 "$kappa" ingest "$data" --topic tweets --server "http://127.0.0.1:$port" 2>&1 |
        tail -n 1 >&2
    echo "ingested in $((SECONDS - t0)) s (not timed)" >&2
}

echo "load average before measuring: $(cut -d' ' -f1-3 /proc/loadavg) (other work skews the figures)" >&2
for q in Q1 Q2; do
    step "kappa dev: $q (fresh server, fresh data dir)"
    start_server "$q"
    taskset -c 0 "$py" "$helper" kappa --query "$q" --records "$records" \
        --server "http://127.0.0.1:$port" --pid "$server_pid" --out "$tmp/kappa-$q.json"
    stop_server
done

step "duckdb: Q1, Q2 (threads=1, core 0)"
taskset -c 0 "$py" "$helper" duckdb --file "$data" --records "$records" \
    --runs "${KAPPA_BENCH_DUCKDB_RUNS:-3}" --out "$tmp/duckdb.json"

step "report"
"$py" "$helper" report --records "$records" --file "$data" \
    --kappa "$tmp/kappa-Q1.json" "$tmp/kappa-Q2.json" --duckdb "$tmp/duckdb.json"
