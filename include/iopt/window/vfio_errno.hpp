// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// The errno the Linux sPAPR VFIO driver (drivers/vfio/vfio_iommu_spapr_tce.c)
// returns for the same input, per ioctl.
//
// One status means different things to different ioctls, and the driver
// answers accordingly: the same range registered again is EBUSY but an
// overlap is EINVAL; an IOVA in no window is ENXIO for MAP_DMA but EINVAL for
// SPAPR_TCE_REMOVE; both windows in use is ENOSPC; an ioctl of the other
// memory model (ENABLE on v2, REGISTER_MEMORY on v1) is ENOTTY. A VMM that
// emulates the ioctls with a dma_container answers with vfio_errno(op, s).
//
// iopt's v1 container can create and remove windows (the driver's v1 has
// only the default window and answers TCE_CREATE with ENOTTY), so v1 can be
// used with any IOMMU page size and two windows.
//
// Where iopt refuses what the driver lets through, the errno is the one the
// driver uses for the nearest check (see test/BAD_INPUTS.md):
//   - an IOVA not aligned to the IOMMU page: EINVAL (the driver returns +1,
//     the value of a boolean macro, by mistake);
//   - a range that starts in a window and runs past its end: ENXIO (the
//     driver checks only the first page and writes past its table);
//   - MAP_DMA over a mapping: EBUSY (the driver replaces it silently; QEMU
//     answers EBUSY by unmapping and mapping again);
//   - size 0: EINVAL (the driver maps or unmaps nothing and returns 0);
//   - UNREGISTER_MEMORY of a region that TCEs still map: EBUSY (the driver
//     drops the region from the container and returns 0, leaving it pinned);
//   - SPAPR_TCE_REMOVE of an address inside a window but not its start:
//     EINVAL (the driver removes the window that holds it).
#pragma once

#include <cerrno>
#include <cstdint>

#include <iopt/status.hpp>

namespace iopt {

// The sPAPR TCE IOMMU ioctls a dma_container stands for.
enum class vfio_ioctl : std::uint8_t {
  enable,            // VFIO_IOMMU_ENABLE (v1): dma_container::enable
  disable,           // VFIO_IOMMU_DISABLE (v1): disable
  map_dma,           // VFIO_IOMMU_MAP_DMA: map_dma
  unmap_dma,         // VFIO_IOMMU_UNMAP_DMA: unmap_dma
  register_memory,   // VFIO_IOMMU_SPAPR_REGISTER_MEMORY (v2): register_memory
  unregister_memory, // VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY (v2): unregister_memory
  create_window,     // VFIO_IOMMU_SPAPR_TCE_CREATE (v2): create_window
  remove_window,     // VFIO_IOMMU_SPAPR_TCE_REMOVE (v2): remove_window
  get_info,          // VFIO_IOMMU_SPAPR_TCE_GET_INFO: info / query
};

// The positive errno the driver gives for `s` from `op` (0 for ok).
constexpr int vfio_errno(vfio_ioctl op, status s) noexcept {
  if (s == status::ok)
    return 0;
  // Common to every ioctl: the other memory model's call, and what only the
  // host can run out of.
  switch (s) {
  case status::unsupported:
    // The other memory model's ioctl; elsewhere a valid request no table
    // here can serve (a window's size or levels, a page larger than its
    // registered region backs), which the driver calls EINVAL.
    return op == vfio_ioctl::enable || op == vfio_ioctl::disable ||
                   op == vfio_ioctl::register_memory || op == vfio_ioctl::unregister_memory
               ? ENOTTY
               : EINVAL;
  case status::no_memory: return ENOMEM;
  case status::fault: return EFAULT;
  case status::not_permitted: return EPERM; // not enabled (v1); no huge page backs the IOMMU page
  case status::hardware_error: return EIO;
  default: break;
  }
  switch (op) {
  case vfio_ioctl::enable: return s == status::busy ? EBUSY : EINVAL; // busy: already enabled
  case vfio_ioctl::map_dma:
  case vfio_ioctl::unmap_dma:
    switch (s) {
    case status::out_of_window: return ENXIO; // no window holds the IOVA (or all of the range)
    case status::exists: return EBUSY;        // over an existing mapping
    default: return EINVAL; // alignment, permissions, memory not registered or too small a region
    }
  case vfio_ioctl::register_memory:
    return s == status::exists ? EBUSY : EINVAL; // the same range again; overlap, alignment
  case vfio_ioctl::unregister_memory:
    switch (s) {
    case status::not_found: return ENOENT; // not an exact registration
    case status::busy: return EBUSY;       // TCEs still map it
    default: return EINVAL;                // alignment
    }
  case vfio_ioctl::create_window:
    return s == status::busy ? ENOSPC : EINVAL; // both windows exist; page size, size, levels
  case vfio_ioctl::remove_window:
  case vfio_ioctl::disable:
  case vfio_ioctl::get_info: return EINVAL; // no window starts there
  }
  return EINVAL;
}

} // namespace iopt
