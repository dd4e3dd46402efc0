#!/usr/bin/env bash
# Usage: scripts/actionloop.sh COMMAND [ARGS...]
#
# The real Apache OpenWhisk ActionLoop proxy (Go module
# github.com/apache/openwhisk-runtime-go, package ./main = main/proxy.go) as a
# local test harness for our action executables.
#
# Commands:
#   build                build the proxy into $KAPPA_CACHE/bin/actionloop-proxy (idempotent).
#                        Source, first found:
#                          ACTIONLOOP_SRC=DIR      a checkout of openwhisk-runtime-go
#                          ACTIONLOOP_VERSION=V    module version through the Go module
#                                                  proxy (default "latest"; the repo has no
#                                                  semver tags, so use a pseudo-version
#                                                  v0.0.0-YYYYMMDDhhmmss-abcdef123456)
#                        Exit 3 when no source can be had (tests should then skip).
#   path                 print the proxy binary path; exit 1 if not built
#   selftest             build if needed, then in a private network namespace: start the
#                        proxy, GET /, POST /init with a zipped bash `exec`, POST /run twice,
#                        check results and log sentinels
#   serve PORT [DIR]     run the proxy (cwd DIR, default a fresh temp dir) in its own network
#                        namespace and forward 127.0.0.1:PORT to its fixed port 8080 (socat);
#                        prints ACTIONLOOP_URL=http://127.0.0.1:PORT; logs in DIR/proxy.{out,err}
#   unserve PORT         stop what `serve PORT` started
#   -h | --help | help   this text
#
# Environment: KAPPA_CACHE (default <repo>/.cache), KAPPA_RUN (default $KAPPA_CACHE/run),
#   ACTIONLOOP_SRC, ACTIONLOOP_VERSION, ACTIONLOOP_BIN (use this binary instead of building),
#   ACTIONLOOP_ARGS (extra proxy flags for selftest/serve, e.g. -debug).
#
# Why a network namespace: main/proxy.go calls ap.Start(8080): the port is hard-coded
# and it listens on all interfaces. `unshare -n` gives each proxy its own loopback.
#
# What the proxy serves (openwhisk/actionProxy.go ServeHTTP): POST /init, POST /run;
# any other path gets an empty 200 (so GET / is a liveness probe).
#
# The protocol, as the OpenWhisk invoker speaks it (ContainerProxy / Container.scala):
#   POST /init  {"value":{"name":"selftest","main":"main","code":"<base64 of a zip whose top
#                level holds an executable `exec`>","binary":true,
#                "env":{"__OW_NAMESPACE":"guest","__OW_ACTION_NAME":"/guest/selftest",
#                       "__OW_API_KEY":"u:k", ...string values...}}}
#               -> 200 {"ok":true}; a second /init -> 403 (unless the proxy runs -debug).
#               The proxy unzips into ./action/N/, runs bin/exec with NO inherited env
#               except __OW_* vars and the init `env` map; fd 3 is a pipe back to it.
#   POST /run   {"value":{...params...},"namespace":"guest","action_name":"/guest/selftest",
#                "action_version":"0.0.1","activation_id":"<id>","transaction_id":"<id>",
#                "deadline":"<epoch ms as a STRING>","api_key":"u:k"}
#               The proxy strips raw newlines and writes the body as ONE line to the exec's
#               stdin; the exec writes ONE JSON line (object or array) to fd 3, which becomes
#               the HTTP 200 body. Then the proxy writes XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX
#               to its stdout and stderr. Not JSON -> 502; exec exited -> 400 then 500.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${KAPPA_CACHE:-$repo/.cache}"
run="${KAPPA_RUN:-$cache/run}"
bin="${ACTIONLOOP_BIN:-$cache/bin/actionloop-proxy}"
module="github.com/apache/openwhisk-runtime-go"
version="${ACTIONLOOP_VERSION:-latest}"
sentinel="XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"

log() { printf 'actionloop.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }

apt_install() { # apt_install PACKAGE...
    local sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    if ! apt-cache show "$1" >/dev/null 2>&1; then
        "${sudo[@]}" apt-get update -q >&2
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2
}

need_cmd() { # need_cmd COMMAND DEBIAN_PACKAGE
    command -v "$1" >/dev/null 2>&1 || apt_install "$2"
}

# Build ./main of a source tree that holds the module's go.mod.
build_tree() {
    local src="$1"
    [[ -f "$src/go.mod" && -f "$src/main/proxy.go" ]] || die "$src: no go.mod + main/proxy.go"
    mkdir -p "$(dirname "$bin")"
    (cd "$src" && CGO_ENABLED=0 GOFLAGS=-modcacherw GOMODCACHE="$cache/gomod" \
        go build -trimpath -ldflags '-s -w' -o "$bin.tmp" ./main)
    mv "$bin.tmp" "$bin"
}

build() {
    if [[ -x "$bin" ]]; then
        return 0
    fi
    [[ -z "${ACTIONLOOP_BIN:-}" ]] || die "ACTIONLOOP_BIN=$ACTIONLOOP_BIN is not executable"
    command -v go >/dev/null 2>&1 || die "go not found"
    local t0=$SECONDS
    if [[ -n "${ACTIONLOOP_SRC:-}" ]]; then
        log "building from ACTIONLOOP_SRC=$ACTIONLOOP_SRC"
        build_tree "$ACTIONLOOP_SRC"
    else
        log "fetching $module@$version through the Go module proxy..."
        local json dir work
        if ! json="$(GOFLAGS=-modcacherw GOMODCACHE="$cache/gomod" \
            go mod download -json "$module@$version" 2>&1)"; then
            log "the Go module proxy did not serve $module@$version:"
            printf '%s\n' "$json" | sed -n 's/.*"Error": *"\(.*\)".*/  \1/p' >&2
            log "set ACTIONLOOP_VERSION to a served pseudo-version, or ACTIONLOOP_SRC to a checkout"
            exit 3
        fi
        dir="$(printf '%s\n' "$json" | sed -n 's/.*"Dir": *"\(.*\)".*/\1/p' | head -n1)"
        [[ -d "$dir" ]] || die "go mod download gave no Dir"
        work="$cache/actionloop-src"
        rm -rf "$work"
        cp -r "$dir" "$work"
        chmod -R u+w "$work"
        build_tree "$work"
    fi
    log "built $bin in $((SECONDS - t0)) s"
}

# `unshare` command for a new network namespace (a user namespace too when not root).
netns=(unshare -n)
[[ $(id -u) -eq 0 ]] || netns=(unshare -rn)

selftest() {
    if [[ ! -x "$bin" ]]; then
        build
    fi
    need_cmd curl curl
    need_cmd zip zip
    need_cmd unshare util-linux
    need_cmd ip iproute2
    local tmp
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/actionloop-selftest.XXXXXX")"
    # shellcheck disable=SC2064 # expand $tmp now
    trap "rm -rf '$tmp'" EXIT

    # The action: pure bash (the proxy gives the exec no PATH), one line in, one line out on fd 3.
    cat >"$tmp/exec" <<'EOF'
#!/bin/bash
n=0
while IFS= read -r line; do
    n=$((n + 1))
    aid=unknown
    [[ $line =~ \"activation_id\":\"([^\"]*)\" ]] && aid="${BASH_REMATCH[1]}"
    name=world
    [[ $line =~ \"name\":\"([^\"]*)\" ]] && name="${BASH_REMATCH[1]}"
    deadline=none
    [[ $line =~ \"deadline\":\"([0-9]+)\" ]] && deadline="${BASH_REMATCH[1]}"
    echo "selftest stdout log $n"
    echo "selftest stderr log $n" >&2
    printf '{"greeting":"hello %s","activation_id":"%s","deadline":"%s","count":%d,"init_ns":"%s"}\n' \
        "$name" "$aid" "$deadline" "$n" "${__OW_NAMESPACE:-}" >&3
done
EOF
    chmod +x "$tmp/exec"
    (cd "$tmp" && zip -q -j exec.zip exec)
    local code deadline
    code="$(base64 -w0 "$tmp/exec.zip")"
    deadline="$(($(date +%s) * 1000 + 60000))"
    printf '{"value":{"name":"selftest","main":"main","code":"%s","binary":true,"env":{"__OW_NAMESPACE":"guest","__OW_ACTION_NAME":"/guest/selftest","__OW_API_KEY":"u:k"}}}' \
        "$code" >"$tmp/init.json"
    for i in 1 2; do
        printf '{"value":{"name":"kappa%s"},"namespace":"guest","action_name":"/guest/selftest","action_version":"0.0.1","activation_id":"act%s","transaction_id":"tx%s","deadline":"%s","api_key":"u:k"}' \
            "$i" "$i" "$i" "$deadline" >"$tmp/run$i.json"
    done

    cat >"$tmp/inside.sh" <<'EOF'
set -euo pipefail
tmp="$1" bin="$2"
shift 2
ip link set lo up
mkdir -p "$tmp/work"
cd "$tmp/work"
"$bin" "$@" >"$tmp/proxy.out" 2>"$tmp/proxy.err" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/8080) 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { echo "proxy exited" >&2; cat "$tmp/proxy.err" >&2; exit 1; }
    sleep 0.05
done
c() { curl -sS --max-time 10 -o "$tmp/$1.body" -w '%{http_code}' "${@:2}"; }
echo "GET / -> $(c get http://127.0.0.1:8080/)"
echo "POST /init -> $(c init -X POST -H 'Content-Type: application/json' --data-binary @"$tmp/init.json" http://127.0.0.1:8080/init) $(cat "$tmp/init.body")"
for i in 1 2; do
    echo "POST /run $i -> $(c "run$i" -X POST -H 'Content-Type: application/json' --data-binary @"$tmp/run$i.json" http://127.0.0.1:8080/run) $(cat "$tmp/run$i.body")"
done
echo "POST /init again -> $(c reinit -X POST -H 'Content-Type: application/json' --data-binary @"$tmp/init.json" http://127.0.0.1:8080/init)"
EOF
    local report
    report="$("${netns[@]}" bash "$tmp/inside.sh" "$tmp" "$bin" ${ACTIONLOOP_ARGS:+"$ACTIONLOOP_ARGS"})" ||
        { printf '%s\n' "$report" >&2; die "selftest: harness failed"; }
    printf '%s\n' "$report" >&2
    local ok=1
    grep -q '^GET / -> 200' <<<"$report" || { log "FAIL: GET /"; ok=0; }
    grep -q '^POST /init -> 200 .*"ok": *true' <<<"$report" || { log "FAIL: /init"; ok=0; }
    grep -q '^POST /run 1 -> 200 {"greeting":"hello kappa1","activation_id":"act1","deadline":"'"$deadline"'","count":1,"init_ns":"guest"}' <<<"$report" ||
        { log "FAIL: /run 1"; ok=0; }
    grep -q '^POST /run 2 -> 200 {"greeting":"hello kappa2","activation_id":"act2",.*"count":2,' <<<"$report" ||
        { log "FAIL: /run 2 (warm executable kept its state?)"; ok=0; }
    if [[ -z "${ACTIONLOOP_ARGS:-}" ]]; then
        grep -q '^POST /init again -> 403' <<<"$report" || { log "FAIL: second /init not refused"; ok=0; }
    fi
    [[ "$(grep -c "^$sentinel\$" "$tmp/proxy.out")" -eq 2 ]] || { log "FAIL: stdout sentinels"; ok=0; }
    [[ "$(grep -c "^$sentinel\$" "$tmp/proxy.err")" -eq 2 ]] || { log "FAIL: stderr sentinels"; ok=0; }
    grep -q 'selftest stdout log 2' "$tmp/proxy.out" || { log "FAIL: action stdout"; ok=0; }
    grep -q 'selftest stderr log 2' "$tmp/proxy.err" || { log "FAIL: action stderr"; ok=0; }
    if [[ $ok -eq 1 ]]; then
        echo "actionloop selftest: OK ($bin)"
    else
        log "proxy stdout:"; cat "$tmp/proxy.out" >&2
        log "proxy stderr:"; cat "$tmp/proxy.err" >&2
        die "selftest failed"
    fi
}

serve() {
    local port="${1:?usage: serve PORT [DIR]}" dir="${2:-}"
    [[ -x "$bin" ]] || build
    need_cmd socat socat
    need_cmd nsenter util-linux
    need_cmd ip iproute2
    local sdir="$run/actionloop/$port"
    if [[ -f "$sdir/proxy.pid" ]] && kill -0 "$(cat "$sdir/proxy.pid")" 2>/dev/null; then
        echo "ACTIONLOOP_URL=http://127.0.0.1:$port"
        return 0
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "port $port already in use"
    fi
    mkdir -p "$sdir"
    [[ -n "$dir" ]] || dir="$(mktemp -d "$sdir/work.XXXXXX")"
    mkdir -p "$dir"
    # A simple command in the background: $! is unshare, which execs bash, which execs the
    # proxy; so $! ends up being the proxy, inside its own netns.
    # shellcheck disable=SC2016 # expanded by the inner bash
    "${netns[@]}" bash -c 'ip link set lo up && cd "$1" && shift && exec "$@"' _ "$dir" "$bin" \
        ${ACTIONLOOP_ARGS:+"$ACTIONLOOP_ARGS"} >"$dir/proxy.out" 2>"$dir/proxy.err" </dev/null &
    local pid=$!
    echo "$pid" >"$sdir/proxy.pid"
    local i
    for ((i = 0; i < 100; i++)); do
        nsenter -t "$pid" -n bash -c '(exec 3<>/dev/tcp/127.0.0.1/8080)' 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || die "proxy exited (see $dir/proxy.err)"
        sleep 0.05
    done
    socat "TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr,fork" \
        "SYSTEM:nsenter -t $pid -n socat STDIO TCP\:127.0.0.1\:8080" \
        >"$sdir/socat.log" 2>&1 </dev/null &
    echo $! >"$sdir/socat.pid"
    for ((i = 0; i < 100; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.05
    done
    log "proxy pid $pid (cwd $dir), forwarder pid $(cat "$sdir/socat.pid")"
    echo "ACTIONLOOP_URL=http://127.0.0.1:$port"
}

unserve() {
    local port="${1:?usage: unserve PORT}" sdir f pid
    sdir="$run/actionloop/$port"
    for f in socat proxy; do
        [[ -f "$sdir/$f.pid" ]] || continue
        pid="$(cat "$sdir/$f.pid")"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        rm -f "$sdir/$f.pid"
    done
}

cmd="${1:-}"
[[ $# -gt 0 ]] && shift
case "$cmd" in
    build) build ;;
    path)
        [[ -x "$bin" ]] || { log "not built (scripts/actionloop.sh build)"; exit 1; }
        echo "$bin"
        ;;
    selftest) selftest ;;
    serve) serve "$@" ;;
    unserve) unserve "$@" ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
esac
