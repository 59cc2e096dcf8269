# Shared test services as ctest fixtures. A test that needs them says
#   set_tests_properties(my.test PROPERTIES FIXTURES_REQUIRED "pg;kafka;sim")
# and sources ${CMAKE_BINARY_DIR}/testenv/env.sh (tests/lib/testenv.sh:
# tenv_load) to get SCMFLOW_DATABASE_URL, PGHOST/PGPORT/PGUSER,
# SCMFLOW_KAFKA_BROKERS, KAFKA_DEVBROKER_CONTROL, SCM_SIM_URL,
# SCM_SIM_ADMIN_URL, SCMFLOW_BIN_DIR, SCMFLOW_SOURCE_DIR.
#
# SCMFLOW_BIN_DIR (${CMAKE_BINARY_DIR}/testenv/bin) holds a symlink to every
# executable built under services/ and deploy/, so tests call workers by name.
set(SCMFLOW_TESTENV_DIR ${CMAKE_BINARY_DIR}/testenv)
set(SCMFLOW_TESTENV_BIN ${SCMFLOW_TESTENV_DIR}/bin)

# Every executable target of services/* and deploy/* (added before tests/).
set(_sf_exe_targets "")
foreach(_sf_top services deploy)
  get_property(_sf_subdirs DIRECTORY ${PROJECT_SOURCE_DIR}/${_sf_top} PROPERTY SUBDIRECTORIES)
  foreach(_sf_dir ${PROJECT_SOURCE_DIR}/${_sf_top} ${_sf_subdirs})
    get_property(_sf_targets DIRECTORY ${_sf_dir} PROPERTY BUILDSYSTEM_TARGETS)
    foreach(_sf_t ${_sf_targets})
      get_target_property(_sf_type ${_sf_t} TYPE)
      if(_sf_type STREQUAL "EXECUTABLE")
        list(APPEND _sf_exe_targets ${_sf_t})
      endif()
    endforeach()
  endforeach()
endforeach()
set(_sf_link_cmds "mkdir -p '${SCMFLOW_TESTENV_BIN}'\n")
foreach(_sf_t ${_sf_exe_targets})
  string(APPEND _sf_link_cmds
    "ln -sfn '$<TARGET_FILE:${_sf_t}>' '${SCMFLOW_TESTENV_BIN}/${_sf_t}.tmp.'$$ && "
    "mv -fT '${SCMFLOW_TESTENV_BIN}/${_sf_t}.tmp.'$$ '${SCMFLOW_TESTENV_BIN}/${_sf_t}'\n")
endforeach()
file(GENERATE OUTPUT ${SCMFLOW_TESTENV_DIR}/link-bins.sh CONTENT "${_sf_link_cmds}")

set(_sf_fixture_env
  "TESTENV_DIR=${SCMFLOW_TESTENV_DIR}"
  "SCMFLOW_BIN_DIR=${SCMFLOW_TESTENV_BIN}"
  "SCMFLOW_SOURCE_DIR=${PROJECT_SOURCE_DIR}")
if(TARGET kafka-devbroker)
  list(APPEND _sf_fixture_env "KAFKA_DEVBROKER=$<TARGET_FILE:kafka-devbroker>")
endif()
if(TARGET scm-sim)
  list(APPEND _sf_fixture_env "SCM_SIM=$<TARGET_FILE:scm-sim>")
  # The tests' seed: tests/fixtures/sim-seed.json if present, else the
  # simulator's test seed (customer scmflow-test, see deploy/scm-sim/README.md).
  if(EXISTS ${PROJECT_SOURCE_DIR}/tests/fixtures/sim-seed.json)
    list(APPEND _sf_fixture_env "SCM_SIM_SEED=${PROJECT_SOURCE_DIR}/tests/fixtures/sim-seed.json")
  elseif(EXISTS ${PROJECT_SOURCE_DIR}/deploy/scm-sim/seed-test.json)
    list(APPEND _sf_fixture_env "SCM_SIM_SEED=${PROJECT_SOURCE_DIR}/deploy/scm-sim/seed-test.json")
  elseif(EXISTS ${PROJECT_SOURCE_DIR}/deploy/scm-sim/seed-demo.json)
    list(APPEND _sf_fixture_env "SCM_SIM_SEED=${PROJECT_SOURCE_DIR}/deploy/scm-sim/seed-demo.json")
  endif()
endif()

set(_sf_fixtures pg)
if(TARGET kafka-devbroker)
  list(APPEND _sf_fixtures kafka)
endif()
if(TARGET scm-sim)
  list(APPEND _sf_fixtures sim)
endif()
foreach(_sf_fx ${_sf_fixtures})
  add_test(NAME fixture.${_sf_fx}.start
    COMMAND sh -c "sh '${SCMFLOW_TESTENV_DIR}/link-bins.sh' && exec '${PROJECT_SOURCE_DIR}/tests/lib/fixture.sh' start ${_sf_fx}")
  add_test(NAME fixture.${_sf_fx}.stop
    COMMAND ${PROJECT_SOURCE_DIR}/tests/lib/fixture.sh stop ${_sf_fx})
  set_tests_properties(fixture.${_sf_fx}.start PROPERTIES
    FIXTURES_SETUP ${_sf_fx} LABELS "fixture" TIMEOUT 120 ENVIRONMENT "${_sf_fixture_env}")
  set_tests_properties(fixture.${_sf_fx}.stop PROPERTIES
    FIXTURES_CLEANUP ${_sf_fx} LABELS "fixture" TIMEOUT 60 ENVIRONMENT "${_sf_fixture_env}")
endforeach()

# The test environment's own smoke test.
if(TARGET kafka-devbroker)
  add_test(NAME integration.devstack.fixtures_smoke
    COMMAND ${PROJECT_SOURCE_DIR}/tests/integration/devstack/fixtures_smoke.sh)
  set_tests_properties(integration.devstack.fixtures_smoke PROPERTIES
    LABELS integration TIMEOUT 120 FIXTURES_REQUIRED "${_sf_fixtures}"
    ENVIRONMENT "TESTENV_DIR=${SCMFLOW_TESTENV_DIR}")
endif()

# sf_http served over real TCP, fetched with libcurl.
add_executable(test_devstack_http ${PROJECT_SOURCE_DIR}/tests/integration/devstack/test_http.c)
target_link_libraries(test_devstack_http PRIVATE scmflow PkgConfig::CMOCKA)
add_test(NAME integration.devstack.http COMMAND test_devstack_http)
set_tests_properties(integration.devstack.http PROPERTIES LABELS integration TIMEOUT 60)

# docker-compose.yml must stay valid (docker-compose 1.29 from Debian).
find_program(SCMFLOW_DOCKER_COMPOSE docker-compose)
if(SCMFLOW_DOCKER_COMPOSE)
  add_test(NAME integration.devstack.compose_config
    COMMAND ${SCMFLOW_DOCKER_COMPOSE} -f ${PROJECT_SOURCE_DIR}/docker-compose.yml config -q
    WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set_tests_properties(integration.devstack.compose_config PROPERTIES
    LABELS integration TIMEOUT 60)
endif()

# The dev stack scripts: pg.sh start/stop/idempotence and stack.sh up/down
# in a private directory (own PostgreSQL + broker; no fixture needed).
if(TARGET kafka-devbroker)
  add_test(NAME integration.devstack.scripts
    COMMAND ${PROJECT_SOURCE_DIR}/tests/integration/devstack/scripts.sh
            ${CMAKE_CURRENT_BINARY_DIR}/devstack-scripts)
  set_tests_properties(integration.devstack.scripts PROPERTIES
    LABELS integration TIMEOUT 180
    ENVIRONMENT "SCMFLOW_BUILD_DIR=${CMAKE_BINARY_DIR}")
endif()

# Note for test authors: the kafka fixture's broker is shared by every test
# running in parallel. Tests that inject faults through
# KAFKA_DEVBROKER_CONTROL must either start a private kafka-devbroker
# (tests/lib/testenv.sh: tenv_kafka_private, as fixtures_smoke.sh does) or take
# RESOURCE_LOCK kafka-faults and undo the fault before they finish.
