// The second translation unit of the two-unit link test.
#include <iopt/iopt.hpp>

int use_in_unit_b() {
  auto t = iopt::tce_table<iopt::config_16m>::create(iopt::ioba{0}, std::uint64_t{1} << 36);
  if (!t || t->map(iopt::ioba{1} + ((1 << 24) - 1), 0, iopt::permission::read) != iopt::status::ok)
    return 1;
  return t->translate(iopt::ioba{1 << 24}).has_value() ? 0 : 1;
}
