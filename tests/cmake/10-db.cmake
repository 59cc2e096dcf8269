# sf_db against a real PostgreSQL (fixture pg): migrations (fresh, idempotent,
# refusal of a newer schema, four processes racing on an empty database),
# errors and savepoints, inbox, outbox + relay lock + NOTIFY, schedules
# (two connections racing), reconnect after pg_terminate_backend.
add_executable(test_db_pg ${PROJECT_SOURCE_DIR}/tests/integration/db/test_db_pg.c)
target_link_libraries(test_db_pg PRIVATE scmflow PkgConfig::CMOCKA Threads::Threads)
add_test(NAME integration.db.pg
  COMMAND bash -c "source '${CMAKE_BINARY_DIR}/testenv/env.sh' && exec '$<TARGET_FILE:test_db_pg>'")
set_tests_properties(integration.db.pg PROPERTIES
  LABELS integration TIMEOUT 300 FIXTURES_REQUIRED pg)

# The migration embedding step (common/sf_db_embed.cmake): order, exact bytes,
# bad names and duplicate versions refused.
add_test(NAME integration.db.embed
  COMMAND ${PROJECT_SOURCE_DIR}/tests/integration/db/embed.sh ${PROJECT_SOURCE_DIR}
          ${CMAKE_CURRENT_BINARY_DIR}/db-embed)
set_tests_properties(integration.db.embed PROPERTIES LABELS integration TIMEOUT 60)
