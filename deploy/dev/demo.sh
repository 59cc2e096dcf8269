#!/usr/bin/env bash
# demo.sh - the whole thing on one machine: install missing packages, build,
# start the dev stack (PostgreSQL, dev Kafka broker, SCM simulator, the four
# workers) in .dev/, and show how to talk to it.
# First version (devstack); the end-to-end demo scenario is added by the lead.
#   deploy/dev/demo.sh [--no-deps]        stop with: deploy/dev/stack.sh down
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${SCMFLOW_BUILD_DIR:-$src/build}

[ "${1:-}" = --no-deps ] || "$src/deploy/dev/install-deps.sh"
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "${JOBS:-2}"
SCMFLOW_BUILD_DIR=$build "$src/deploy/dev/stack.sh" up --dir "$src/.dev"

cat <<MSG

scmflow is running. In a shell:
  . $src/.dev/env
  $build/services/scmctl/scmctl --help
Logs: $src/.dev/logs/    Stop: deploy/dev/stack.sh down
MSG
