#!/usr/bin/env bash
# Builds and runs the three ways of consuming iopt, each in a scratch folder:
# find_package after an install, add_subdirectory, and a plain compiler call
# without exceptions or RTTI.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

echo "== consumer: find_package after cmake --install"
cmake -S "$root" -B "$scratch/iopt" -G Ninja -DIOPT_BUILD_TESTS=OFF -DIOPT_BUILD_BENCHMARKS=OFF >/dev/null
cmake --install "$scratch/iopt" --prefix "$scratch/prefix" >/dev/null
test -f "$scratch/prefix/share/pkgconfig/iopt.pc"
cmake -S "$here/find_package" -B "$scratch/find_package" -G Ninja -DCMAKE_PREFIX_PATH="$scratch/prefix" >/dev/null
cmake --build "$scratch/find_package" >/dev/null
"$scratch/find_package/consumer"

echo "== consumer: add_subdirectory"
cmake -S "$here/add_subdirectory" -B "$scratch/add_subdirectory" -G Ninja >/dev/null
cmake --build "$scratch/add_subdirectory" >/dev/null
"$scratch/add_subdirectory/consumer"

echo "== consumer: plain compiler call, -fno-exceptions -fno-rtti"
for cxx in g++ clang++-14; do
  "$cxx" -std=c++20 -Wall -Wextra -Werror -fno-exceptions -fno-rtti -I "$root/include" \
    "$here/consumer.cpp" -o "$scratch/plain-$cxx"
  "$scratch/plain-$cxx"
done
echo "consumers: 3 ways passed"
