// The program every consumer project builds: it uses iopt the way a user
// would, with nothing but the installed or vendored headers.
#include <iopt/iopt.hpp>

#include <cstdio>

int main() {
  auto table = iopt::tce_table<iopt::config_4k>::create(iopt::ioba{0}, std::uint64_t{1} << 30);
  if (!table)
    return 1;
  if (table->map_range(iopt::ioba{0x10000}, 0x8000'0000, 16, iopt::permission::read) !=
      iopt::status::ok)
    return 2;
  const auto t = table->translate(iopt::ioba{0x1f123});
  if (!t || t->target != 0x8000'f123)
    return 3;
  std::printf("iopt %d.%d.%d consumer: ok\n", iopt::version.major, iopt::version.minor,
              iopt::version.patch);
  return 0;
}
