# Delivery tests of the worker run loop (owner: kafka): sf-test-worker (a
# real worker on sf_worker_main) runs as a separate process against the
# pg + kafka fixtures; sf-test-produce / sf-test-consume write and read the
# topics. Benchmark: tests/bench/bench_delivery.sh (label bench).
set(_dlv ${CMAKE_CURRENT_SOURCE_DIR}/integration/delivery)
add_executable(sf-test-worker ${_dlv}/test_worker.c)
target_link_libraries(sf-test-worker PRIVATE scmflow)
add_executable(sf-test-produce ${_dlv}/test_produce.c)
target_link_libraries(sf-test-produce PRIVATE scmflow)
add_executable(sf-test-consume ${_dlv}/test_consume.c)
target_link_libraries(sf-test-consume PRIVATE scmflow)

set(_dlv_env
  "DELIVERY_BIN=$<TARGET_FILE_DIR:sf-test-worker>"
  "SCMFLOW_SOURCE_DIR=${PROJECT_SOURCE_DIR}"
  "TESTENV_DIR=${CMAKE_BINARY_DIR}/testenv")

function(_dlv_test name timeout labels)
  add_test(NAME ${name} COMMAND bash ${_dlv}/run_delivery.sh ${ARGN})
  set_tests_properties(${name} PROPERTIES LABELS "${labels}" TIMEOUT ${timeout}
    FIXTURES_REQUIRED "pg;kafka" ENVIRONMENT "${_dlv_env}")
endfunction()

_dlv_test(integration.delivery.exactly_once 300 integration exactly_once)
_dlv_test(integration.delivery.poison 300 integration poison)
_dlv_test(integration.delivery.group 400 "integration;fault" group)
_dlv_test(fault.delivery.kill_after_handler 400 fault failpoint worker.after_handler:700)
_dlv_test(fault.delivery.kill_after_commit 400 fault failpoint worker.after_commit_before_offset:5)
_dlv_test(fault.delivery.kill_relay 400 fault failpoint relay.after_produce_before_mark:3)
_dlv_test(integration.delivery.http 240 integration http)
_dlv_test(fault.delivery.sigterm 300 fault sigterm)
_dlv_test(integration.delivery.tick 180 integration tick)

# valgrind needs a binary without ASan: in a sanitized build the check runs
# an uninstrumented copy (sf-test-worker-vg on scmflow_vg).
if(SCMFLOW_SANITIZE)
  add_executable(sf-test-worker-vg ${_dlv}/test_worker.c)
  target_compile_options(sf-test-worker-vg PRIVATE -fno-sanitize=all)
  target_link_options(sf-test-worker-vg PRIVATE -fno-sanitize=all)
  target_link_libraries(sf-test-worker-vg PRIVATE scmflow_vg)
  add_test(NAME integration.delivery.valgrind COMMAND bash ${_dlv}/run_delivery.sh valgrind)
  set_tests_properties(integration.delivery.valgrind PROPERTIES LABELS integration TIMEOUT 600
    FIXTURES_REQUIRED "pg;kafka"
    ENVIRONMENT "${_dlv_env};VG_WORKER=$<TARGET_FILE:sf-test-worker-vg>")
else()
  _dlv_test(integration.delivery.valgrind 600 integration valgrind)
endif()

add_test(NAME bench.delivery COMMAND bash ${PROJECT_SOURCE_DIR}/tests/bench/bench_delivery.sh)
set_tests_properties(bench.delivery PROPERTIES LABELS bench TIMEOUT 1800
  FIXTURES_REQUIRED "pg;kafka" ENVIRONMENT "${_dlv_env}")
