# Master key rotation: SCMFLOW_MASTER_KEY_OLD_FILES + scmctl rekey, through
# the real workers (catalog-sync, order-submitter, status-poller,
# repo-ingest) and its own scm-sim, on the pg + kafka fixtures
# (tests/integration/rekey/rekey.sh; helpers from integration/poller/lib.sh).
if(TARGET scmctl AND TARGET catalog-sync AND TARGET order-submitter AND TARGET status-poller
   AND TARGET repo-ingest AND TARGET scm-sim AND TARGET kafka-devbroker)
  add_test(NAME integration.rekey.rotation
    COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/integration/rekey/rekey.sh)
  set_tests_properties(integration.rekey.rotation PROPERTIES LABELS integration TIMEOUT 600
    FIXTURES_REQUIRED "pg;kafka"
    ENVIRONMENT "SCMCTL=$<TARGET_FILE:scmctl>;CATALOG_SYNC=$<TARGET_FILE:catalog-sync>;ORDER_SUBMITTER=$<TARGET_FILE:order-submitter>;STATUS_POLLER=$<TARGET_FILE:status-poller>;REPO_INGEST=$<TARGET_FILE:repo-ingest>;SCM_SIM_BIN=$<TARGET_FILE:scm-sim>;SCMFLOW_SOURCE_DIR=${PROJECT_SOURCE_DIR};TESTENV_DIR=${CMAKE_BINARY_DIR}/testenv")
endif()
