#!/usr/bin/env bash
# The benchmark: direct vs plain TCP relay vs quarantine, same workload, one run.
# Builds the release binaries first. Arguments go to benches/bench.py (see --help).
# Heavy: it uses both cores for several minutes; do not run it while others build.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

"$REPO_ROOT/scripts/setup.sh"
log "cargo build --release"
cargo build --release --bins --quiet
exec "$PY" "$REPO_ROOT/benches/bench.py" "$@"
