#!/usr/bin/env bash
# Usage: scripts/services.sh up|down|status
#
# Starts (or stops) the test services: a Kafka broker (scripts/kafka.sh), a
# Redis server (scripts/redis.sh) and an OpenSearch node (scripts/opensearch.sh,
# the reference of the differential tests), installing them first if needed.
#
#   up      start all three and print, on stdout only,
#               export KAFKA_BROKERS=127.0.0.1:19092
#               export REDIS_URL=redis://127.0.0.1:16379
#               export OPENSEARCH_URL=http://127.0.0.1:19200
#           so that `eval "$(scripts/services.sh up)"` sets them; all other output
#           goes to stderr. Idempotent.
#   down    stop all three (data is kept; use `scripts/kafka.sh reset` / `scripts/redis.sh reset`
#           to wipe it)
#   status  print the export lines of the running services; exit 1 if one is down
#
# Environment: KAPPA_CACHE, KAPPA_RUN, KAFKA_PORT, REDIS_PORT, OPENSEARCH_PORT (see the scripts).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }

# Run a service script, keep only its NAME=value line (as `export ...`) on stdout.
exports_of() {
    local out line
    out="$("$@")" || return 1
    while IFS= read -r line; do
        case "$line" in
            KAFKA_BROKERS=* | REDIS_URL=* | OPENSEARCH_URL=*) printf 'export %s\n' "$line" ;;
            *) [[ -z "$line" ]] || printf '%s\n' "$line" >&2 ;;
        esac
    done <<<"$out"
}

case "${1:-}" in
    up)
        exports_of "$here/kafka.sh" start
        exports_of "$here/redis.sh" start
        exports_of "$here/opensearch.sh" start
        ;;
    down)
        rc=0
        "$here/kafka.sh" stop >&2 || rc=1
        "$here/redis.sh" stop >&2 || rc=1
        "$here/opensearch.sh" stop >&2 || rc=1
        exit "$rc"
        ;;
    status)
        rc=0
        exports_of "$here/kafka.sh" status || rc=1
        exports_of "$here/redis.sh" status || rc=1
        exports_of "$here/opensearch.sh" status || rc=1
        exit "$rc"
        ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
esac
