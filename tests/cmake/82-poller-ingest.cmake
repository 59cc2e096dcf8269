# status-poller + repo-ingest + scmctl cert/license/order check (owner:
# poller). Bash tests in tests/integration/poller/ and .../ingest/: each runs
# the real binaries as processes with its own database, topic prefix and its
# own scm-sim, on the pg + kafka fixtures. Benchmarks in tests/bench/
# (label bench, not in the default run).
if(TARGET status-poller AND TARGET repo-ingest AND TARGET scmctl AND TARGET scm-sim
   AND TARGET kafka-devbroker)
  set(_pi_env
    "SCMCTL=$<TARGET_FILE:scmctl>"
    "STATUS_POLLER=$<TARGET_FILE:status-poller>"
    "REPO_INGEST=$<TARGET_FILE:repo-ingest>"
    "SCM_SIM_BIN=$<TARGET_FILE:scm-sim>"
    "SCMFLOW_SOURCE_DIR=${PROJECT_SOURCE_DIR}"
    "TESTENV_DIR=${CMAKE_BINARY_DIR}/testenv")
  if(TARGET order-submitter AND TARGET catalog-sync)
    list(APPEND _pi_env "ORDER_SUBMITTER=$<TARGET_FILE:order-submitter>"
                        "CATALOG_SYNC=$<TARGET_FILE:catalog-sync>")
  endif()
  function(_pi_test name script timeout labels)
    add_test(NAME ${name} COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/${script})
    set_tests_properties(${name} PROPERTIES LABELS "${labels}" TIMEOUT ${timeout}
      FIXTURES_REQUIRED "pg;kafka" ENVIRONMENT "${_pi_env}")
  endfunction()
  _pi_test(integration.poller.flow integration/poller/flow.sh 300 integration)
  _pi_test(integration.poller.paths integration/poller/paths.sh 240 integration)
  _pi_test(fault.poller.lease integration/poller/lease.sh 240 "integration;fault")
  _pi_test(integration.poller.scale integration/poller/scale.sh 600 integration)
  _pi_test(integration.poller.deadline integration/poller/deadline.sh 180 integration)
  _pi_test(integration.poller.busy integration/poller/busy.sh 180 integration)
  _pi_test(integration.ingest.license integration/ingest/license.sh 240 integration)
  _pi_test(integration.ingest.bad_chains integration/ingest/bad_chains.sh 240 integration)
  if(TARGET order-submitter AND TARGET catalog-sync)
    _pi_test(integration.ingest.keystores integration/ingest/keystores.sh 420 integration)
  endif()
  foreach(_b poll ingest)
    if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/bench/bench_${_b}.sh)
      add_test(NAME bench.poller.${_b} COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/bench/bench_${_b}.sh)
      set_tests_properties(bench.poller.${_b} PROPERTIES LABELS bench TIMEOUT 1800
        FIXTURES_REQUIRED "pg;kafka" ENVIRONMENT "${_pi_env}")
    endif()
  endforeach()
endif()
