# SCM client (common/sf_scm*.c): fuzz, integration against scm-sim, bench.
# The unit test (tests/unit/test_scm.c, canned responses from scm-api.md's
# examples served by an in-test libmicrohttpd) is registered by the glob.

# ---- fuzz: the response parsers -----------------------------------------
# Standalone driver (any compiler, any build type incl. ASan): fixtures as
# seeds + a bounded number of deterministic mutations.
add_executable(fuzz_scm_parse_standalone ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_scm_parse.c)
target_compile_definitions(fuzz_scm_parse_standalone PRIVATE SF_FUZZ_STANDALONE)
target_link_libraries(fuzz_scm_parse_standalone PRIVATE scmflow)
file(GLOB _scm_fuzz_seeds ${PROJECT_SOURCE_DIR}/tests/fixtures/scm/*.json)
add_test(NAME fuzz.scm_parse.standalone
  COMMAND fuzz_scm_parse_standalone -n 200000 -s 12345 ${_scm_fuzz_seeds})
set_tests_properties(fuzz.scm_parse.standalone PROPERTIES LABELS fuzz TIMEOUT 300)

# libFuzzer build when clang can link -fsanitize=fuzzer: the parser sources
# compiled directly with clang (libscmflow itself may be built with gcc).
find_program(SCMFLOW_CLANG NAMES clang clang-14)
if(SCMFLOW_CLANG)
  set(_scm_fuzz_bin ${CMAKE_CURRENT_BINARY_DIR}/fuzz_scm_parse)
  set(_scm_fuzz_src
    ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_scm_parse.c
    ${PROJECT_SOURCE_DIR}/common/sf_scm_parse.c
    ${PROJECT_SOURCE_DIR}/common/sf_util.c
    ${PROJECT_SOURCE_DIR}/common/sf_error.c)
  add_custom_command(OUTPUT ${_scm_fuzz_bin}
    COMMAND ${SCMFLOW_CLANG} -g -O1 -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE
            -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
            -I${PROJECT_SOURCE_DIR}/common ${CJSON_CFLAGS} ${_scm_fuzz_src}
            ${CJSON_LDFLAGS} -lm -o ${_scm_fuzz_bin}
    DEPENDS ${_scm_fuzz_src} ${PROJECT_SOURCE_DIR}/common/sf_scm.h
    COMMENT "libFuzzer target fuzz_scm_parse (clang)" VERBATIM)
  add_custom_target(fuzz_scm_parse ALL DEPENDS ${_scm_fuzz_bin})
  add_test(NAME fuzz.scm_parse.libfuzzer
    COMMAND sh -c "rm -rf scm-fuzz-corpus && mkdir scm-fuzz-corpus && cp \"$0\"/*.json scm-fuzz-corpus/ && exec \"$1\" -seed=1 -max_total_time=15 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 scm-fuzz-corpus"
            ${PROJECT_SOURCE_DIR}/tests/fixtures/scm ${_scm_fuzz_bin}
    WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
  set_tests_properties(fuzz.scm_parse.libfuzzer PROPERTIES LABELS fuzz TIMEOUT 90)
endif()

# ---- integration: the client against the real scm-sim -------------------
# Each test binary starts its OWN scm-sim (on a free port, seed-test.json):
# the tests inject faults and switch approval modes through /__sim/, which
# must not leak into other tests sharing the `sim` fixture.
add_executable(test_scm_sim ${PROJECT_SOURCE_DIR}/tests/integration/scm-client/test_scm_sim.c
                            ${PROJECT_SOURCE_DIR}/tests/integration/scm-client/simctl.c)
target_include_directories(test_scm_sim PRIVATE ${PROJECT_SOURCE_DIR}/tests/integration/scm-client)
target_link_libraries(test_scm_sim PRIVATE scmflow PkgConfig::CMOCKA)
add_executable(bench_scm_client ${PROJECT_SOURCE_DIR}/tests/bench/bench_scm_client.c
                                ${PROJECT_SOURCE_DIR}/tests/integration/scm-client/simctl.c)
target_include_directories(bench_scm_client PRIVATE ${PROJECT_SOURCE_DIR}/tests/integration/scm-client)
target_link_libraries(bench_scm_client PRIVATE scmflow)
if(TARGET scm-sim)
  set(_scm_sim_env
    "SCM_SIM=$<TARGET_FILE:scm-sim>"
    "SCM_SIM_SEED=${PROJECT_SOURCE_DIR}/deploy/scm-sim/seed-test.json")
  add_test(NAME integration.scm_client.sim COMMAND test_scm_sim)
  set_tests_properties(integration.scm_client.sim PROPERTIES
    LABELS integration TIMEOUT 240 ENVIRONMENT "${_scm_sim_env}")
  add_test(NAME bench.scm_client COMMAND bench_scm_client)
  set_tests_properties(bench.scm_client PROPERTIES
    LABELS bench TIMEOUT 600 ENVIRONMENT "${_scm_sim_env}")
endif()

# Read-only checks against the shared `sim` fixture (no fault injection).
if(TARGET scm-sim)
  add_test(NAME integration.scm_client.shared_sim
    COMMAND ${PROJECT_SOURCE_DIR}/tests/integration/scm-client/shared_sim.sh $<TARGET_FILE:test_scm_sim>)
  set_tests_properties(integration.scm_client.shared_sim PROPERTIES
    LABELS integration TIMEOUT 120 FIXTURES_REQUIRED sim
    ENVIRONMENT "SCMFLOW_SOURCE_DIR=${PROJECT_SOURCE_DIR};TESTENV_DIR=${CMAKE_BINARY_DIR}/testenv")
endif()
