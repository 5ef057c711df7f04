#!/usr/bin/env bash
# The main job on a fresh machine: installs what is missing (scripts/setup.sh), builds
# quarantine, starts a real broker (tansu) with quarantine in front of it, and runs an
# application that produces and consumes through quarantine (scripts/demo.py).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

"$REPO_ROOT/scripts/setup.sh"
log "cargo build"
cargo build --bins --quiet
exec "$PY" "$REPO_ROOT/scripts/demo.py" "$@"
