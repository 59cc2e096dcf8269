# scm-sim integration tests (bash + curl + openssl + jq). Each test starts its
# own simulator on a free port (--listen 127.0.0.1:0 --port-file), so they do
# not need the shared `sim` fixture and can run in parallel.
if(TARGET scm-sim)
  set(_sim_dir ${PROJECT_SOURCE_DIR}/tests/integration/scm-sim)
  set(_sim_env "SCM_SIM=$<TARGET_FILE:scm-sim>" "SCMFLOW_SOURCE_DIR=${PROJECT_SOURCE_DIR}")
  foreach(_sim_t api faults tls)
    add_test(NAME integration.scm_sim.${_sim_t} COMMAND ${_sim_dir}/test_${_sim_t}.sh)
    set_tests_properties(integration.scm_sim.${_sim_t} PROPERTIES
      LABELS integration TIMEOUT 300 ENVIRONMENT "${_sim_env}")
  endforeach()
  # 100,000 generated certificates paged by 200; prints the time taken.
  add_test(NAME integration.scm_sim.bulk_100k COMMAND ${_sim_dir}/test_bulk.sh)
  set_tests_properties(integration.scm_sim.bulk_100k PROPERTIES
    LABELS integration TIMEOUT 600 ENVIRONMENT "${_sim_env}")
endif()

# scm-sim under valgrind (memcheck, definite leaks are errors). valgrind and
# ASan exclude each other, so a sanitized build gets a second, uninstrumented
# copy of the simulator for this test (the later -fno-sanitize=all wins over
# the directory-wide -fsanitize flags).
find_program(SCMFLOW_VALGRIND valgrind)
if(TARGET scm-sim AND SCMFLOW_VALGRIND)
  if(SCMFLOW_SANITIZE)
    file(GLOB _sim_vg_sources CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/deploy/scm-sim/*.c)
    add_executable(scm-sim-vg ${_sim_vg_sources})
    target_compile_options(scm-sim-vg PRIVATE -fno-sanitize=all)
    target_link_options(scm-sim-vg PRIVATE -fno-sanitize=all)
    target_link_libraries(scm-sim-vg PRIVATE scmflow_warnings PkgConfig::MHD PkgConfig::OPENSSL
                          PkgConfig::CJSON Threads::Threads)
    set(_sim_vg_bin $<TARGET_FILE:scm-sim-vg>)
  else()
    set(_sim_vg_bin $<TARGET_FILE:scm-sim>)
  endif()
  add_test(NAME integration.scm_sim.valgrind COMMAND ${_sim_dir}/test_valgrind.sh)
  # ~8 s on an idle machine, but scm-sim under valgrind has twice failed to
  # exit on SIGTERM on a loaded machine (a shutdown hang not yet found), so
  # it is labelled "manual" and left out of the default run (deploy/dev/test.sh
  # excludes bench and manual); run it with: ctest -L manual.
  set_tests_properties(integration.scm_sim.valgrind PROPERTIES
    LABELS "integration;manual" TIMEOUT 400
    ENVIRONMENT "SCM_SIM=${_sim_vg_bin};SCMFLOW_SOURCE_DIR=${PROJECT_SOURCE_DIR}")
endif()
