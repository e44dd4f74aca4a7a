#!/usr/bin/env bash
# Foreground latency with and without background repair (paper section
# 6.5: background work must not hurt the foreground): a 3-node cluster
# (dynamo dev, N=3 R=2 W=2) under a fixed-rate YCSB-A load, once healthy,
# and once while node2 -- restarted with an empty data directory after
# missing KEYS writes -- is being refilled by hinted handoff and
# anti-entropy.
#
#   bench/background_impact.sh
#
# Environment (all optional):
#   RATE        offered ops/s                                [2000]
#   DURATION    measured seconds per run                     [30]
#   KEYS        writes made while node2 is down              [30000]
#   PORT        HTTP port of node0 (node i: +i)              [48080]
#   DYNAMO_BIN  use this binary instead of building one
set -euo pipefail

rate=${RATE:-2000}
duration=${DURATION:-30}
keys=${KEYS:-30000}
port=${PORT:-48080}
repo=$(cd "$(dirname "$0")/.." && pwd)
if [[ -z "${DYNAMO_BIN:-}" ]]; then
  cargo build --release -p dynamo --manifest-path "$repo/Cargo.toml" >&2
  DYNAMO_BIN="${CARGO_TARGET_DIR:-$repo/target}/release/dynamo"
fi
data=$(mktemp -d)
dev_pid=
restarted_pid=
cleanup() {
  [[ -n "$restarted_pid" ]] && kill "$restarted_pid" 2>/dev/null || true
  [[ -n "$dev_pid" ]] && kill "$dev_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT

"$DYNAMO_BIN" dev --nodes 3 --http-port-base "$port" --data-dir "$data" >"$data/dev.log" 2>&1 &
dev_pid=$!
for i in 0 1 2; do
  until curl -sf "http://127.0.0.1:$((port + i))/ping" >/dev/null; do sleep 0.1; done
done
curl -sf -X PUT -H 'Content-Type: application/json' -d '{"conflict":"lww"}' \
  "http://127.0.0.1:$port/buckets/bench/props"
nodes="127.0.0.1:$port,127.0.0.1:$((port + 1))"

run() { # name
  "$DYNAMO_BIN" bench --nodes "$nodes" --workload a --concurrency 32 --duration "$duration" --warmup 3 \
    --rate "$rate" --keys 10000 --json "$data/$1.json" >"$data/$1.txt" 2>&1
  echo "== $1"
  grep -E '^(op|read|update) ' "$data/$1.txt"
}

metric() { # node metric-name
  curl -sf "http://127.0.0.1:$((port + $1))/metrics" | grep "^$2" | awk '{s += $2} END {print s + 0}'
}

"$DYNAMO_BIN" bench --nodes "$nodes" --workload a --keys 10000 --ops 1 --load >/dev/null 2>&1
run healthy

compact=$(tr -d '\n' <"$data/cluster.json" | sed -E 's/[[:space:]]+"/"/g; s/":[[:space:]]+/":/g; s/[[:space:]]+\]/]/g')
node2_pid=$(grep -o '"pid":[0-9]*' <<<"$compact" | sed -n 3p | cut -d: -f2)
node2_dir=$(grep -o '"data_dir":"[^"]*"' <<<"$compact" | sed -n 3p | cut -d'"' -f4)
mapfile -t argv < <(grep -o '"argv":\[[^]]*\]' <<<"$compact" | sed -n 3p \
  | sed 's/^"argv":\[//; s/\]$//; s/","/\n/g; s/"//g')
kill -9 "$node2_pid"
rm -rf "$node2_dir"
"$DYNAMO_BIN" bench --nodes "$nodes" --workload a --read-fraction 0 --keys "$keys" --ops "$keys" \
  --distribution uniform --concurrency 32 --warmup 0 --bucket refill >/dev/null 2>&1
"${argv[@]}" >"$data/node2.log" 2>&1 &
restarted_pid=$!
until curl -sf "http://127.0.0.1:$((port + 2))/ping" >/dev/null; do sleep 0.05; done
hints_before=$(($(metric 0 dynamo_hints_delivered_total) + $(metric 1 dynamo_hints_delivered_total)))
repaired_before=$(($(metric 0 dynamo_anti_entropy_keys_repaired_total) + $(metric 1 dynamo_anti_entropy_keys_repaired_total) + $(metric 2 dynamo_anti_entropy_keys_repaired_total)))
run repairing
hints=$(($(metric 0 dynamo_hints_delivered_total) + $(metric 1 dynamo_hints_delivered_total) - hints_before))
repaired=$(($(metric 0 dynamo_anti_entropy_keys_repaired_total) + $(metric 1 dynamo_anti_entropy_keys_repaired_total) + $(metric 2 dynamo_anti_entropy_keys_repaired_total) - repaired_before))
echo "during the repairing run: $hints hints delivered, $repaired keys repaired by anti-entropy"
