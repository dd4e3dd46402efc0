#!/usr/bin/env bash
# Build or install OpenWhisk's real parts into the repository's cache, for the tests and the
# benchmark that run Kappa's package through them:
#
#   scripts/openwhisk-tools.sh [TOOL...]     # TOOL: wskdeploy, proxy, nodejs, serverless;
#                                            # none = all four
#   scripts/openwhisk-tools.sh env           # build what is missing, then print
#                                            # `export KAPPA_...=...` lines for `eval`
#   scripts/openwhisk-tools.sh -h | --help
#
# What each is, and where it comes from:
#   wskdeploy   $KAPPA_CACHE/openwhisk/bin/wskdeploy: Apache OpenWhisk's deployment tool, built
#               by $KAPPA_SHARED/tools/wskdeploy.sh from the vendored source (Go; the Go module
#               proxy serves its third-party modules)
#   proxy       $KAPPA_CACHE/openwhisk/bin/actionloop-proxy: the ActionLoop proxy of the
#               rust:1.34 / blackbox images (openwhisk-runtime-go), by
#               $KAPPA_SHARED/tools/actionloop-proxy.sh (Go, offline); PORT=... selects its port
#   nodejs      $KAPPA_CACHE/openwhisk/nodejs-runtime/app.js: the nodejs:20 action runtime
#               (openwhisk-runtime-nodejs), by $KAPPA_SHARED/tools/nodejs-runtime.sh (npm)
#   serverless  $KAPPA_CACHE/openwhisk/serverless/node_modules/.bin/serverless: Serverless
#               Framework v3 and the serverless-openwhisk plugin, from the npm registry
#
# Each is rebuilt only when its inputs changed (the vendored source and the build script, hashed
# into a stamp file beside it), so a second run takes well under a second.
#
# Environment: KAPPA_SHARED (default <repo>/../shared: the folder holding tools/ and vendor/; CI
# runs a clean clone whose parent holds it), KAPPA_CACHE (default <repo>/.cache).
# `env` prints KAPPA_WSKDEPLOY, KAPPA_ACTIONLOOP_PROXY, KAPPA_NODEJS_RUNTIME, KAPPA_SERVERLESS.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cache="${KAPPA_CACHE:-$repo/.cache}"
out="$cache/openwhisk"
shared="${KAPPA_SHARED:-$repo/../shared}"
log() { printf 'openwhisk-tools: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
    export PATH="/usr/local/go/bin:$PATH"
fi

need_shared() {
    [ -d "$shared/tools" ] && [ -d "$shared/vendor" ] || die "no shared folder at $shared \
(tools/ and vendor/ with OpenWhisk's sources): set KAPPA_SHARED to it"
    shared=$(cd "$shared" && pwd)
}

# A hash of the inputs of one tool: its build script and the vendored folders it builds from.
inputs_hash() { # inputs_hash SCRIPT DIR...
    local script=$1
    shift
    {
        sha256sum "$script"
        (cd "$shared/vendor" && find "$@" -type f -print0 | sort -z | xargs -0 sha256sum)
    } | sha256sum | cut -d' ' -f1
}

# fresh STAMP HASH: whether STAMP holds HASH.
fresh() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }

build_go_tool() { # build_go_tool NAME SCRIPT VENDOR_DIR...
    local name=$1 script=$2
    shift 2
    local target="$out/bin/$name" hash
    hash=$(inputs_hash "$shared/tools/$script" "$@")
    if [ -x "$target" ] && fresh "$target.stamp" "$hash"; then
        return 0
    fi
    command -v go >/dev/null 2>&1 || die "$name needs the Go toolchain (1.21+)"
    log "building $name ($script)"
    mkdir -p "$out/bin"
    "$shared/tools/$script" "$target.tmp" >&2
    mv "$target.tmp" "$target"
    printf '%s\n' "$hash" >"$target.stamp"
}

wskdeploy() { build_go_tool wskdeploy wskdeploy.sh openwhisk-wskdeploy openwhisk-client-go; }
proxy() { build_go_tool actionloop-proxy actionloop-proxy.sh openwhisk-runtime-go; }

nodejs() {
    local target="$out/nodejs-runtime" hash
    hash=$(inputs_hash "$shared/tools/nodejs-runtime.sh" openwhisk-runtime-nodejs)
    if [ -f "$target/app.js" ] && fresh "$out/nodejs-runtime.stamp" "$hash"; then
        return 0
    fi
    command -v node >/dev/null 2>&1 || die "the nodejs:20 runtime needs node"
    log "installing the nodejs:20 runtime"
    rm -rf "$target"
    "$shared/tools/nodejs-runtime.sh" "$target" >&2
    printf '%s\n' "$hash" >"$out/nodejs-runtime.stamp"
}

# Serverless Framework v3 (v4 asks for a login) and the OpenWhisk provider plugin.
SERVERLESS_PACKAGES="serverless@3 serverless-openwhisk"
serverless() {
    local target="$out/serverless"
    if [ -x "$target/node_modules/.bin/serverless" ] &&
        fresh "$target/stamp" "$SERVERLESS_PACKAGES"; then
        return 0
    fi
    command -v npm >/dev/null 2>&1 || die "serverless needs npm"
    log "installing $SERVERLESS_PACKAGES from the npm registry"
    mkdir -p "$target"
    # shellcheck disable=SC2086 # the list is words
    (cd "$target" && npm install --no-audit --no-fund --no-package-lock --loglevel=error \
        $SERVERLESS_PACKAGES >&2)
    printf '%s\n' "$SERVERLESS_PACKAGES" >"$target/stamp"
}

print_env() {
    printf 'export KAPPA_WSKDEPLOY=%q\n' "$out/bin/wskdeploy"
    printf 'export KAPPA_ACTIONLOOP_PROXY=%q\n' "$out/bin/actionloop-proxy"
    printf 'export KAPPA_NODEJS_RUNTIME=%q\n' "$out/nodejs-runtime"
    printf 'export KAPPA_SERVERLESS=%q\n' "$out/serverless/node_modules/.bin/serverless"
}

[ $# -gt 0 ] || set -- wskdeploy proxy nodejs serverless
case "$1" in -h | --help | help) usage; exit 0 ;; esac
for tool in "$@"; do
    case "$tool" in
        wskdeploy | proxy | nodejs) need_shared; "$tool" ;;
        serverless) serverless ;;
        env) need_shared; wskdeploy; proxy; nodejs; serverless; print_env ;;
        *) usage >&2; exit 2 ;;
    esac
done
