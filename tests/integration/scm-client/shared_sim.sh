#!/bin/sh
# The SCM client against the shared ctest fixture `sim` (read-only checks).
# usage: shared_sim.sh TEST_BINARY
set -eu
. "$SCMFLOW_SOURCE_DIR/tests/lib/testenv.sh"
tenv_load
[ -n "${SCM_SIM_URL:-}" ] || tenv_fail "SCM_SIM_URL not set (fixture sim missing?)"
exec "$1" --shared
