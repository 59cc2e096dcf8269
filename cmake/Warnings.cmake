# Strict warnings as an INTERFACE target: every scmflow target links it.
add_library(scmflow_warnings INTERFACE)
target_compile_options(scmflow_warnings INTERFACE
  -Wall -Wextra -Wshadow -Wformat=2 -Wmissing-prototypes -Wstrict-prototypes
  -Wvla -Wwrite-strings -Wno-unused-parameter)
if(SCMFLOW_WERROR)
  target_compile_options(scmflow_warnings INTERFACE -Werror)
endif()
