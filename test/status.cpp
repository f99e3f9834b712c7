#include <iopt/status.hpp>

#include <doctest/doctest.h>

#include <set>
#include <string_view>

using iopt::hcall_return;
using iopt::status;

namespace {
status nth_status(std::size_t i) { return static_cast<status>(i); }
} // namespace

TEST_CASE("every status has its own name") {
  std::set<std::string_view> names;
  for (std::size_t i = 0; i < iopt::status_count; ++i) {
    const auto name = iopt::to_string(nth_status(i));
    CHECK(name != "unknown status");
    CHECK(names.insert(name).second);
  }
  CHECK(iopt::to_string(static_cast<status>(200)) == "unknown status");
}

TEST_CASE("hypercall return codes follow PAPR") {
  CHECK(static_cast<long>(hcall_return::H_SUCCESS) == 0);
  CHECK(static_cast<long>(hcall_return::H_HARDWARE) == -1);
  CHECK(static_cast<long>(hcall_return::H_PARAMETER) == -4);
  CHECK(static_cast<long>(hcall_return::H_TOO_HARD) == 9999);

  CHECK(iopt::to_hcall(status::ok) == hcall_return::H_SUCCESS);
  CHECK(iopt::to_hcall(status::too_hard) == hcall_return::H_TOO_HARD);
  CHECK(iopt::to_hcall(status::out_of_window) == hcall_return::H_PARAMETER);
  CHECK(iopt::to_hcall(status::not_aligned) == hcall_return::H_PARAMETER);
  CHECK(iopt::to_hcall(status::bad_permission) == hcall_return::H_PARAMETER);
  CHECK(iopt::to_hcall(status::fault) == hcall_return::H_PARAMETER);
  CHECK(iopt::to_hcall(status::no_memory) == hcall_return::H_HARDWARE);
  CHECK(iopt::to_hcall(status::hardware_error) == hcall_return::H_HARDWARE);
  // Only ok maps to success; only too_hard asks for the slow path.
  for (std::size_t i = 1; i < iopt::status_count; ++i) {
    CHECK(iopt::to_hcall(nth_status(i)) != hcall_return::H_SUCCESS);
    CHECK((iopt::to_hcall(nth_status(i)) == hcall_return::H_TOO_HARD) ==
          (nth_status(i) == status::too_hard));
  }
}

TEST_CASE("errno values") {
  CHECK(iopt::to_errno(status::ok) == 0);
  CHECK(iopt::to_errno(status::invalid_parameter) == EINVAL);
  CHECK(iopt::to_errno(status::no_memory) == ENOMEM);
  CHECK(iopt::to_errno(status::busy) == EBUSY);
  CHECK(iopt::to_errno(status::not_found) == ENOENT);
  CHECK(iopt::to_errno(status::exists) == EEXIST);
  CHECK(iopt::to_errno(status::not_permitted) == EPERM);
  CHECK(iopt::to_errno(status::wraps) == EOVERFLOW);
  CHECK(iopt::to_errno(status::fault) == EFAULT);
  for (std::size_t i = 1; i < iopt::status_count; ++i)
    CHECK(iopt::to_errno(nth_status(i)) > 0);
}

TEST_CASE("result carries a value or a status") {
  constexpr iopt::result<int> good(42);
  static_assert(good.has_value() && *good == 42);
  constexpr iopt::result<int> bad(status::busy);
  static_assert(!bad && bad.error() == status::busy && bad.value_or(7) == 7);
  CHECK(good.error() == status::ok);
}
