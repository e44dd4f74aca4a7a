#!/usr/bin/env bash
# Staleness measured (issue 16, PBS): on a 3-node `dynamo dev` cluster
# (N=3), under a steady YCSB-A load at RATE ops/s (W=2, R=2):
#   1. t-visibility: each node's /admin/staleness after the load (time
#      from a write's arrival until all three replicas acknowledged it);
#   2. the read-after-write probability curve (`dynamo bench
#      --visibility-probe`: write through one node, read through the next
#      after t ms) for R=W=2 and R=W=1, each while the load runs.
#
#   bench/staleness.sh
#
# Environment (all optional):
#   RATE        background ops/s                             [3000]
#   DURATION    seconds of the load run measured for 1.      [20]
#   SAMPLES     probe samples per delay                      [300]
#   PORT        HTTP port of node0 (node i: +i)              [47080]
#   DYNAMO_BIN  use this binary instead of building one
rate=${RATE:-3000}
duration=${DURATION:-20}
samples=${SAMPLES:-300}
port=${PORT:-47080}
source "$(dirname "$0")/lib/dev_cluster.sh"
start_dev_cluster 3 "$port"
nodes="127.0.0.1:$port,127.0.0.1:$((port + 1)),127.0.0.1:$((port + 2))"

"$DYNAMO_BIN" bench --nodes "$nodes" --workload a --keys 10000 --load --ops 1 >/dev/null 2>&1
"$DYNAMO_BIN" bench --nodes "$nodes" --workload a --keys 10000 --concurrency 32 --duration "$duration" \
  --warmup 2 --rate "$rate" >"$data/load.txt" 2>&1
echo "== t-visibility after $duration s of YCSB-A at $rate ops/s (W=2 R=2)"
for i in 0 1 2; do
  curl -sf "http://127.0.0.1:$((port + i))/admin/staleness" | python3 "$repo/bench/lib/staleness_line.py" "node$i"
done

probe() { # r w
  "$DYNAMO_BIN" bench --nodes "$nodes" --workload a --keys 10000 --concurrency 32 --duration 600 \
    --warmup 0 --rate "$rate" >/dev/null 2>&1 &
  local load=$!
  sleep 2
  echo "== read-after-write, R=$1 W=$2, while YCSB-A runs at $rate ops/s"
  "$DYNAMO_BIN" bench --nodes "$nodes" --visibility-probe --bucket "probe-r$1w$2" --r "$1" --w "$2" \
    --probe-samples "$samples" --probe-delays-ms 0,1,2,5,10,20,50,100 --json "$data/probe-r$1w$2.json"
  kill "$load" 2>/dev/null || true
  wait "$load" 2>/dev/null || true
}
probe 2 2
probe 1 1
