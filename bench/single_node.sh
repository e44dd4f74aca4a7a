#!/usr/bin/env bash
# Single-node benchmark of dynamo: the disk's fsync rate, then YCSB-style
# runs against one release-built node on a temporary data directory.
#
#   bench/single_node.sh RESULTS_DIR
#
# Runs (each on a fresh bucket, 32 clients, 1 KiB values unless overridden):
#   fsync        raw fsync rate of the data directory's disk (1 KiB appends)
#   a-dw0        workload A (50% reads, 50% updates), dw=0
#   a-dw1        workload A, dw=1 (every update fsynced before the answer)
#   puts-dw0     updates only (--read-fraction 0), dw=0
#   puts-dw1     updates only, dw=1: compare its ops/s with the fsync rate
#                to see group commit at work
#   a-siblings-rbw  workload A on a siblings bucket, each update reading the
#                key first and writing with its context (2 requests/update)
# The a-dw*, puts-* runs use last-write-wins buckets (see lww below).
#   c            workload C (reads only)
# Writes RESULTS_DIR/<run>.json (the full report), <run>.txt (the text
# report), <run>.log (progress lines), server.log, and prints a Markdown
# table of all runs at the end. The node is stopped on exit, however the
# script ends.
#
# Environment (all optional):
#   BENCH_DURATION     measured seconds per run            [15]
#   BENCH_WARMUP       unrecorded seconds before each run  [3]
#   BENCH_CONCURRENCY  clients                             [32]
#   BENCH_VALUE_SIZE   bytes per value                     [1024]
#   BENCH_KEYS         keyspace size                       [10000]
#   BENCH_PORT         node HTTP port (RPC port is +1000)  [18080]
#   BENCH_PROBE_DURATION  seconds of the fsync probe       [5]
#   BENCH_FLAGS        extra flags for every load run, e.g. "--read-before-write"
#   DYNAMO_BIN         use this binary instead of building one
#   CARGO_TARGET_DIR   where cargo builds                  [<repo>/target]
set -euo pipefail

results=${1:?usage: $0 RESULTS_DIR}
duration=${BENCH_DURATION:-15}
warmup=${BENCH_WARMUP:-3}
concurrency=${BENCH_CONCURRENCY:-32}
value_size=${BENCH_VALUE_SIZE:-1024}
keys=${BENCH_KEYS:-10000}
port=${BENCH_PORT:-18080}
read -r -a extra_flags <<<"${BENCH_FLAGS:-}"

repo=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$results"
results=$(cd "$results" && pwd)
addr=127.0.0.1:$port
rpc_addr=127.0.0.1:$((port + 1000))

if [ -z "${DYNAMO_BIN:-}" ]; then
  echo "building dynamo (release)..." >&2
  (cd "$repo" && cargo build --release -p dynamo)
  DYNAMO_BIN=${CARGO_TARGET_DIR:-$repo/target}/release/dynamo
fi
[ -x "$DYNAMO_BIN" ] || { echo "no dynamo binary at $DYNAMO_BIN" >&2; exit 1; }

if curl -fsS "http://$addr/ping" >/dev/null 2>&1; then
  echo "something already answers on $addr; set BENCH_PORT to a free port" >&2
  exit 1
fi

data=$(mktemp -d "${TMPDIR:-/tmp}/dynamo-bench.XXXXXX")
server_pid=
stop_node() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$data"
}
trap stop_node EXIT
trap 'exit 130' INT TERM

# One node cannot hold 3 replicas: make n=r=w=1 the default of every bucket.
"$DYNAMO_BIN" server --data-dir "$data/node" --http-addr "$addr" --rpc-addr "$rpc_addr" \
  --default-n 1 --default-r 1 --default-w 1 >"$results/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do
  curl -fsS "http://$addr/ping" >/dev/null 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || { echo "the node exited; see $results/server.log" >&2; exit 1; }
  sleep 0.1
done
curl -fsS "http://$addr/ping" >/dev/null || { echo "the node does not answer on $addr" >&2; exit 1; }
echo "node up on $addr (data in $data)" >&2

failures=0

# bench NAME FLAGS...: one load-test run on bucket NAME.
bench() {
  local name=$1
  shift
  echo "== $name" >&2
  local status=0
  "$DYNAMO_BIN" bench --nodes "$addr" --bucket "$name" --concurrency "$concurrency" \
    --value-size "$value_size" --keys "$keys" --duration "$duration" --warmup "$warmup" \
    --json "$results/$name.json" "$@" ${extra_flags[@]+"${extra_flags[@]}"} \
    >"$results/$name.txt" 2>"$results/$name.log" || status=$?
  cat "$results/$name.txt"
  if [ "$status" -ne 0 ]; then
    echo "run $name failed (exit $status); see $results/$name.log" >&2
    tail -n 5 "$results/$name.log" >&2
    failures=$((failures + 1))
  fi
}

echo "== fsync" >&2
"$DYNAMO_BIN" bench --fsync-probe "$data" --duration "${BENCH_PROBE_DURATION:-5}" --json "$results/fsync.json" | tee "$results/fsync.txt"

# lww NAME: make bucket NAME last-write-wins. Blind updates in a siblings
# bucket pile up siblings (every concurrent write is kept), which measures
# sibling growth rather than the write path; the throughput runs use lww
# buckets, and one siblings run does what a real client does (read, then
# write with the read's context).
lww() {
  curl -fsS -X PUT -H 'Content-Type: application/json' -d '{"conflict":"lww"}' \
    "http://$addr/buckets/$1/props" >/dev/null
}

lww a-dw0 && bench a-dw0 --load --workload a --dw 0
lww a-dw1 && bench a-dw1 --load --workload a --dw 1
lww puts-dw0 && bench puts-dw0 --read-fraction 0 --dw 0
lww puts-dw1 && bench puts-dw1 --read-fraction 0 --dw 1
bench a-siblings-rbw --load --workload a --dw 0 --read-before-write
bench c --load --workload c

echo
tables=()
for name in fsync a-dw0 a-dw1 puts-dw0 puts-dw1 a-siblings-rbw c; do
  [ -f "$results/$name.json" ] && tables+=("$results/$name.json")
done
"$DYNAMO_BIN" bench --table "${tables[@]}" | tee "$results/summary.md"
echo "results in $results" >&2
[ "$failures" -eq 0 ]
