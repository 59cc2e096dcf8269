# order-submitter + scmctl order (owner: submitter). Bash tests in
# tests/integration/order/: each runs the real binaries as processes with its
# own database, topic prefix, consumer group and its own scm-sim (they inject
# faults and read the simulator's enrollment record), on the pg + kafka
# fixtures. Benchmark: tests/bench/bench_orders.sh (label bench).
if(TARGET order-submitter AND TARGET scmctl AND TARGET catalog-sync AND TARGET scm-sim
   AND TARGET kafka-devbroker)
  set(_ord_dir ${CMAKE_CURRENT_SOURCE_DIR}/integration/order)
  set(_ord_env
    "SCMCTL=$<TARGET_FILE:scmctl>"
    "ORDER_SUBMITTER=$<TARGET_FILE:order-submitter>"
    "CATALOG_SYNC=$<TARGET_FILE:catalog-sync>"
    "SCM_SIM_BIN=$<TARGET_FILE:scm-sim>"
    "SCMFLOW_SOURCE_DIR=${PROJECT_SOURCE_DIR}"
    "TESTENV_DIR=${CMAKE_BINARY_DIR}/testenv")
  function(_ord_test name script timeout labels)
    add_test(NAME ${name} COMMAND bash ${_ord_dir}/${script})
    set_tests_properties(${name} PROPERTIES LABELS "${labels}" TIMEOUT ${timeout}
      FIXTURES_REQUIRED "pg;kafka" ENVIRONMENT "${_ord_env}")
  endfunction()
  _ord_test(integration.order.happy happy.sh 300 integration)
  _ord_test(integration.order.validation validation.sh 240 integration)
  _ord_test(integration.order.lifecycle lifecycle.sh 300 integration)
  _ord_test(fault.order.failpoints fault.sh 400 "integration;fault")
  _ord_test(fault.order.kill_storm storm.sh 700 "integration;fault")

  set(_ord_bench_env "${_ord_env}")
  if(TARGET bench_keygen)
    list(APPEND _ord_bench_env "BENCH_KEYGEN=$<TARGET_FILE:bench_keygen>")
  endif()
  add_test(NAME bench.order.submit COMMAND bash ${PROJECT_SOURCE_DIR}/tests/bench/bench_orders.sh)
  set_tests_properties(bench.order.submit PROPERTIES LABELS bench TIMEOUT 900
    FIXTURES_REQUIRED "pg;kafka" ENVIRONMENT "${_ord_bench_env}")
endif()
