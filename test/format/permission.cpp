#include <iopt/format/permission.hpp>

#include <doctest/doctest.h>

using iopt::permission;

TEST_CASE("permission bits combine like the hardware's") {
  static_assert((permission::read | permission::write) == permission::read_write);
  static_assert((permission::read_write & permission::write) == permission::write);
  CHECK(iopt::can_read(permission::read_write));
  CHECK(iopt::can_write(permission::read_write));
  CHECK_FALSE(iopt::can_write(permission::read));
  CHECK_FALSE(iopt::can_read(permission::write));
  CHECK_FALSE(iopt::can_read(permission::none));
  CHECK(iopt::is_valid(permission::read_write));
  CHECK_FALSE(iopt::is_valid(static_cast<permission>(4)));
}
