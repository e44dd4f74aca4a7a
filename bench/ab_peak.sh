#!/usr/bin/env bash
# Two builds of dynamo compared on the same machine in the same run:
# closed-loop peak throughput, then latency at half of that peak, on a
# fresh 3-node `dynamo dev` cluster (N=3 R=2 W=2, bucket `bench` in lww
# mode, YCSB-A, zipfian keys, 1 KiB values) per run. The builds are
# alternated (A B A B ...), so a drift of the machine during the session
# hits both alike; compare medians, not single runs.
#
#   bench/ab_peak.sh BIN_A BIN_B [ROUNDS]
#
# Prints one line per run and a Markdown table of every run at the end.
# Environment (all optional):
#   DURATION     measured seconds of each run          [20]
#   CONCURRENCY  workers of the peak run               [64]
#   PORT         HTTP port of node0 (node i: +i)       [38080]
set -euo pipefail
[[ $# -ge 2 ]] || { echo "usage: $0 BIN_A BIN_B [ROUNDS]" >&2; exit 2; }
bin_a=$(realpath "$1")
bin_b=$(realpath "$2")
rounds=${3:-3}
duration=${DURATION:-20}
concurrency=${CONCURRENCY:-64}
port=${PORT:-38080}
here=$(dirname "$0")
results=$(mktemp)
trap 'rm -f "$results"' EXIT

# field FILE EXPR: one number from a bench JSON report.
field() {
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {"r": r}))' "$1" "$2"
}

one_run() { # label binary round
  (
    export DYNAMO_BIN=$2
    source "$here/lib/dev_cluster.sh"
    start_dev_cluster 3 "$port"
    curl -sf -X PUT -H 'Content-Type: application/json' -d '{"conflict":"lww"}' \
      "http://127.0.0.1:$port/buckets/bench/props"
    nodes="127.0.0.1:$port,127.0.0.1:$((port + 1)),127.0.0.1:$((port + 2))"
    "$DYNAMO_BIN" bench --nodes "$nodes" --workload a --keys 10000 --load --ops 1 >/dev/null 2>&1
    "$DYNAMO_BIN" bench --nodes "$nodes" --workload a --concurrency "$concurrency" --duration "$duration" \
      --warmup 3 --json "$data/peak.json" >/dev/null 2>&1
    peak=$(field "$data/peak.json" 'round(r["throughput_ops_per_s"])')
    half=$((peak / 2))
    "$DYNAMO_BIN" bench --nodes "$nodes" --workload a --concurrency "$concurrency" --duration "$duration" \
      --warmup 3 --rate "$half" --json "$data/half.json" >/dev/null 2>&1
    latency() { field "$data/half.json" "r[\"$1\"][\"latency_ms\"][\"$2\"]"; }
    peak_errors=$(field "$data/peak.json" 'r["errors"]')
    half_errors=$(field "$data/half.json" 'r["errors"]')
    echo "$1 $3 $peak $peak_errors $half $(latency update p50) $(latency update p99) $(latency update p999) \
$(latency read p50) $(latency read p99) $(latency read p999) $half_errors"
  )
}

for ((round = 1; round <= rounds; round++)); do
  for side in A B; do
    if [[ $side == A ]]; then binary=$bin_a; else binary=$bin_b; fi
    line=$(one_run "$side" "$binary" "$round")
    echo "$line" | tee -a "$results" >&2
  done
done

echo
echo "A = $bin_a"
echo "B = $bin_b"
echo
echo "| build | round | peak ops/s | errors | half-peak rate | update p50 / p99 / p99.9 ms | read p50 / p99 / p99.9 ms | errors |"
echo "|---|---:|---:|---:|---:|---|---|---:|"
while read -r side round peak perr half up50 up99 up999 rp50 rp99 rp999 herr; do
  echo "| $side | $round | $peak | $perr | $half | $up50 / $up99 / $up999 | $rp50 / $rp99 / $rp999 | $herr |"
done <"$results"
