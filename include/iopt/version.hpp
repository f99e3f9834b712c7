// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// The library version, written once. CMake reads the three numbers from this
// file, so the package version and the header can never disagree.
#pragma once

// Major version, the x of x.y.z. CMake parses these three lines, so each
// stays a plain "#define NAME number".
#define IOPT_VERSION_MAJOR 0
// Minor version, the y of x.y.z.
#define IOPT_VERSION_MINOR 1
// Patch version, the z of x.y.z.
#define IOPT_VERSION_PATCH 0

// A single number for preprocessor comparisons: MAJOR * 10000 + MINOR * 100 + PATCH
// (so 0.1.0 is 100); it orders versions only while MINOR and PATCH stay below 100.
#define IOPT_VERSION (IOPT_VERSION_MAJOR * 10000 + IOPT_VERSION_MINOR * 100 + IOPT_VERSION_PATCH)

namespace iopt {

// The three parts of a version number, for C++ code that wants them as values.
struct version_info {
  // The major version (IOPT_VERSION_MAJOR).
  int major;
  // The minor version (IOPT_VERSION_MINOR).
  int minor;
  // The patch version (IOPT_VERSION_PATCH).
  int patch;
};

// The version of these headers, the same numbers as the IOPT_VERSION_* macros.
inline constexpr version_info version{IOPT_VERSION_MAJOR, IOPT_VERSION_MINOR, IOPT_VERSION_PATCH};

} // namespace iopt
