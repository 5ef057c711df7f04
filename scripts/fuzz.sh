#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets/) for a fixed number of executions and
# prints a table: target, executions, seconds, crashes. Exits non-zero on a crash (the
# reproducer is in fuzz/artifacts/<target>/).
#
#   scripts/fuzz.sh                    # long: 1,000,000 executions per target
#   scripts/fuzz.sh --smoke            # short: 10,000 per target (scripts/test.sh runs this)
#   scripts/fuzz.sh --runs N [target...]
#
# Needs the nightly toolchain (rustup) and installs cargo-fuzz from crates.io when it is
# missing. Seeds kept in git: fuzz/seeds/<target>/; what libFuzzer finds goes to
# fuzz/corpus/<target>/ (not in git). The first build (sanitizer, debug assertions) takes
# several minutes; later ones are incremental ($QUARANTINE_CACHE/fuzz-target).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT/fuzz"
# Builds are cached outside the checkout, as every build of the project is.
FUZZ_TARGET="$QUARANTINE_CACHE/fuzz-target"

runs=1000000
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) runs=10000 ;;
        --runs) runs="$2"; shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) targets+=("$1") ;;
    esac
    shift
done

rustup toolchain list | grep -q '^nightly' || die "the nightly toolchain is needed: rustup toolchain install nightly"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz (crates.io)"
    cargo install cargo-fuzz --locked
fi
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)

log "cargo fuzz build (release, debug assertions, address sanitizer)"
cargo +nightly fuzz build -O -a --target-dir "$FUZZ_TARGET"

status=0
printf '%-18s %12s %9s %8s\n' target executions seconds crashes
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "seeds/$t"
    log_file="$(mktemp)"
    start=$(date +%s)
    rc=0
    # -rss_limit_mb: a decoder that allocates what a hostile length asks for is a crash.
    cargo +nightly fuzz run -O -a --target-dir "$FUZZ_TARGET" "$t" "corpus/$t" "seeds/$t" -- \
        -runs="$runs" -max_len=65536 -rss_limit_mb=1024 -timeout=20 \
        -print_final_stats=1 >"$log_file" 2>&1 || rc=$?
    secs=$(($(date +%s) - start))
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log_file" | grep -o '[0-9]*$' | tail -1)
    crashes=0
    if [ "$rc" -ne 0 ]; then
        crashes=1
        status=1
        grep -E 'panicked|ERROR: |SUMMARY|artifact_prefix|Test unit written' "$log_file" | head -8 >&2 || true
    fi
    printf '%-18s %12s %9s %8s\n' "$t" "${execs:-?}" "$secs" "$crashes"
    rm -f "$log_file"
done
exit "$status"
