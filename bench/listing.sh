#!/usr/bin/env bash
# Key listing (issue 14) on a 3-node `dynamo dev` cluster (N=3 R=2 W=2):
#   1. the listing rate: KEYS keys written (100-byte values), then a full
#      `dynamo keys` pass through node0, timed, with node0's peak RSS
#      sampled during it;
#   2. what a listing costs the foreground: YCSB-A (zipfian, 1 KiB values,
#      another bucket) at half of its measured closed-loop peak, once
#      alone and once while `dynamo keys` passes run back to back, in the
#      same run.
#
#   bench/listing.sh
#
# Environment (all optional):
#   KEYS        keys in the listed bucket                   [1000000]
#   DURATION    measured seconds of each foreground run     [30]
#   PORT        HTTP port of node0 (node i: +i)             [58080]
#   DYNAMO_BIN  use this binary instead of building one
keys=${KEYS:-1000000}
duration=${DURATION:-30}
port=${PORT:-58080}
source "$(dirname "$0")/lib/dev_cluster.sh"
start_dev_cluster 3 "$port"
curl -sf -X PUT -H 'Content-Type: application/json' -d '{"conflict":"lww"}' \
  "http://127.0.0.1:$port/buckets/bench/props"
nodes="127.0.0.1:$port,127.0.0.1:$((port + 1)),127.0.0.1:$((port + 2))"

field() { # FILE EXPR: one number from a bench JSON report
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {"r": r}))' "$1" "$2"
}

rss_kib() { # pid: resident set size now
  awk '/^VmRSS/ {print $2}' "/proc/$1/status"
}

echo "== loading $keys keys into bucket listing"
start=$(date +%s.%N)
"$DYNAMO_BIN" bench --nodes "$nodes" --bucket listing --keys "$keys" --value-size 100 --load --ops 1 \
  --concurrency 32 --warmup 0 >"$data/load.txt" 2>&1
echo "loaded in $(echo "$(date +%s.%N) - $start" | bc) s"

node0=$(node_pid 0)
rss_before=$(rss_kib "$node0")
peak_rss=$rss_before
start=$(date +%s.%N)
DYNAMO_NODE="127.0.0.1:$port" "$DYNAMO_BIN" keys listing --limit 1000 >"$data/keys.txt" 2>"$data/keys.err" &
lister=$!
while kill -0 "$lister" 2>/dev/null; do
  now=$(rss_kib "$node0")
  ((now > peak_rss)) && peak_rss=$now
  sleep 0.2
done
wait "$lister"
seconds=$(echo "$(date +%s.%N) - $start" | bc)
listed=$(wc -l <"$data/keys.txt")
distinct=$(sort -u "$data/keys.txt" | wc -l)
echo "== full pass: $listed keys ($distinct distinct) in $seconds s = $(echo "$listed / $seconds" | bc) keys/s"
echo "node0 RSS: $rss_before KiB before, $peak_rss KiB peak during the pass"

echo "== foreground peak"
"$DYNAMO_BIN" bench --nodes "$nodes" --workload a --keys 10000 --load --ops 1 >/dev/null 2>&1
"$DYNAMO_BIN" bench --nodes "$nodes" --workload a --concurrency 64 --duration 20 --warmup 3 \
  --json "$data/peak.json" >/dev/null 2>&1
peak=$(field "$data/peak.json" 'round(r["throughput_ops_per_s"])')
half=$((peak / 2))
echo "peak $peak ops/s; half $half"

run() { # name
  "$DYNAMO_BIN" bench --nodes "$nodes" --workload a --concurrency 64 --duration "$duration" --warmup 3 \
    --rate "$half" --json "$data/$1.json" >"$data/$1.txt" 2>&1
  echo "== $1: update p50/p99/p99.9 $(field "$data/$1.json" 'r["update"]["latency_ms"]["p50"]') /" \
    "$(field "$data/$1.json" 'r["update"]["latency_ms"]["p99"]') /" \
    "$(field "$data/$1.json" 'r["update"]["latency_ms"]["p999"]') ms;" \
    "read $(field "$data/$1.json" 'r["read"]["latency_ms"]["p50"]') /" \
    "$(field "$data/$1.json" 'r["read"]["latency_ms"]["p99"]') /" \
    "$(field "$data/$1.json" 'r["read"]["latency_ms"]["p999"]') ms;" \
    "errors $(field "$data/$1.json" 'r["errors"]')"
}

run alone
(
  while true; do
    DYNAMO_NODE="127.0.0.1:$port" "$DYNAMO_BIN" keys listing --limit 1000 >/dev/null 2>&1 || true
  done
) &
listing_loop=$!
run listing
pkill -P "$listing_loop" 2>/dev/null || true
kill "$listing_loop" 2>/dev/null || true
wait "$listing_loop" 2>/dev/null || true
echo "(listing passes ran back to back through node0 during the second run)"
