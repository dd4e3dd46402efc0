# Helpers the service scripts (kafka.sh, redis.sh, opensearch.sh) share. Source it after
# setting `script` (the name messages start with), `pidfile` and `process_pattern` (what the
# service's command line contains):
#   script=kafka.sh; pidfile=...; process_pattern='kafka\.Kafka'; . "$repo/scripts/lib.sh"

log() { printf '%s: %s\n' "$script" "$*" >&2; }
die() { log "error: $*"; exit 1; }
# The comment block at the top of the running script, up to `set -euo`.
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

# The process named in $pidfile runs and its command line matches $process_pattern (a pid
# reused by another program does not count).
pid_alive() {
    [[ -f "$pidfile" ]] || return 1
    local pid
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null &&
        grep -q -- "$process_pattern" "/proc/$pid/cmdline" 2>/dev/null
}

# The process just started is alive. Not pid_alive: right after `nohup java &` the child may
# not have become java yet (its command line is still the shell's), which would read as exited.
started_alive() {
    local pid
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Stop the service in $pidfile: SIGTERM, then SIGKILL after 30 s; `what` names it in messages
# (`stop_service broker`). Returns once the process is gone and the pid file removed.
stop_service() {
    local what=$1 pid i
    if ! pid_alive; then
        rm -f "$pidfile"
        return 0
    fi
    pid="$(cat "$pidfile")"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$what did not stop within 30 s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
    rm -f "$pidfile"
}
