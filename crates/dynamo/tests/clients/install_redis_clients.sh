#!/usr/bin/env bash
# Installs the real Redis clients the Redis-protocol tests drive, if they are
# missing: redis-cli (Debian's redis-tools), redis-py (PyPI) and ioredis (npm,
# into $DYNAMO_NODE_CLIENTS, default /var/tmp/dynamo-test-clients: the tests
# run node with NODE_PATH=<that>/node_modules). Idempotent and quiet when all
# are there; the tests call it before they start.
#
#   crates/dynamo/tests/clients/install_redis_clients.sh
set -euo pipefail

if ! command -v redis-cli > /dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
        echo "installing redis-tools (redis-cli) with apt-get" >&2
        apt-get update -qq > /dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-tools > /dev/null
    else
        echo "redis-cli is missing: install Debian's redis-tools (apt-get install redis-tools) as root" >&2
        exit 2
    fi
fi

if ! python3 -c "import redis" 2> /dev/null; then
    echo "installing redis-py with pip" >&2
    python3 -m pip install --quiet --disable-pip-version-check "redis>=5,<6"
fi

node_clients="${DYNAMO_NODE_CLIENTS:-/var/tmp/dynamo-test-clients}"
if [ ! -d "$node_clients/node_modules/ioredis" ]; then
    if ! command -v npm > /dev/null; then
        echo "npm is missing: install Node.js (apt-get install nodejs npm) for the ioredis tests" >&2
        exit 2
    fi
    echo "installing ioredis with npm into $node_clients" >&2
    mkdir -p "$node_clients"
    npm install --silent --no-audit --no-fund --prefix "$node_clients" "ioredis@5" > /dev/null
fi
