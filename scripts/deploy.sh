#!/usr/bin/env bash
# Deploy Kappa's OpenWhisk package with wskdeploy.
#
#   scripts/build-actions.sh && scripts/deploy.sh          # native actions (manifest.yaml)
#   scripts/build-actions.sh wasm && scripts/deploy.sh wasm # Node.js/WASM (manifest.wasm.yaml)
#   scripts/build-actions.sh native && scripts/deploy.sh blackbox
#                                   # the native zips on the blackbox ActionLoop image
#                                   # openwhisk/actionloop-base (where rust:1.34 is missing)
#   scripts/build-actions.sh native && docker build -t "$KAPPA_IMAGE" build/image &&
#     docker push "$KAPPA_IMAGE" && scripts/deploy.sh image
#                                   # the binary baked into your image (build/image/Dockerfile),
#                                   # each action's zip only a launcher: the fastest cold start
#   scripts/deploy.sh undeploy [wasm|blackbox|image]
#
# Runs on the deployer's machine, not in this repository's test machine: it needs `wskdeploy`
# (github.com/apache/openwhisk-wskdeploy releases) and credentials in ~/.wskprops (APIHOST,
# AUTH, optionally NAMESPACE; as `wsk property set` writes them). Settings come from the
# environment: KAFKA_BROKERS, REDIS_URL, KAPPA_TOPIC (required), KAPPA_API_KEYS, KAPPA_CONFIG,
# KAPPA_LINK (optional). They become package inputs; native and WASM actions both read them from
# their activation parameters (or from init-time environment variables, which win).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

mode=${1:-native}
flavour=${2:-}
manifest=manifest.yaml
[ "$mode" = wasm ] || [ "$flavour" = wasm ] && manifest=manifest.wasm.yaml
if [ "$mode" = blackbox ] || [ "$flavour" = blackbox ]; then
    # Same package and zips; each action names the image instead of the kind (kind blackbox).
    manifest=$(mktemp --suffix=.yaml -p "$repo")
    trap 'rm -f "$manifest"' EXIT
    sed 's#runtime: rust:1.34#docker: openwhisk/actionloop-base:nightly#' manifest.yaml > "$manifest"
fi

if [ "$mode" = image ] || [ "$flavour" = image ]; then
    [ -n "${KAPPA_IMAGE:-}" ] || { echo "set KAPPA_IMAGE (the image built from build/image)" >&2; exit 1; }
    # Same package; each action names the image (kind blackbox) and deploys the launcher zip.
    manifest=$(mktemp --suffix=.yaml -p "$repo")
    trap 'rm -f "$manifest"' EXIT
    sed -e "s#runtime: rust:1.34#docker: $KAPPA_IMAGE#" \
        -e 's#function: build/actions/[a-z]*\.zip#function: build/actions/launcher.zip#' \
        manifest.yaml > "$manifest"
fi
command -v wskdeploy >/dev/null || {
    echo "wskdeploy not found: install it from the apache/openwhisk-wskdeploy releases" >&2
    exit 1
}
for v in KAFKA_BROKERS REDIS_URL KAPPA_TOPIC; do
    [ -n "${!v:-}" ] || { echo "set $v" >&2; exit 1; }
done
export KAPPA_API_KEYS="${KAPPA_API_KEYS:-}" KAPPA_CONFIG="${KAPPA_CONFIG:-}" KAPPA_LINK="${KAPPA_LINK:-}"

if [ "$mode" = undeploy ]; then
    exec wskdeploy undeploy -m "$manifest"
fi

if [ "$mode" = image ] || [ "$flavour" = image ]; then
    [ -f build/actions/launcher.zip ] || { echo "build/actions/launcher.zip missing: run scripts/build-actions.sh native" >&2; exit 1; }
fi
for action in query status process push tick; do
    suffix=$([ "$manifest" = manifest.wasm.yaml ] && echo -wasm || true)
    [ -f "build/actions/${action}${suffix}.zip" ] || {
        echo "build/actions/${action}${suffix}.zip missing: run scripts/build-actions.sh" >&2
        exit 1
    }
done

wskdeploy -m "$manifest"

echo "deployed $manifest" >&2
