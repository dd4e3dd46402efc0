#!/usr/bin/env bash
# Build Kappa's OpenWhisk action artefacts into build/actions/:
#
#   <action>.zip       native, kind rust:1.34: `exec` at the top level = the static
#                      x86_64-unknown-linux-musl kappa-action binary (it dispatches on the
#                      action's name, so every zip holds the same binary)
#   launcher.zip       native on an image holding the binary (build/image/Dockerfile): `exec`
#                      is a two-line script that execs /kappa/kappa-action
#   <action>-wasm.zip  WASM, kind nodejs:20: package.json, index.js (exports main), io.js
#                      (kafkajs and redis bundled in), the wasm-bindgen glue kappa_wasm.js +
#                      kappa_wasm_bg.wasm
#
#   scripts/build-actions.sh            # both
#   scripts/build-actions.sh native     # only the native zips
#   scripts/build-actions.sh wasm       # only the WASM zips
#   scripts/build-actions.sh wasm-module DIR   # only the module (kappa_wasm.js + _bg.wasm) in DIR
#                                              # (relative to the repository)
#   scripts/build-actions.sh wasm-conformance  # a test module exporting the log and state
#                                              # conformance suites (feature `conformance`, dev
#                                              # profile) into build/wasm-conformance; never zipped
#
# The module is built with WASM SIMD (simd128: Node.js >= 16.4 runs it), set for every
# wasm32-unknown-unknown build in .cargo/config.toml; kappa-wasm does not compile without it
# (RUSTFLAGS in the environment would replace that setting). Knobs for measurements
# (scripts/bench-wasm-fold.sh): KAPPA_WASM_OPT (cargo opt-level, default z), KAPPA_WASM_CORE_OPT
# (kappa-core's, default 2), KAPPA_WASM_OPT_FLAGS (wasm-opt's, default -Oz), KAPPA_WASM_OPT_PASS=0
# (no wasm-opt), KAPPA_WASM_SIMD=0 (without simd128), KAPPA_WASM_CARGO_FLAGS (more cargo flags).
#
# Installs what is missing: the musl and wasm32 targets, musl-tools (apt), wasm-bindgen-cli at
# exactly the version of the wasm-bindgen crate in Cargo.lock (cargo install, without --locked),
# kafkajs and redis (npm), binaryen's wasm-opt (npm, into .cache/npm-tools). The native build uses its own target directory (target/deploy) so it
# does not wait on other builds' lock (target/deploy-wasm for the module). The action names are the ones manifest.yaml deploys
# (tests/deploy checks that they match).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
step() { printf '==> %s\n' "$*" >&2; }

ACTIONS="query status process push tick"
what=${1:-all}
out="$repo/build/actions"
mkdir -p "$out"
target_dir="${KAPPA_DEPLOY_TARGET_DIR:-$repo/target/deploy}"
# Where build/image/Dockerfile puts the binary, and launcher.zip runs it from.
image_exec=/kappa/kappa-action
wasm_target_dir="${KAPPA_WASM_TARGET_DIR:-$repo/target/deploy-wasm}"

build_native() {
    step "native: static kappa-action for x86_64-unknown-linux-musl"
    rustup target add x86_64-unknown-linux-musl >/dev/null 2>&1
    if ! command -v musl-gcc >/dev/null; then
        apt-get install -y musl-tools >/dev/null
    fi
    # librdkafka's SSL needs OpenSSL: actions/adapters/log-kafka builds it from source for musl
    # (rdkafka's ssl-vendored feature), which needs perl and make.
    CARGO_TARGET_DIR="$target_dir" CC_x86_64_unknown_linux_musl=musl-gcc \
        cargo build -p kappa-runtime --bin kappa-action --release --locked \
        --target x86_64-unknown-linux-musl
    local exe="$target_dir/x86_64-unknown-linux-musl/release/kappa-action"
    if readelf -l "$exe" | grep -q 'program interpreter'; then
        echo "error: $exe is dynamically linked; ActionLoop images differ in libc" >&2
        exit 1
    fi
    local stage
    stage=$(mktemp -d)
    cp "$exe" "$stage/exec"
    strip "$stage/exec"
    chmod 0755 "$stage/exec"
    for action in $ACTIONS; do
        rm -f "build/actions/${action}.zip"
        (cd "$stage" && zip -q -X "$out/${action}.zip" exec)
        printf '%s\n' "build/actions/${action}.zip" >&2
    done
    # The image flavour (scripts/deploy.sh image): the binary baked into an ActionLoop image
    # (build/image: `docker build` it and push it), and every action's zip only a launcher that
    # execs it, so a cold start does not ship and unzip 7 MB (BENCHMARKS.md, cold start).
    # KAPPA_EXEC (an init-time parameter) overrides the path; the tests run it that way.
    local image="$repo/build/image"
    rm -rf "$image"
    mkdir -p "$image" "$stage/launcher"
    cp "$stage/exec" "$image/kappa-action"
    printf 'FROM openwhisk/actionloop-base:nightly\nCOPY kappa-action %s\n' "$image_exec" \
        > "$image/Dockerfile"
    printf '#!/bin/sh\n# Kappa on an image holding the binary (build/image/Dockerfile).\nexec "${KAPPA_EXEC:-%s}" "$@"\n' \
        "$image_exec" > "$stage/launcher/exec"
    chmod 0755 "$stage/launcher/exec"
    rm -f "$out/launcher.zip"
    (cd "$stage/launcher" && zip -q -X "$out/launcher.zip" exec)
    printf '%s\n' "build/actions/launcher.zip" "build/image/Dockerfile" >&2
    rm -rf "$stage"
}

# The wasm32 target, and wasm-bindgen-cli at exactly the version of the wasm-bindgen crate.
wasm_toolchain() {
    rustup target add wasm32-unknown-unknown >/dev/null 2>&1
    local version
    version=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/[^0-9.]/, ""); print; exit}' Cargo.lock)
    if ! command -v wasm-bindgen >/dev/null || [ "$(wasm-bindgen --version | awk '{print $2}')" != "$version" ]; then
        # Must match the crate exactly; its own lockfile pins crates this registry may lack,
        # so no --locked.
        cargo install wasm-bindgen-cli --version "$version" >&2
    fi
}

# The module alone into $1: cargo build, wasm-bindgen --target nodejs, wasm-opt.
build_module() {
    local stage=$1
    step "wasm: kappa-wasm for wasm32-unknown-unknown + wasm-bindgen --target nodejs"
    wasm_toolchain
    # simd128 comes from .cargo/config.toml (and kappa-wasm fails to compile without it unless
    # KAPPA_WASM_NO_SIMD is set); KAPPA_WASM_SIMD=0 turns it off, for comparisons.
    local simd=${KAPPA_WASM_SIMD:-1} no_simd=()
    if [ "$simd" = 0 ]; then
        no_simd=(CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="-C target-feature=-simd128"
            KAPPA_WASM_NO_SIMD=1)
    fi
    # Size over speed (opt-level z), except for kappa-core, the fold, at opt-level 2: z (or s)
    # makes the fold ~3x slower (the scanner's small functions stay calls), 2 costs +9% of the
    # module (scripts/bench-wasm-fold.sh, BENCHMARKS.md). The release profile, overridden from the
    # environment and --config (the workspace's profiles stay as they are).
    local core_opt=${KAPPA_WASM_CORE_OPT:-2}
    case "$core_opt" in [0-3]) ;; *) core_opt="\"$core_opt\"" ;; esac # TOML: "s", "z" are strings
    # shellcheck disable=SC2086 # KAPPA_WASM_CARGO_FLAGS may hold several flags
    env "${no_simd[@]}" CARGO_TARGET_DIR="$wasm_target_dir" \
        CARGO_PROFILE_RELEASE_OPT_LEVEL="${KAPPA_WASM_OPT:-z}" \
        CARGO_PROFILE_RELEASE_LTO=true CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
        CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=true CARGO_PROFILE_RELEASE_PANIC=abort \
        cargo build -p kappa-wasm --release --locked --target wasm32-unknown-unknown \
        --config "profile.release.package.kappa-core.opt-level=$core_opt" \
        ${KAPPA_WASM_CARGO_FLAGS:-}
    local wasm="$wasm_target_dir/wasm32-unknown-unknown/release/kappa_wasm.wasm"
    rm -rf "$stage"
    mkdir -p "$stage"
    wasm-bindgen --target nodejs --out-dir "$stage" --no-typescript "$wasm"
    # wasm-opt -Oz (7% smaller). From binaryen's npm package (binaryen compiled to WASM, no
    # native download), pinned: Debian's binaryen 108 breaks wasm-bindgen's externref table
    # ("WebAssembly.Table.set(): Argument 1 is invalid"); 132 keeps it. KAPPA_WASM_OPT_PASS=0 skips it.
    if [ "${KAPPA_WASM_OPT_PASS:-1}" != 0 ]; then
        local tools="${KAPPA_CACHE:-$repo/.cache}/npm-tools"
        local wasm_opt="$tools/node_modules/binaryen/bin/wasm-opt"
        if [ ! -f "$wasm_opt" ]; then
            mkdir -p "$tools"
            npm install --prefix "$tools" --no-audit --no-fund --silent binaryen@132.0.0 >&2
        fi
        local features=(--enable-reference-types --enable-bulk-memory
            --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals)
        [ "$simd" = 0 ] || features+=(--enable-simd)
        # shellcheck disable=SC2086 # KAPPA_WASM_OPT_FLAGS may hold several flags
        node "$wasm_opt" ${KAPPA_WASM_OPT_FLAGS:--Oz} "${features[@]}" \
            "$stage/kappa_wasm_bg.wasm" -o "$stage/kappa_wasm_bg.opt.wasm"
        mv "$stage/kappa_wasm_bg.opt.wasm" "$stage/kappa_wasm_bg.wasm"
    fi
    printf 'kappa_wasm_bg.wasm: %s bytes\n' "$(stat -c %s "$stage/kappa_wasm_bg.wasm")" >&2
}

build_wasm() {
    local stage="$repo/build/wasm"
    build_module "$stage"
    cp actions/hosts/wasm/js/index.js actions/hosts/wasm/js/package.json "$stage/"
    local deps="$repo/build/wasm-deps"
    mkdir -p "$deps"
    cp actions/hosts/wasm/js/io.js actions/hosts/wasm/js/package.json "$deps/"
    (cd "$deps" && npm install --omit=dev --no-audit --no-fund --silent >&2)
    # io.js with kafkajs and redis bundled into it (esbuild, pinned, from the npm registry): the
    # zip holds five files instead of ~1,500, which the runtime's /init would unzip one by one
    # and `require` would resolve one by one (BENCHMARKS.md, cold start). License comments are
    # kept at the end of the file.
    local tools="${KAPPA_CACHE:-$repo/.cache}/npm-tools"
    local esbuild="$tools/node_modules/.bin/esbuild"
    if [ ! -x "$esbuild" ]; then
        mkdir -p "$tools"
        npm install --prefix "$tools" --no-audit --no-fund --silent esbuild@0.28.2 >&2
    fi
    "$esbuild" "$deps/io.js" --bundle --platform=node --target=node20 --minify --keep-names \
        --legal-comments=eof --log-level=warning --external:./kappa_wasm.js \
        --outfile="$stage/io.js"
    for action in $ACTIONS; do
        rm -f "build/actions/${action}-wasm.zip"
        (cd "$stage" && zip -q -X "$out/${action}-wasm.zip" package.json index.js io.js \
            kappa_wasm.js kappa_wasm_bg.wasm)
        printf '%s\n' "build/actions/${action}-wasm.zip" >&2
    done
}

# The test module of actions/hosts/wasm/test/conformance.mjs: the dev profile (it shares the
# target directory of the test command's other wasm32 build; the suites wait on I/O, not code).
build_conformance() {
    step "wasm: the conformance test module (feature conformance)"
    wasm_toolchain
    cargo build -p kappa-wasm --features conformance --locked --target wasm32-unknown-unknown
    local stage="$repo/build/wasm-conformance"
    rm -rf "$stage"
    mkdir -p "$stage"
    wasm-bindgen --target nodejs --out-dir "$stage" --no-typescript \
        "${CARGO_TARGET_DIR:-$repo/target}/wasm32-unknown-unknown/debug/kappa_wasm.wasm"
    printf '%s\n' "build/wasm-conformance" >&2
}

case "$what" in
    all) build_native; build_wasm ;;
    native) build_native ;;
    wasm) build_wasm ;;
    wasm-conformance) build_conformance; exit 0 ;;
    wasm-module) build_module "$(realpath -m "${2:?usage: $0 wasm-module DIR}")"; exit 0 ;;
    *) echo "usage: $0 [all|native|wasm|wasm-conformance|wasm-module DIR]" >&2; exit 2 ;;
esac
ls -l "$out" >&2
