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
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>
#include <utility>

#include <iopt/settings.hpp>

namespace iopt {

// The outcome of an operation: ok or the reason it failed. Functions that
// produce a value return result<T>, which carries a status on failure.
enum class status : std::uint8_t {
  // The request was carried out.
  ok,
  // A malformed request: bad count, size, list or option.
  invalid_parameter,
  // An address or size is not aligned to the page it must be; also a TCE with
  // bits other than the permission bits below the page.
  not_aligned,
  // An IOBA (or part of a range) lies outside the DMA window.
  out_of_window,
  // An address range would wrap past the top of the 64-bit space.
  wraps,
  // A permission that is not one of the four enumerators, or a TCE with
  // address bits the format does not have (above its address_mask).
  bad_permission,
  // An allocation or a locked-memory charge failed.
  no_memory,
  // The object is in use (e.g. a region that TCEs still map).
  busy,
  // No such region, window or entry.
  not_found,
  // The same thing already exists (a region, a mapping).
  exists,
  // Part of the range is already taken by something else.
  overlaps,
  // The fast path cannot finish; nothing has changed, retry on the slow path.
  too_hard,
  // The caller lacks a privilege or the memory is not usable.
  not_permitted,
  // A valid request this configuration does not support.
  unsupported,
  // Reading the caller's memory failed.
  fault,
  // The backend failed in a way the caller cannot fix.
  hardware_error,
  // A migration stream ends before its end (migrate/table_stream.hpp).
  stream_truncated,
  // A migration stream holds a field no valid stream has, or bytes past its
  // end.
  stream_corrupt,
  // A migration stream was written for another version, configuration or
  // window than the one receiving it.
  stream_mismatch,
};

// Number of enumerators; kept next to the enum so a test can walk them all.
inline constexpr std::size_t status_count = static_cast<std::size_t>(status::stream_mismatch) + 1;

// A short English description of s for logs and messages, such as
// "not aligned"; "unknown status" for a value outside the enum.
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
  case status::stream_truncated: return "migration stream cut short";
  case status::stream_corrupt: return "migration stream corrupt";
  case status::stream_mismatch: return "migration stream for another table";
  }
  return "unknown status";
}

// sPAPR hypercall return codes (PAPR; the values a guest kernel checks).
enum class hcall_return : long {
  // The hypercall succeeded.
  H_SUCCESS = 0,
  // A host-side failure the guest cannot fix.
  H_HARDWARE = -1,
  // The hypercall is not supported. to_hcall never returns it.
  H_FUNCTION = -2,
  // The caller lacks the privilege. to_hcall never returns it.
  H_PRIVILEGE = -3,
  // A bad argument: anything the guest got wrong.
  H_PARAMETER = -4,
  // Not seen by guests: tells the host to take the slow path.
  H_TOO_HARD = 9999,
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
  case status::unsupported:
  case status::stream_truncated:
  case status::stream_corrupt:
  case status::stream_mismatch: return hcall_return::H_PARAMETER;
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
  case status::stream_truncated: return ENODATA;
  case status::stream_corrupt: return EBADMSG;
  case status::stream_mismatch: return EPROTO;
  }
  return EIO;
}

// A value or the status that explains why there is none. Small and
// exception-free; T must be default constructible (all of iopt's are).
template <class T>
class [[nodiscard]] result {
  static_assert(std::is_default_constructible_v<T>, "result<T> needs a default-constructible T");

public:
  // A success holding value; implicit, so a function can return a T.
  constexpr result(T value) noexcept(std::is_nothrow_move_constructible_v<T>) // NOLINT: implicit
      : value_(std::move(value)) {}
  // A failure; implicit, so a function can return a status. error must not
  // be status::ok (asserted).
  constexpr result(status error) noexcept : status_(error) { // NOLINT: implicit by design
    IOPT_ASSERT(error != status::ok);
  }

  // Whether the result holds a value (error() is status::ok).
  [[nodiscard]] constexpr bool has_value() const noexcept { return status_ == status::ok; }
  // has_value(), for if (auto r = ...).
  constexpr explicit operator bool() const noexcept { return has_value(); }
  // Why there is no value; status::ok when there is one.
  [[nodiscard]] constexpr status error() const noexcept { return status_; }

  // The value; only when has_value() (asserted).
  [[nodiscard]] constexpr const T& value() const& noexcept {
    IOPT_ASSERT(has_value());
    return value_;
  }
  // The same, mutable.
  [[nodiscard]] constexpr T& value() & noexcept {
    IOPT_ASSERT(has_value());
    return value_;
  }
  // The same, moved out of an expiring result.
  [[nodiscard]] constexpr T&& value() && noexcept {
    IOPT_ASSERT(has_value());
    return std::move(value_);
  }
  // value(), as with a pointer or std::optional.
  constexpr const T& operator*() const& noexcept { return value(); }
  // The same, mutable.
  constexpr T& operator*() & noexcept { return value(); }
  // Member access to value(); only when has_value() (asserted).
  constexpr const T* operator->() const noexcept { return &value(); }
  // The same, mutable.
  constexpr T* operator->() noexcept { return &value(); }

  // A copy of the value, or fallback when there is none.
  [[nodiscard]] constexpr T value_or(T fallback) const noexcept {
    return has_value() ? value_ : fallback;
  }

private:
  T value_{};
  status status_ = status::ok;
};

} // namespace iopt
