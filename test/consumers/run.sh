#!/usr/bin/env bash
# Builds and runs the four ways of consuming iopt, each in a scratch folder:
# find_package after an install, pkg-config (from the install and from the
# install moved elsewhere), add_subdirectory, and a plain compiler call
# without exceptions or RTTI.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

echo "== consumer: find_package after cmake --install"
cmake -S "$root" -B "$scratch/iopt" -G Ninja -DIOPT_BUILD_TESTS=OFF -DIOPT_BUILD_BENCHMARKS=OFF >/dev/null
cmake --install "$scratch/iopt" --prefix "$scratch/prefix" >/dev/null
cmake -S "$here/find_package" -B "$scratch/find_package" -G Ninja -DCMAKE_PREFIX_PATH="$scratch/prefix" >/dev/null
cmake --build "$scratch/find_package" >/dev/null
"$scratch/find_package/consumer"

echo "== consumer: pkg-config, from the install and from the same install moved"
for prefix in "$scratch/prefix" "$scratch/moved"; do
  if [ "$prefix" = "$scratch/moved" ]; then mv "$scratch/prefix" "$prefix"; fi
  cflags=$(PKG_CONFIG_PATH="$prefix/share/pkgconfig" pkg-config --cflags iopt)
  include=$(printf '%s\n' $cflags | sed -n 's/^-I//p')
  if [ "$(realpath "$include")" != "$prefix/include" ]; then
    echo "pkg-config gives '$cflags', not the headers under $prefix" >&2
    exit 1
  fi
  # shellcheck disable=SC2086 # the flags are words
  g++ $cflags -Wall -Wextra -Werror "$here/consumer.cpp" -o "$scratch/pkg-config-consumer"
  "$scratch/pkg-config-consumer"
done

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
echo "consumers: 4 ways passed"
