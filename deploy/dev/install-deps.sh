#!/usr/bin/env bash
# install-deps.sh - install the Debian 12 packages scmflow builds, tests and
# runs with; only the missing ones (checked with dpkg-query), one apt-get
# update at most. Needs root (or sudo) when something is missing.
#   install-deps.sh [--check]   --check: list what is missing, exit 1 if any
set -euo pipefail

PACKAGES=(
    build-essential cmake pkg-config
    librdkafka-dev libpq-dev postgresql libcurl4-openssl-dev libcjson-dev
    libmicrohttpd-dev libcmocka-dev libssl-dev openssl
    'default-jre-headless|openjdk-17-jre-headless' kcat docker-compose valgrind
    curl jq procps iproute2
    clang libclang-rt-14-dev python3 python3-jsonschema
)

installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]
}

# An entry "a|b" is satisfied by either package; a is the one installed.
missing=()
for entry in "${PACKAGES[@]}"; do
    ok=0
    IFS='|' read -ra alts <<< "$entry"
    for p in "${alts[@]}"; do
        if installed "$p"; then ok=1; break; fi
    done
    [ $ok = 1 ] || missing+=("${alts[0]}")
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#PACKAGES[@]} packages present"
    exit 0
fi
if [ "${1:-}" = --check ]; then
    echo "install-deps: missing: ${missing[*]}"
    exit 1
fi

SUDO=
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "install-deps: need root to install: ${missing[*]}" >&2; exit 1; }
    SUDO=sudo
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
