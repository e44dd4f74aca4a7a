#!/usr/bin/env bash
# Long form of the chaos test (crates/dynamo/tests/chaos): several runs, each
# on a fresh 5-node cluster of real `dynamo server` processes under kill -9,
# SIGSTOP/SIGCONT and iptables partitions, with a sixth node joining (and the
# plan committed) during a partition early in each run, each ending with the
# partition transfers done and the lost-write checker (siblings sets, counters
# and data-type sets). Stops at the first failing run and prints one summary line per
# run. Needs root for the partitions (iptables).
#
#   bench/chaos.sh [LOG_FILE]
#
# Environment (all optional; the test's own variables pass through, see
# README "Chaos testing"):
#   DYNAMO_CHAOS_RUNS                runs                              [5]
#   DYNAMO_CHAOS_SECS                workload seconds per run          [120]
#   DYNAMO_CHAOS_REQUIRE_PARTITIONS  fail if iptables is unusable      [1]
#   DYNAMO_CHAOS_SEED                seed of run 1 (run i uses seed+i-1) [from the clock]
#   CHAOS_PROFILE                    cargo profile: dev or release     [dev]
set -euo pipefail
cd "$(dirname "$0")/.."

export DYNAMO_CHAOS_RUNS="${DYNAMO_CHAOS_RUNS:-5}"
export DYNAMO_CHAOS_SECS="${DYNAMO_CHAOS_SECS:-120}"
export DYNAMO_CHAOS_REQUIRE_PARTITIONS="${DYNAMO_CHAOS_REQUIRE_PARTITIONS:-1}"
profile="${CHAOS_PROFILE:-dev}"
log="${1:-chaos-$(date +%Y%m%d-%H%M%S).log}"

echo "== chaos: ${DYNAMO_CHAOS_RUNS} run(s) of ${DYNAMO_CHAOS_SECS} s, profile ${profile}, log ${log}"
set +e
cargo test --profile "${profile}" --locked -p dynamo --test chaos -- \
    acknowledged_writes_survive_kills_pauses_and_partitions --exact --nocapture 2>&1 | tee "${log}"
status=${PIPESTATUS[0]}
set -e

echo
echo "== per-run summary"
grep -E '^chaos run [0-9]+/[0-9]+ ' "${log}" || echo "(no run finished)"
grep -E 'WARNING' "${log}" || true
if [ "${status}" -eq 0 ]; then
    echo "== chaos: all ${DYNAMO_CHAOS_RUNS} run(s) passed"
else
    echo "== chaos: FAILED (exit ${status}); the failing run's data and node logs are kept, see above"
fi
exit "${status}"
