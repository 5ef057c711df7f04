#!/usr/bin/env bash
# Reruns the reliability campaign (README "Reliability") and prints its figures:
# - the fault tests (a TCP gate checked with real clients first, then DLQ, state topic,
#   broker and client faults: one FAULT line each with produced/committed/dead-lettered/
#   duplicates/lost), the hostile-client tests and the admin API tests;
# - every fuzz target for 1,000,000 executions (scripts/fuzz.sh);
# - a 30-minute soak (benches/soak.py).
#
#   scripts/reliability.sh           # all of it (about an hour on 2 cores)
#   scripts/reliability.sh --quick   # the same tests, fuzz smoke (10,000 each), a 4-minute soak
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

quick=0
[ "${1:-}" = "--quick" ] && quick=1

"$REPO_ROOT/scripts/setup.sh"
cargo build --bins

status=0
log "fault, hostile-client and admin tests"
"$PY" -m pytest -p no:cacheprovider -q -s \
    proto-tests/test_fault_gate.py proto-tests/test_faults_dlq.py \
    proto-tests/test_faults_state.py proto-tests/test_faults_broker_client.py \
    proto-tests/test_hostile_clients.py proto-tests/test_admin_security.py \
    proto-tests/test_poison_dlq_outage.py proto-tests/test_poison_restart.py \
    2>&1 | grep -E '^(FAULT|flood|slowloris|slow reader|client resets)|passed|failed|error' || status=1

log "fuzzing"
if [ "$quick" -eq 1 ]; then
    "$REPO_ROOT/scripts/fuzz.sh" --smoke || status=1
else
    "$REPO_ROOT/scripts/fuzz.sh" || status=1
fi

log "soak"
if [ "$quick" -eq 1 ]; then
    "$PY" benches/soak.py --minutes 4 --restart-every 60 --rebalance-every 45 || status=1
else
    "$PY" benches/soak.py || status=1
fi
exit "$status"
