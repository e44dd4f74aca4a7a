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
rate=${RATE:-2000}
duration=${DURATION:-30}
keys=${KEYS:-30000}
port=${PORT:-48080}
source "$(dirname "$0")/lib/dev_cluster.sh"
start_dev_cluster 3 "$port"
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

kill -9 "$(node_pid 2)"
rm -rf "$(node_data_dir 2)"
"$DYNAMO_BIN" bench --nodes "$nodes" --workload a --read-fraction 0 --keys "$keys" --ops "$keys" \
  --distribution uniform --concurrency 32 --warmup 0 --bucket refill >/dev/null 2>&1
restart_node 2
hints_before=$(($(metric 0 dynamo_hints_delivered_total) + $(metric 1 dynamo_hints_delivered_total)))
repaired_before=$(($(metric 0 dynamo_anti_entropy_keys_repaired_total) + $(metric 1 dynamo_anti_entropy_keys_repaired_total) + $(metric 2 dynamo_anti_entropy_keys_repaired_total)))
run repairing
hints=$(($(metric 0 dynamo_hints_delivered_total) + $(metric 1 dynamo_hints_delivered_total) - hints_before))
repaired=$(($(metric 0 dynamo_anti_entropy_keys_repaired_total) + $(metric 1 dynamo_anti_entropy_keys_repaired_total) + $(metric 2 dynamo_anti_entropy_keys_repaired_total) - repaired_before))
echo "during the repairing run: $hints hints delivered, $repaired keys repaired by anti-entropy"
