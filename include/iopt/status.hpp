// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// Every outcome the library reports, as one enum.
//
// Errors are values: no hot path throws. Each status maps to the answer a
// caller's own caller expects: a hypervisor answers the guest with an sPAPR
// hypercall return code (to_hcall), a VFIO-style layer answers its ioctl with
// a negative errno (to_errno).
#pragma once

#include <cerrno>
#include <cstdint>
#include <string_view>
#include <type_traits>
#include <utility>

#include <iopt/settings.hpp>

namespace iopt {

enum class status : std::uint8_t {
  ok,                // the request was carried out
  invalid_parameter, // malformed request (bad count, size, list, option)
  not_aligned,       // an address or size is not aligned to the page it must be
  out_of_window,     // an IOBA (or part of a range) lies outside the DMA window
  wraps,             // an address range would wrap past the top of the 64-bit space
  bad_permission,    // permission or reserved bits the TCE format does not have
  no_memory,         // an allocation or a locked-memory charge failed
  busy,              // the object is in use (e.g. a region that TCEs still map)
  not_found,         // no such region, window or entry
  exists,            // the same thing already exists (a region, a mapping)
  overlaps,          // part of the range is already taken by something else
  too_hard,          // the fast path cannot finish; retry on the slow path
  not_permitted,     // the caller lacks a privilege or the memory is not usable
  unsupported,       // a valid request this configuration does not support
  fault,             // reading the caller's memory failed
  hardware_error,    // the backend failed in a way the caller cannot fix
};

// Number of enumerators; kept next to the enum so a test can walk them all.
inline constexpr std::size_t status_count = static_cast<std::size_t>(status::hardware_error) + 1;

constexpr std::string_view to_string(status s) noexcept {
  switch (s) {
  case status::ok: return "ok";
  case status::invalid_parameter: return "invalid parameter";
  case status::not_aligned: return "not aligned";
  case status::out_of_window: return "outside the DMA window";
  case status::wraps: return "range wraps past 2^64";
  case status::bad_permission: return "bits the TCE format does not define";
  case status::no_memory: return "no memory";
  case status::busy: return "busy";
  case status::not_found: return "not found";
  case status::exists: return "already exists";
  case status::overlaps: return "overlaps something that exists";
  case status::too_hard: return "too hard for the fast path";
  case status::not_permitted: return "not permitted";
  case status::unsupported: return "unsupported";
  case status::fault: return "fault reading memory";
  case status::hardware_error: return "hardware error";
  }
  return "unknown status";
}

// sPAPR hypercall return codes (PAPR; the values a guest kernel checks).
enum class hcall_return : long {
  H_SUCCESS = 0,
  H_HARDWARE = -1,
  H_FUNCTION = -2,
  H_PRIVILEGE = -3,
  H_PARAMETER = -4,
  H_TOO_HARD = 9999, // not seen by guests: tells the host to take the slow path
};

// What a guest should be told. Anything the guest got wrong is H_PARAMETER;
// a host-side failure it cannot fix is H_HARDWARE; too_hard stays H_TOO_HARD
// so the fast path can hand the request to the slow path.
constexpr hcall_return to_hcall(status s) noexcept {
  switch (s) {
  case status::ok: return hcall_return::H_SUCCESS;
  case status::too_hard: return hcall_return::H_TOO_HARD;
  case status::invalid_parameter:
  case status::not_aligned:
  case status::out_of_window:
  case status::wraps:
  case status::bad_permission:
  case status::not_found:
  case status::exists:
  case status::overlaps:
  case status::not_permitted:
  case status::fault:
  case status::unsupported: return hcall_return::H_PARAMETER;
  case status::no_memory:
  case status::busy:
  case status::hardware_error: return hcall_return::H_HARDWARE;
  }
  return hcall_return::H_HARDWARE;
}

// A positive errno for a status, one per status (negated by the caller). The
// sPAPR VFIO ioctls answer the same status differently per ioctl: for what the
// Linux driver returns, use vfio_errno (window/vfio_errno.hpp).
constexpr int to_errno(status s) noexcept {
  switch (s) {
  case status::ok: return 0;
  case status::invalid_parameter:
  case status::not_aligned:
  case status::out_of_window:
  case status::overlaps:
  case status::bad_permission: return EINVAL;
  case status::wraps: return EOVERFLOW;
  case status::no_memory: return ENOMEM;
  case status::busy: return EBUSY;
  case status::not_found: return ENOENT;
  case status::exists: return EEXIST;
  case status::too_hard: return EAGAIN;
  case status::not_permitted: return EPERM;
  case status::unsupported: return ENOTSUP;
  case status::fault: return EFAULT;
  case status::hardware_error: return EIO;
  }
  return EIO;
}

// A value or the status that explains why there is none. Small and
// exception-free; T must be default constructible (all of iopt's are).
template <class T>
class [[nodiscard]] result {
  static_assert(std::is_default_constructible_v<T>, "result<T> needs a default-constructible T");

public:
  constexpr result(T value) noexcept(std::is_nothrow_move_constructible_v<T>) // NOLINT: implicit
      : value_(std::move(value)) {}
  constexpr result(status error) noexcept : status_(error) { // NOLINT: implicit by design
    IOPT_ASSERT(error != status::ok);
  }

  [[nodiscard]] constexpr bool has_value() const noexcept { return status_ == status::ok; }
  constexpr explicit operator bool() const noexcept { return has_value(); }
  [[nodiscard]] constexpr status error() const noexcept { return status_; }

  [[nodiscard]] constexpr const T& value() const& noexcept {
    IOPT_ASSERT(has_value());
    return value_;
  }
  [[nodiscard]] constexpr T& value() & noexcept {
    IOPT_ASSERT(has_value());
    return value_;
  }
  [[nodiscard]] constexpr T&& value() && noexcept {
    IOPT_ASSERT(has_value());
    return std::move(value_);
  }
  constexpr const T& operator*() const& noexcept { return value(); }
  constexpr T& operator*() & noexcept { return value(); }
  constexpr const T* operator->() const noexcept { return &value(); }
  constexpr T* operator->() noexcept { return &value(); }

  [[nodiscard]] constexpr T value_or(T fallback) const noexcept {
    return has_value() ? value_ : fallback;
  }

private:
  T value_{};
  status status_ = status::ok;
};

} // namespace iopt
