#!/usr/bin/env bash
# Hinted handoff rate: a 3-node cluster (dynamo dev, N=3 W=2) with node2
# killed takes KEYS writes (each leaves a hint for node2 on its
# coordinator); node2 is restarted and the script measures how long the
# hints take to reach it (until no node holds a hint).
#
#   bench/hint_delivery.sh
#
# Environment (all optional):
#   KEYS         writes while node2 is down        [20000]
#   VALUE_SIZE   bytes per value                   [1024]
#   PORT         HTTP port of node0 (node i: +i)   [38080]
#   DYNAMO_BIN   use this binary instead of building one
keys=${KEYS:-20000}
value_size=${VALUE_SIZE:-1024}
port=${PORT:-38080}
source "$(dirname "$0")/lib/dev_cluster.sh"
start_dev_cluster 3 "$port"
kill -9 "$(node_pid 2)"

hints_stored() {
  local total=0 n
  for i in 0 1; do
    n=$(curl -sf "http://127.0.0.1:$((port + i))/admin/hints" | grep -o '"stored":[0-9]*' | cut -d: -f2)
    total=$((total + ${n:-0}))
  done
  echo "$total"
}

"$DYNAMO_BIN" bench --nodes "127.0.0.1:$port,127.0.0.1:$((port + 1))" --workload a --read-fraction 0 \
  --keys "$keys" --ops "$keys" --value-size "$value_size" --concurrency 32 --warmup 0 --distribution uniform \
  >"$data/load.txt" 2>&1 || { cat "$data/load.txt"; exit 1; }
sleep 2
stored=$(hints_stored)
echo "hints held for node2 after $keys writes: $stored"

start=$(date +%s.%N)
restart_node 2
while [[ $(hints_stored) -gt 0 ]]; do sleep 0.2; done
end=$(date +%s.%N)
elapsed=$(echo "$end - $start" | bc -l)
printf 'delivered %d hints in %.1f s after node2 restarted: %.0f hints/s\n' "$stored" "$elapsed" \
  "$(echo "$stored / $elapsed" | bc -l)"
