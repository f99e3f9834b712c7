# Settings for iopt's own tests and benchmarks; never applied to consumers.

# Warnings are errors for our own targets. -Wconversion and -Wsign-conversion
# are on: index and shift arithmetic is where TCE code goes wrong.
add_library(iopt_warnings INTERFACE)
if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  target_compile_options(iopt_warnings INTERFACE
    -Wall -Wextra -Wpedantic -Wconversion -Wsign-conversion -Wshadow
    -Wold-style-cast -Wnon-virtual-dtor -Werror)
endif()

# Find a dependency from Debian's packages, or stop with the package to install.
function(iopt_require_package name debian_package)
  find_package(${name} CONFIG QUIET)
  if(NOT ${name}_FOUND)
    message(FATAL_ERROR
      "iopt: ${name} was not found. Install it with: apt-get install -y ${debian_package}\n"
      "(or configure with -DIOPT_BUILD_TESTS=OFF -DIOPT_BUILD_BENCHMARKS=OFF to build nothing "
      "but the library target)")
  endif()
endfunction()
