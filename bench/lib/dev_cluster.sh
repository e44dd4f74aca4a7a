# Shared by the scripts that run a benchmark against a `dynamo dev` cluster
# and restart one of its nodes (source it; it sets `set -euo pipefail`).
#
#   start_dev_cluster NODES PORT   build (unless DYNAMO_BIN), start the
#                                  cluster (every node also gets each of
#                                  the space-separated DEV_SERVER_ARGS),
#                                  cluster in a temporary $data directory,
#                                  wait until every node answers /ping;
#                                  everything is stopped and removed on exit
#   node_pid I                     pid of node I (from cluster.json)
#   node_data_dir I                its data directory
#   restart_node I                 start node I again from its argv in
#                                  cluster.json and wait until it answers
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
data=
dev_pid=
restarted_pids=()

cleanup_dev_cluster() {
  local pid
  for pid in "${restarted_pids[@]}" "$dev_pid"; do
    [[ -n "$pid" ]] && kill "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  [[ -n "$data" ]] && rm -rf "$data"
}

start_dev_cluster() { # nodes port
  local nodes=$1 port=$2 i
  if [[ -z "${DYNAMO_BIN:-}" ]]; then
    cargo build --release -p dynamo --manifest-path "$repo/Cargo.toml" >&2
    DYNAMO_BIN="${CARGO_TARGET_DIR:-$repo/target}/release/dynamo"
  fi
  data=$(mktemp -d)
  trap cleanup_dev_cluster EXIT
  local extra=() arg
  for arg in ${DEV_SERVER_ARGS:-}; do extra+=("--server-arg=$arg"); done
  "$DYNAMO_BIN" dev --nodes "$nodes" --http-port-base "$port" --data-dir "$data" "${extra[@]}" >"$data/dev.log" 2>&1 &
  dev_pid=$!
  for ((i = 0; i < nodes; i++)); do
    until curl -sf "http://127.0.0.1:$((port + i))/ping" >/dev/null; do sleep 0.1; done
  done
}

# cluster.json on one line, without the indentation (argv entries keep
# their inner spaces).
compact_cluster_json() {
  tr -d '\n' <"$data/cluster.json" | sed -E 's/[[:space:]]+"/"/g; s/":[[:space:]]+/":/g; s/[[:space:]]+\]/]/g'
}

node_pid() { # index
  compact_cluster_json | grep -o '"pid":[0-9]*' | sed -n "$(($1 + 1))p" | cut -d: -f2
}

node_data_dir() { # index
  compact_cluster_json | grep -o '"data_dir":"[^"]*"' | sed -n "$(($1 + 1))p" | cut -d'"' -f4
}

restart_node() { # index
  local argv http
  mapfile -t argv < <(compact_cluster_json | grep -o '"argv":\[[^]]*\]' | sed -n "$(($1 + 1))p" \
    | sed 's/^"argv":\[//; s/\]$//; s/","/\n/g; s/"//g')
  http=$(compact_cluster_json | grep -o '"http_addr":"[^"]*"' | sed -n "$(($1 + 1))p" | cut -d'"' -f4)
  "${argv[@]}" >"$data/node$1-restarted.log" 2>&1 &
  restarted_pids+=($!)
  until curl -sf "http://$http/ping" >/dev/null; do sleep 0.05; done
}
