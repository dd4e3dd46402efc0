#!/usr/bin/env bash
# Deploy Kappa's OpenWhisk package with wskdeploy.
#
#   scripts/build-actions.sh && scripts/deploy.sh          # native actions (manifest.yaml)
#   scripts/build-actions.sh wasm && scripts/deploy.sh wasm # Node.js/WASM (manifest.wasm.yaml)
#   scripts/deploy.sh undeploy [wasm]
#
# Runs on the deployer's machine, not in this repository's test machine: it needs `wskdeploy`
# (github.com/apache/openwhisk-wskdeploy releases) and credentials in ~/.wskprops (APIHOST,
# AUTH, optionally NAMESPACE; as `wsk property set` writes them), plus curl and jq for the
# native fix-up below. Settings come from the environment: KAFKA_BROKERS, REDIS_URL,
# KAPPA_TOPIC (required), KAPPA_API_KEYS, KAPPA_CONFIG, KAPPA_LINK (optional).
#
# Native fix-up: the native `exec` reads its settings from its process environment, and
# OpenWhisk only puts parameters there that are marked init-time (`"init": true`), which
# neither wskdeploy nor wsk can set. So after wskdeploy this script moves the package's inputs
# onto each native action as init-time parameters through the REST API, and clears them from
# the package (otherwise they would also arrive as event fields, which the events reject).
# The WASM actions read their settings from their parameters and need no fix-up.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

mode=${1:-native}
flavour=${2:-}
manifest=manifest.yaml
[ "$mode" = wasm ] || [ "$flavour" = wasm ] && manifest=manifest.wasm.yaml

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

for action in query status process push tick; do
    suffix=$([ "$manifest" = manifest.wasm.yaml ] && echo -wasm || true)
    [ -f "build/actions/${action}${suffix}.zip" ] || {
        echo "build/actions/${action}${suffix}.zip missing: run scripts/build-actions.sh" >&2
        exit 1
    }
done

wskdeploy -m "$manifest"

if [ "$manifest" = manifest.yaml ]; then
    # Credentials from ~/.wskprops (or WSK_CONFIG_FILE), never printed.
    props="${WSK_CONFIG_FILE:-$HOME/.wskprops}"
    apihost=$(sed -n 's/^APIHOST=//p' "$props" | tail -1)
    auth=$(sed -n 's/^AUTH=//p' "$props" | tail -1)
    case "$apihost" in http*) ;; *) apihost="https://$apihost" ;; esac
    api="$apihost/api/v1/namespaces/_"
    init=$(jq -n --arg k "$KAFKA_BROKERS" --arg r "$REDIS_URL" --arg a "$KAPPA_API_KEYS" \
        --arg c "$KAPPA_CONFIG" --arg l "$KAPPA_LINK" '[
          {key: "KAFKA_BROKERS", value: $k, init: true}, {key: "REDIS_URL", value: $r, init: true},
          {key: "KAPPA_API_KEYS", value: $a, init: true}, {key: "KAPPA_CONFIG", value: $c, init: true},
          {key: "KAPPA_LINK", value: $l, init: true}]')
    for action in query status process push tick; do
        current=$(curl -fsS -u "$auth" "$api/actions/kappa/$action")
        echo "$current" | jq --argjson init "$init" \
            '{exec, limits, annotations, parameters: ([.parameters[] | select(.key as $k | $init | map(.key) | index($k) | not)] + $init)}' |
            curl -fsS -u "$auth" -X PUT -H 'content-type: application/json' \
                "$api/actions/kappa/$action?overwrite=true" -d @- >/dev/null
        echo "kappa/$action: settings are init-time parameters" >&2
    done
    pkg=$(curl -fsS -u "$auth" "$api/packages/kappa")
    echo "$pkg" | jq '{publish, annotations, parameters: []}' |
        curl -fsS -u "$auth" -X PUT -H 'content-type: application/json' \
            "$api/packages/kappa?overwrite=true" -d @- >/dev/null
fi
echo "deployed $manifest" >&2
