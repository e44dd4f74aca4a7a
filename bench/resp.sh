#!/usr/bin/env bash
# redis-benchmark against one redis-server and against a 3-node `dynamo dev`
# cluster (N=3, R=2, W=2, fjall), in the same run, and the ratio (issue 13).
# Installs redis-server and redis-tools with apt-get when missing (root).
# The dynamo side is driven by one redis-benchmark per node at once, the
# clients split evenly, and their rates summed; latencies are the worst
# node's.
#
#   bench/resp.sh [REQUESTS] [TESTS]
#
# TESTS defaults to set,get,incr,sadd. Environment: CLIENTS (total, default
# 50), VALUE_BYTES (-d, default 100), KEYSPACE (-r: random keys among this
# many, default 100000; redis-benchmark alone would hit one key, which a
# per-key lock serializes), SADD_KEYSPACE (-r for sadd, default 1000:
# redis-benchmark adds random members to the one key `myset`, and a set
# is one value, read and rewritten whole per update and at most
# max_value_bytes), PIPELINES (default "1 16"), CARGO_TARGET_DIR (default
# /var/tmp/dynamo-release).
set -euo pipefail
cd "$(dirname "$0")/.."

requests="${1:-50000}"
tests="${2:-set,get,incr,sadd}"
clients="${CLIENTS:-50}"
value_bytes="${VALUE_BYTES:-100}"
keyspace="${KEYSPACE:-100000}"
sadd_keyspace="${SADD_KEYSPACE:-1000}"
pipelines="${PIPELINES:-1 16}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/dynamo-release}"

if ! command -v redis-server > /dev/null || ! command -v redis-benchmark > /dev/null; then
    apt-get update -qq > /dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools > /dev/null
fi
cargo build --release --locked -p dynamo > /dev/null 2>&1
dynamo="$CARGO_TARGET_DIR/release/dynamo"

work="$(mktemp -d)"
redis_port=16500
resp_base=16501
cleanup() {
    [ -n "${redis_pid:-}" ] && kill "$redis_pid" 2> /dev/null || true
    [ -n "${dev_pid:-}" ] && kill "$dev_pid" 2> /dev/null || true
    wait 2> /dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

redis-server --port "$redis_port" --save '' --appendonly no > "$work/redis.log" 2>&1 &
redis_pid=$!
"$dynamo" dev --nodes 3 --http-port-base 18580 --resp-port-base "$resp_base" --data-dir "$work/dev" > "$work/dev.log" 2>&1 &
dev_pid=$!
for port in "$redis_port" "$resp_base" $((resp_base + 1)) $((resp_base + 2)); do
    for _ in $(seq 100); do
        redis-cli -p "$port" PING > /dev/null 2>&1 && break
        sleep 0.1
    done
done

# One redis-benchmark per test: prints "test rps p50 p99" lines.
bench() {
    local port="$1" count="$2" concurrency="$3" pipeline="$4" test keys
    for test in ${tests//,/ }; do
        keys="$keyspace"
        [ "$test" = sadd ] && keys="$sadd_keyspace"
        redis-benchmark -p "$port" -t "$test" -n "$count" -c "$concurrency" -d "$value_bytes" -r "$keys" -P "$pipeline" --csv 2> /dev/null |
            tail -n +2 | tr -d '"' | awk -F, '{print $1, $2, $5, $7}'
    done
}

echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
echo "requests $requests, clients $clients, value $value_bytes bytes, keys $keyspace (sadd members $sadd_keyspace), tests $tests"
printf '%-6s %-3s %12s %9s %9s %12s %9s %9s %7s\n' test P redis_rps p50_ms p99_ms dynamo_rps p50_ms p99_ms ratio
for pipeline in $pipelines; do
    bench "$redis_port" "$requests" "$clients" "$pipeline" > "$work/redis.txt"
    per_node=$((clients / 3))
    pids=()
    for node in 0 1 2; do
        bench $((resp_base + node)) $((requests / 3)) "$per_node" "$pipeline" > "$work/dynamo$node.txt" &
        pids+=($!)
    done
    wait "${pids[@]}"
    while read -r test rps p50 p99; do
        read -r drps dp50 dp99 < <(cat "$work"/dynamo[012].txt | awk -v t="$test" '$1 == t {
            rps += $2; if ($3 > p50) p50 = $3; if ($4 > p99) p99 = $4 } END { print rps, p50, p99 }')
        ratio=$(awk -v a="$drps" -v b="$rps" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
        printf '%-6s %-3s %12s %9s %9s %12s %9s %9s %7s\n' "$test" "$pipeline" "$rps" "$p50" "$p99" "$drps" "$dp50" "$dp99" "$ratio"
    done < "$work/redis.txt"
done
