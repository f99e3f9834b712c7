// One of two translation units that include every header and instantiate the
// same templates: linking them together shows header-only code defines
// nothing twice.
#include <iopt/iopt.hpp>

int use_in_unit_b();

int use_in_unit_a() {
  auto t = iopt::tce_table<iopt::config_16m>::create(iopt::ioba{0}, std::uint64_t{1} << 36);
  if (!t || t->map(iopt::ioba{0}, 0, iopt::permission::read) != iopt::status::ok)
    return 1;
  return iopt::to_string(iopt::status::ok).size() == 2 ? 0 : 1;
}

int main() { return use_in_unit_a() + use_in_unit_b(); }
