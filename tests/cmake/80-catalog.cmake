# catalog-sync + scmctl (owner: catalog). Bash tests in
# tests/integration/catalog/: each runs the real binaries as processes with
# its own database, topic prefix and its own scm-sim (they change the
# simulator's catalog and faults), on the pg + kafka fixtures.
# Benchmark: tests/bench/bench_import.sh (label bench, not in the default run).
if(TARGET catalog-sync AND TARGET scmctl AND TARGET scm-sim AND TARGET kafka-devbroker)
  set(_cat_dir ${CMAKE_CURRENT_SOURCE_DIR}/integration/catalog)
  set(_cat_env
    "SCMCTL=$<TARGET_FILE:scmctl>"
    "CATALOG_SYNC=$<TARGET_FILE:catalog-sync>"
    "SCM_SIM_BIN=$<TARGET_FILE:scm-sim>"
    "SCMFLOW_SOURCE_DIR=${PROJECT_SOURCE_DIR}"
    "TESTENV_DIR=${CMAKE_BINARY_DIR}/testenv")
  function(_cat_test name script timeout labels)
    add_test(NAME ${name} COMMAND bash ${_cat_dir}/${script})
    set_tests_properties(${name} PROPERTIES LABELS "${labels}" TIMEOUT ${timeout}
      FIXTURES_REQUIRED "pg;kafka" ENVIRONMENT "${_cat_env}")
  endfunction()
  _cat_test(integration.catalog.account account.sh 120 integration)
  _cat_test(integration.catalog.sync catalog_sync.sh 420 integration)
  _cat_test(integration.catalog.schedule catalog_schedule.sh 300 integration)
  _cat_test(fault.catalog.sync_faults catalog_faults.sh 420 "integration;fault")
  _cat_test(integration.catalog.import import.sh 600 integration)
  _cat_test(fault.catalog.import_kill import_kill.sh 500 "integration;fault")

  add_test(NAME bench.catalog.import COMMAND bash ${PROJECT_SOURCE_DIR}/tests/bench/bench_import.sh)
  set_tests_properties(bench.catalog.import PROPERTIES LABELS bench TIMEOUT 900
    FIXTURES_REQUIRED "pg;kafka" ENVIRONMENT "${_cat_env};BENCH_IMPORT_CERTS=100000")
endif()
