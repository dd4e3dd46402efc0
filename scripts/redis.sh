#!/usr/bin/env bash
# Usage: scripts/redis.sh COMMAND [ARGS...]
#
# Our own Redis server for tests (Debian's redis-server package), on loopback,
# with AOF persistence (appendfsync always) so that a restart keeps the data.
# The Debian service (port 6379), if the package starts it, is not used.
#
# Commands:
#   install              apt-get install -y redis-server (apt-get update first only if
#                        the package is unknown); no-op when redis-server is present
#   start                install if needed, start daemonized, wait for PING -> PONG,
#                        print REDIS_URL=redis://127.0.0.1:PORT (already running -> just print)
#   stop                 SHUTDOWN (AOF is fsynced), wait for the process to exit
#   restart              stop + start, keeping the data
#   kill                 SIGKILL the server (crash simulation; AOF keeps acknowledged writes)
#   reset                stop and wipe the data directory
#   status               exit 0 and print REDIS_URL=... if it answers PING, else exit 1
#   cli [ARGS...]        redis-cli against our server, e.g. `cli SET k v`
#   -h | --help | help   this text
#
# Environment:
#   KAPPA_CACHE  cache dir (default: <repo>/.cache, gitignored)
#   KAPPA_RUN    data/log/pid dir (default: $KAPPA_CACHE/run)
#   REDIS_PORT   port (default 16379), bound to 127.0.0.1
#
# Layout: $KAPPA_RUN/redis/{data/,redis.pid,redis.log}
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${KAPPA_CACHE:-$repo/.cache}"
run="${KAPPA_RUN:-$cache/run}"
port="${REDIS_PORT:-16379}"
rdir="$run/redis"
data="$rdir/data"
pidfile="$rdir/redis.pid"
logfile="$rdir/redis.log"
url="redis://127.0.0.1:$port"

script=redis.sh
process_pattern='redis-server'
# shellcheck source=scripts/lib.sh
. "$repo/scripts/lib.sh"

install() {
    if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
        return 0
    fi
    local t0=$SECONDS sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    if ! apt-cache show redis-server >/dev/null 2>&1; then
        log "apt-get update..."
        "${sudo[@]}" apt-get update -q >&2
    fi
    log "apt-get install redis-server..."
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >&2
    log "installed $(redis-server --version | cut -d' ' -f3) in $((SECONDS - t0)) s"
}

cli() { redis-cli -h 127.0.0.1 -p "$port" "$@"; }

pong() { [[ "$(cli PING 2>/dev/null || true)" == "PONG" ]]; }

wait_gone() {
    local pid="$1" i
    for ((i = 0; i < 200; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.05
    done
    return 1
}

start() {
    if pid_alive && pong; then
        echo "REDIS_URL=$url"
        return 0
    fi
    install
    if pong; then
        die "port $port already serves a Redis that is not ours (no live pid in $pidfile)"
    fi
    mkdir -p "$data"
    rm -f "$pidfile"
    redis-server \
        --port "$port" --bind 127.0.0.1 --protected-mode yes \
        --daemonize yes --pidfile "$pidfile" --logfile "$logfile" \
        --dir "$data" \
        --appendonly yes --appendfsync always --save "" \
        --databases 16 >&2
    local i
    for ((i = 0; i < 200; i++)); do
        pong && break
        sleep 0.05
    done
    pong || { tail -n 20 "$logfile" >&2 || true; die "redis did not answer PING"; }
    # Debian's redis writes the pid file a moment after it answers.
    for ((i = 0; i < 100; i++)); do
        [[ -s "$pidfile" ]] && break
        sleep 0.02
    done
    echo "REDIS_URL=$url"
}

stop() {
    if ! pid_alive; then
        rm -f "$pidfile"
        return 0
    fi
    local pid
    pid="$(cat "$pidfile")"
    cli SHUTDOWN >/dev/null 2>&1 || true
    if ! wait_gone "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        wait_gone "$pid" || { kill -KILL "$pid" 2>/dev/null || true; wait_gone "$pid" || true; }
    fi
    rm -f "$pidfile"
    log "redis stopped"
}

crash() {
    if pid_alive; then
        local pid
        pid="$(cat "$pidfile")"
        kill -KILL "$pid"
        wait_gone "$pid" || true
        rm -f "$pidfile"
        log "redis killed (SIGKILL)"
    fi
}

cmd="${1:-}"
[[ $# -gt 0 ]] && shift
case "$cmd" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    restart) stop; start ;;
    kill) crash ;;
    reset)
        stop
        rm -rf "$data"
        log "data wiped ($data)"
        ;;
    status)
        if pid_alive && pong; then
            echo "REDIS_URL=$url"
        else
            log "not running"
            exit 1
        fi
        ;;
    cli) cli "$@" ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
esac
