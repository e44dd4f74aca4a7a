#!/usr/bin/env bash
# Installs Debian's headless-capable Chromium, which the dashboard test
# drives, if it is missing. Idempotent and quiet when it is there; the test
# calls it before it starts.
#
#   crates/dynamo/tests/clients/install_chromium.sh
set -euo pipefail

if ! command -v chromium > /dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
        echo "installing chromium with apt-get" >&2
        apt-get update -qq > /dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium > /dev/null
    else
        echo "chromium is missing: install Debian's chromium (apt-get install chromium) as root" >&2
        exit 2
    fi
fi
