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
set -euo pipefail

keys=${KEYS:-20000}
value_size=${VALUE_SIZE:-1024}
port=${PORT:-38080}
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

# Node2's pid and the command line that restarts it, from cluster.json.
compact=$(tr -d '\n' <"$data/cluster.json" | sed -E 's/[[:space:]]+"/"/g; s/":[[:space:]]+/":/g; s/[[:space:]]+\]/]/g')
node2_pid=$(grep -o '"pid":[0-9]*' <<<"$compact" | sed -n 3p | cut -d: -f2)
node2_argv=$(grep -o '"argv":\[[^]]*\]' <<<"$compact" | sed -n 3p \
  | sed 's/^"argv":\[//; s/\]$//; s/","/\n/g; s/"//g')
kill -9 "$node2_pid"

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

mapfile -t argv <<<"$node2_argv"
"${argv[@]}" >"$data/node2.log" 2>&1 &
restarted_pid=$!
start=$(date +%s.%N)
until curl -sf "http://127.0.0.1:$((port + 2))/ping" >/dev/null; do sleep 0.05; done
while [[ $(hints_stored) -gt 0 ]]; do sleep 0.2; done
end=$(date +%s.%N)
elapsed=$(echo "$end - $start" | bc -l)
printf 'delivered %d hints in %.1f s after node2 restarted: %.0f hints/s\n' "$stored" "$elapsed" \
  "$(echo "$stored / $elapsed" | bc -l)"
