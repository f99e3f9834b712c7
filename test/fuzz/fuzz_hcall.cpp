// Fuzz target: guest hypercalls on a huge window, each tried on the fast
// path and finished on the slow path when it is too hard, against a model
// of what the guest's window must hold.
#include "fuzz_support.hpp"

#include <iopt/configs.hpp>
#include <iopt/hcall/tce_hcalls.hpp>

#include <map>
#include <vector>

namespace {
using namespace iopt;
using table_type = tce_table<config_huge_window>;
using format = table_type::format;
constexpr std::uint64_t page = table_type::page_bytes;
constexpr std::uint64_t ram = std::uint64_t{1} << 24;
constexpr std::uint64_t list_gpa = ram - 4096;
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  iopt_fuzz::byte_reader in(data, size);
  buffer_guest_memory memory(gpa{0}, ram);
  auto window = table_type::create(ioba{huge_window_bus_offset}, std::uint64_t{1} << 40);
  IOPT_FUZZ_CHECK(window.has_value());
  const std::uint64_t pages = window->pages();
  tce_hcalls<buffer_guest_memory, config_huge_window> hcalls(memory);
  IOPT_FUZZ_CHECK(hcalls.attach(1, *window) == status::ok);
  std::map<std::uint64_t, std::uint64_t> model;

  auto valid = [&](std::uint64_t tce) {
    return format::check(tce, table_type::page_shift) == status::ok &&
           (!format::is_present(tce) || format::target(tce, table_type::page_shift) < ram);
  };
  for (int step = 0; !in.done() && step < 2000; ++step) {
    const std::uint8_t op = in.byte();
    // Mostly near the start, sometimes at the window's end or past it.
    const std::uint64_t p =
        (op & 0x80) ? pages - (in.read<std::uint16_t>() % 600) : in.read<std::uint16_t>();
    const std::uint64_t bus = huge_window_bus_offset + p * page;
    const std::uint64_t n = in.read<std::uint16_t>() % 600;
    auto tce = [&] { return (std::uint64_t{in.read<std::uint16_t>()} << 12) | (in.byte() & 7); };
    std::vector<std::uint64_t> list;
    status s;
    auto twice = [&](auto call) {
      const status fast = call(hcall_path::fast);
      return fast == status::too_hard ? call(hcall_path::slow) : fast;
    };
    switch (op % 3) {
    case 0: {
      const std::uint64_t v = tce();
      s = twice([&](hcall_path path) { return hcalls.put_tce(1, bus, v, path); });
      const bool ok = p < pages && (bus & (page - 1)) == 0 && valid(v);
      IOPT_FUZZ_CHECK((s == status::ok) == ok);
      if (ok)
        model[p] = v;
      break;
    }
    case 1: {
      for (std::uint64_t i = 0; i < n; ++i)
        list.push_back(tce());
      // The list page holds 512 TCEs; a longer request reads only what fits.
      const std::uint64_t written = n < 512 ? n : 512;
      IOPT_FUZZ_CHECK(memory.write_tce_list(gpa{list_gpa}, std::span(list.data(), written)) ==
                      status::ok);
      s = twice(
          [&](hcall_path path) { return hcalls.put_tce_indirect(1, bus, list_gpa, n, path); });
      bool ok = n >= 1 && n <= 512 && p + n <= pages;
      for (std::uint64_t v : list)
        ok = ok && valid(v);
      IOPT_FUZZ_CHECK((s == status::ok) == ok);
      if (ok)
        for (std::uint64_t i = 0; i < n; ++i)
          model[p + i] = list[i];
      break;
    }
    default: {
      const std::uint64_t v = tce() & ~std::uint64_t{3}; // stuff clears
      s = twice([&](hcall_path path) { return hcalls.stuff_tce(1, bus, v, n, path); });
      const bool ok = n >= 1 && p + n <= pages && valid(v);
      IOPT_FUZZ_CHECK((s == status::ok) == ok);
      if (ok)
        for (std::uint64_t i = 0; i < n; ++i)
          model[p + i] = v;
      break;
    }
    }
    for (std::uint64_t q : {p, p + n / 2, p + (n ? n - 1 : 0)})
      if (q < pages) {
        const std::uint64_t expected = model.count(q) ? format::normalize(model[q]) : 0;
        IOPT_FUZZ_CHECK(*window->get(ioba{huge_window_bus_offset + q * page}) == expected);
      }
  }
  return 0;
}
