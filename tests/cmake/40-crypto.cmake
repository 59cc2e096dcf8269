# Crypto integration tests (owner: crypto): keystores written by libscmflow
# (PEM, PKCS#12, JKS) are opened with `openssl` and Java 17 keytool, wrong
# passwords are refused, and keytool-written stores open with our parsers.
# Benchmark: bench_keygen (label bench) prints key+CSR and PKCS#12 rates.
set(_crypto ${CMAKE_CURRENT_SOURCE_DIR}/integration/crypto)
add_executable(sf-crypto-ks-tool ${_crypto}/ks_tool.c)
target_include_directories(sf-crypto-ks-tool PRIVATE ${_crypto})
target_link_libraries(sf-crypto-ks-tool PRIVATE scmflow)

add_test(NAME integration.crypto.keystores
  COMMAND bash ${_crypto}/keystores.sh $<TARGET_FILE:sf-crypto-ks-tool>
          ${CMAKE_CURRENT_BINARY_DIR}/crypto-keystores)
set_tests_properties(integration.crypto.keystores PROPERTIES LABELS integration TIMEOUT 300)

add_executable(bench_keygen ${CMAKE_CURRENT_SOURCE_DIR}/bench/bench_keygen.c)
target_include_directories(bench_keygen PRIVATE ${_crypto})
target_link_libraries(bench_keygen PRIVATE scmflow)
add_test(NAME bench.keygen COMMAND bench_keygen)
set_tests_properties(bench.keygen PROPERTIES LABELS bench TIMEOUT 600)

if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_x509.c)
  add_executable(fuzz_x509 ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_x509.c)
  target_include_directories(fuzz_x509 PRIVATE ${_crypto})
  target_link_libraries(fuzz_x509 PRIVATE scmflow)
  add_test(NAME fuzz.x509 COMMAND fuzz_x509 20000)
  set_tests_properties(fuzz.x509 PROPERTIES LABELS fuzz TIMEOUT 300)
endif()
