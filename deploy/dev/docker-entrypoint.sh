#!/bin/sh
# Container entrypoint: make sure the master key exists (generated once on
# the shared volume; the first container to link it wins), then run the
# command. Never prints the key.
set -eu
key=${SCMFLOW_MASTER_KEY_FILE:-}
if [ -n "$key" ] && [ ! -s "$key" ]; then
    mkdir -p "$(dirname "$key")"
    tmp="$key.tmp.$$"
    (umask 077 && head -c 32 /dev/urandom > "$tmp")
    ln "$tmp" "$key" 2>/dev/null || true   # atomic: fails if another won
    rm -f "$tmp"
fi
exec "$@"
