// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// The library version, written once. CMake reads the three numbers from this
// file, so the package version and the header can never disagree.
#pragma once

#define IOPT_VERSION_MAJOR 0
#define IOPT_VERSION_MINOR 1
#define IOPT_VERSION_PATCH 0

// A single number for preprocessor comparisons: MAJOR * 10000 + MINOR * 100 + PATCH.
#define IOPT_VERSION (IOPT_VERSION_MAJOR * 10000 + IOPT_VERSION_MINOR * 100 + IOPT_VERSION_PATCH)

namespace iopt {

struct version_info {
  int major;
  int minor;
  int patch;
};

inline constexpr version_info version{IOPT_VERSION_MAJOR, IOPT_VERSION_MINOR, IOPT_VERSION_PATCH};

} // namespace iopt
