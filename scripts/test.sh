#!/usr/bin/env bash
# Runs every test: installs what is missing (scripts/setup.sh), builds the binaries, checks
# format and lints (cargo fmt, cargo clippy), checks deploy/ (deploy/check.sh), runs the Rust tests (cargo test), then the protocol tests with real clients against a real
# broker through the proxy (pytest proto-tests). Exits non-zero if anything failed.
# Extra arguments go to pytest, e.g. `scripts/test.sh -k kafkajs`.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

"$REPO_ROOT/scripts/setup.sh"

log "cargo build"
cargo build --bins

status=0
# Style and lints first: cheap, and a failure names the line. Skipped (with a note) only
# when the toolchain lacks the component.
if cargo fmt --version >/dev/null 2>&1; then
    log "cargo fmt --check"
    cargo fmt --all -- --check || status=1
else
    log "cargo fmt not installed; skipping the format check"
fi
if cargo clippy --version >/dev/null 2>&1; then
    log "cargo clippy"
    cargo clippy --all-targets --quiet -- -D warnings || status=1
else
    log "cargo clippy not installed; skipping lints"
fi

log "import circles (scripts/check-imports.py)"
"$PY" "$REPO_ROOT/scripts/check-imports.py" || status=1

# deploy/: manifests, rules, dashboard, Alertmanager routing (a few seconds). The tools
# come from scripts/setup.sh; only kubectl (no registry here has it) may be missing.
log "deploy/check.sh"
PATH="$DEPLOY_VENV/bin:$PATH" QUARANTINE_DEPLOY_CHECK_STRICT=1 "$REPO_ROOT/deploy/check.sh" || status=1

log "cargo test"
# The Rust tests against the real broker and real clients must run, never skip.
export QUARANTINE_TESTS_REQUIRE_REAL=1 QUARANTINE_PYTHON="$PY"
cargo test || status=1

# Fuzz smoke: every cargo-fuzz target for 10,000 executions from the committed seeds
# (scripts/fuzz.sh; the long run is `scripts/fuzz.sh`). Needs the nightly toolchain.
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    log "fuzz smoke (scripts/fuzz.sh --smoke)"
    "$REPO_ROOT/scripts/fuzz.sh" --smoke || status=1
else
    log "no nightly toolchain; skipping the fuzz smoke run"
fi

log "pytest proto-tests"
pytest_status=0
# Each test has its own time limit (pytest.ini); this bounds the whole run, and SIGINT
# still lets pytest print its summary.
timeout -s INT -k 60 3600 \
    "$PY" -m pytest proto-tests -p no:cacheprovider --durations=10 "$@" || pytest_status=$?
if [ "$pytest_status" -ne 0 ]; then
    # 5 means no test ran: a failure too.
    status=1
fi

if [ "$status" -ne 0 ]; then
    log "FAILED (format, lints, cargo test and/or pytest above)"
fi
exit "$status"
