#!/usr/bin/env bash
# Partition transfer speed and its cost to foreground requests: a 3-node
# cluster (dynamo dev, N=3 R=W=2) is loaded with KEYS values; a fourth node
# joins and the plan is committed; the script measures how long the copies
# take (until no node reports a pending copy) at the node's transfer
# throttle, and runs the same paced client load before and during the
# transfers, printing both latency summaries.
#
#   bench/transfers.sh
#
# Environment (all optional):
#   KEYS          values loaded before the join          [100000]
#   VALUE_SIZE    bytes per value                        [1024]
#   RATE          client ops/s during both measurements  [2000]
#   SECONDS_EACH  length of each client measurement      [20]
#   THROTTLE      transfer_max_bytes_per_sec of node3    [20971520]
#   PORT          HTTP port of node0 (node i: +i)        [38180]
#   DYNAMO_BIN    use this binary instead of building one
keys=${KEYS:-100000}
value_size=${VALUE_SIZE:-1024}
rate=${RATE:-2000}
seconds_each=${SECONDS_EACH:-20}
throttle=${THROTTLE:-20971520}
port=${PORT:-38180}
source "$(dirname "$0")/lib/dev_cluster.sh"
start_dev_cluster 3 "$port"
nodes="127.0.0.1:$port,127.0.0.1:$((port + 1)),127.0.0.1:$((port + 2))"

"$DYNAMO_BIN" bench --nodes "$nodes" --workload a --read-fraction 0 --keys "$keys" --ops "$keys" \
  --value-size "$value_size" --concurrency 32 --warmup 0 --distribution uniform >"$data/load.txt" 2>&1 \
  || { cat "$data/load.txt"; exit 1; }
echo "loaded $keys values of $value_size bytes"

client_load() { # output file
  "$DYNAMO_BIN" bench --nodes "$nodes" --workload a --read-fraction 0.5 --keys "$keys" \
    --value-size "$value_size" --concurrency 16 --rate "$rate" --duration "$seconds_each" --warmup 1 \
    --distribution uniform >"$1" 2>&1
}

summary() { # bench output file: its closing lines (totals and the per-operation table)
  sed -n '/ops in /,$p' "$1" | sed 's/^/  /'
}

pending() { # node index
  curl -sf "http://127.0.0.1:$((port + $1))/admin/transfers" | grep -o '"pending":[0-9]*' | cut -d: -f2
}

client_load "$data/before.txt"
echo "client load before the join ($rate ops/s, 50% reads):"
summary "$data/before.txt"

"$DYNAMO_BIN" server --node-id=node3 --http-addr="127.0.0.1:$((port + 3))" --rpc-addr="127.0.0.1:$((port + 1003))" \
  --data-dir="$data/node3" --default-n=3 --default-r=2 --default-w=2 \
  --cluster-secret-file="$data/cluster.secret" --join="127.0.0.1:$((port + 1000))" \
  --transfer-max-bytes-per-sec="$throttle" >"$data/node3.log" 2>&1 &
restarted_pids+=($!)
until curl -sf "http://127.0.0.1:$port/admin/cluster" | grep -q '"node3"'; do sleep 0.2; done

client_load "$data/during.txt" &
client=$!
start=$(date +%s.%N)
"$DYNAMO_BIN" admin commit --node "127.0.0.1:$port" --json >"$data/commit.json"
copies=$(grep -o '"transfers": *[0-9]*' "$data/commit.json" | grep -o '[0-9]*$')
until [[ "$(pending 0)" == 0 && "$(pending 3)" == 0 ]]; do sleep 0.2; done
end=$(date +%s.%N)
wait "$client"
elapsed=$(echo "$end - $start" | bc -l)
bytes=$(curl -sf "http://127.0.0.1:$((port + 3))/admin/transfers" | grep -o '"bytes":[0-9]*' | tail -1 | cut -d: -f2)
printf '%d partition copies (%s bytes received by node3) done in %.1f s: %.1f MiB/s (throttle %.1f MiB/s)\n' \
  "$copies" "$bytes" "$elapsed" "$(echo "$bytes / $elapsed / 1048576" | bc -l)" "$(echo "$throttle / 1048576" | bc -l)"
echo "client load during the transfers:"
summary "$data/during.txt"
