#!/usr/bin/env bash
# test.sh - the whole test suite as CI runs it: ASan+UBSan, -Werror, every
# label except bench, against a real PostgreSQL, the dev Kafka broker and
# the SCM simulator started by the ctest fixtures.
#   deploy/dev/test.sh [extra ctest args, e.g. -L unit or -R order]
# Environment: BUILD_DIR (default <repo>/build-test), JOBS (default 2),
#   CTEST_TIMEOUT_S (global deadline of the ctest run, default 3600).
set -euo pipefail

src=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD_DIR:-$src/build-test}
jobs=${JOBS:-2}
timeout_s=${CTEST_TIMEOUT_S:-3600}

cmake -S "$src" -B "$build" -DSCMFLOW_SANITIZE=ON -DSCMFLOW_WERROR=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$build" -j "$jobs"

# Sanitizer settings for every test process (workers run as children).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

cd "$build"
# ctest --stop-time would need a wall-clock time; timeout(1) is simpler and
# kills the whole run, after which the fixtures' cleanup is attempted.
rc=0
timeout --kill-after=60 "$timeout_s" ctest --output-on-failure -j "$jobs" -LE "bench|manual" "$@" || rc=$?
if [ $rc = 124 ] || [ $rc = 137 ]; then
    echo "test.sh: ctest exceeded ${timeout_s}s; stopping test services" >&2
    for s in sim kafka pg; do
        TESTENV_DIR=$build/testenv SCMFLOW_BIN_DIR=$build/testenv/bin SCMFLOW_SOURCE_DIR=$src \
            "$src/tests/lib/fixture.sh" stop $s || true
    done
fi
exit $rc
