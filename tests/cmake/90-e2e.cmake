# End-to-end tests and benchmark (owner: e2e). tests/e2e/*.sh run every
# worker (two replicas each) as separate processes with scmctl and kcat,
# each test with its own database, topic prefix, master key and scm-sim;
# see tests/e2e/lib.sh. The fault test brings its own PostgreSQL cluster and
# dev broker (it stops and restarts them).
set(_e2e_all_targets scmctl catalog-sync order-submitter status-poller repo-ingest scm-sim kafka-devbroker)
set(_e2e_ok ON)
foreach(_t ${_e2e_all_targets})
  if(NOT TARGET ${_t})
    set(_e2e_ok OFF)
  endif()
endforeach()

if(_e2e_ok)
  set(_e2e_env
    "SCMFLOW_SOURCE_DIR=${PROJECT_SOURCE_DIR}"
    "TESTENV_DIR=${CMAKE_BINARY_DIR}/testenv")

  # The lifecycle of the user guide on the shared pg + kafka fixtures.
  add_test(NAME e2e.lifecycle COMMAND bash ${PROJECT_SOURCE_DIR}/tests/e2e/lifecycle.sh)
  set_tests_properties(e2e.lifecycle PROPERTIES LABELS "e2e;integration" TIMEOUT 300
    FIXTURES_REQUIRED "pg;kafka" ENVIRONMENT "${_e2e_env}")

  # SCM outage, broker down/up, PostgreSQL restart during a stream of orders.
  # Its PostgreSQL, broker and simulator are private (it stops them); the
  # fixtures provide env.sh and the testenv/bin links.
  add_test(NAME e2e.faults COMMAND bash ${PROJECT_SOURCE_DIR}/tests/e2e/faults.sh)
  set_tests_properties(e2e.faults PROPERTIES LABELS "e2e;integration;fault" TIMEOUT 420
    FIXTURES_REQUIRED "pg;kafka" ENVIRONMENT "${_e2e_env}")

  # The demo script itself (deploy/dev/demo.sh) in a private directory,
  # against this build (no package install, no rebuild).
  add_test(NAME e2e.demo COMMAND bash ${PROJECT_SOURCE_DIR}/tests/e2e/demo.sh ${CMAKE_CURRENT_BINARY_DIR}/e2e-demo)
  set_tests_properties(e2e.demo PROPERTIES LABELS "e2e;integration" TIMEOUT 300
    ENVIRONMENT "${_e2e_env};SCMFLOW_BUILD_DIR=${CMAKE_BINARY_DIR}")

  # Benchmark: end-to-end orders/s and latency (BENCH_E2E_N orders, default 10000).
  # RSA 2048 keys cost ~150 ms of CPU each: 10,000 of them take a while.
  set(_e2e_bench_env ${_e2e_env})
  if(TARGET bench_keygen)
    list(APPEND _e2e_bench_env "BENCH_KEYGEN=$<TARGET_FILE:bench_keygen>")
  endif()
  add_test(NAME bench.e2e COMMAND bash ${PROJECT_SOURCE_DIR}/tests/bench/bench_e2e.sh)
  set_tests_properties(bench.e2e PROPERTIES LABELS bench TIMEOUT 14400
    FIXTURES_REQUIRED "pg;kafka" ENVIRONMENT "${_e2e_bench_env}")
endif()
