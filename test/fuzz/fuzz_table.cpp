// Fuzz target: operation sequences on a TCE table of every named
// configuration (the first byte picks it), compared with a std::map model
// after every step, and the full list of runs every few steps. Allocation
// failures are injected too: a failed operation must change nothing.
#include "../table/model_runs.hpp"
#include "fuzz_support.hpp"

#include <iopt/configs.hpp>
#include <iopt/format/guest_tce.hpp>
#include <iopt/table/tce_table.hpp>
#include <iopt/testing/fault_injecting_allocator.hpp>

#include <map>
#include <vector>

namespace {

using namespace iopt;

template <class Config>
struct faulty : Config {
  using allocator = fault_injecting_allocator;
};
struct config_guest_small {
  using format = guest_tce;
  using page_size = page_4k;
  static constexpr std::array<unsigned, 4> level_bits{3, 2, 2, 6};
  static constexpr bool free_empty_levels = true;
};

template <class Config>
void run(iopt_fuzz::byte_reader& in, unsigned window_shift, std::uint64_t offset) {
  using table_type = tce_table<faulty<Config>>;
  using format = typename table_type::format;
  constexpr std::uint64_t page = table_type::page_bytes;
  fault_plan plan;
  auto made = table_type::create(ioba{offset}, std::uint64_t{1} << window_shift,
                                 fault_injecting_allocator(plan));
  IOPT_FUZZ_CHECK(made.has_value());
  table_type& t = *made;
  std::map<std::uint64_t, std::uint64_t> model;
  const std::uint64_t pages = t.pages();

  auto model_runs = [&] { return iopt_test::model_runs<table_type>(model, offset); };
  auto set = [&](std::uint64_t p, std::uint64_t v) {
    if (v == 0)
      model.erase(p);
    else
      model[p] = v;
  };

  for (int step = 0; !in.done() && step < 200; ++step) {
    const std::uint8_t op = in.byte();
    const std::uint64_t p = in.read<std::uint32_t>() % (pages + 2); // sometimes past the end
    const std::uint64_t n =
        1 + ((op & 0x38) == 0x38 ? in.read<std::uint16_t>() % 300 : in.byte() % 16);
    const std::uint64_t value =
        (std::uint64_t{in.read<std::uint32_t>()} << table_type::page_shift) | (in.byte() & 7);
    const permission perm = static_cast<permission>(1 + op % 3);
    const ioba at{offset + p * page};
    if ((op & 0xf0) == 0xf0)
      plan.fail_nth(1 + (op & 3)); // the next few allocations may fail
    const auto before = model;
    const std::size_t bytes_before = t.memory_bytes();
    status s = status::ok;
    switch ((op >> 2) % 7) {
    case 0:
      s = t.map(at, value & ~std::uint64_t{7}, perm);
      if (s == status::ok)
        set(p, format::make(value & ~std::uint64_t{7}, perm));
      break;
    case 1:
      s = t.map_range(at, value & ~std::uint64_t{7}, n, perm);
      if (s == status::ok)
        for (std::uint64_t i = 0; i < n; ++i)
          set(p + i, format::make((value & ~std::uint64_t{7}) + i * page, perm));
      break;
    case 2:
      s = t.clear(at, n);
      if (s == status::ok)
        for (std::uint64_t i = 0; i < n; ++i)
          set(p + i, 0);
      break;
    case 3:
      s = t.put(at, value);
      if (s == status::ok)
        set(p, format::normalize(value));
      break;
    case 4: {
      const auto old = t.xchg(at, value);
      s = old.has_value() ? status::ok : old.error();
      if (old) {
        IOPT_FUZZ_CHECK(*old == (model.count(p) ? model[p] : 0));
        set(p, format::normalize(value));
      }
      break;
    }
    case 5:
      s = t.fill(at, n, value);
      if (s == status::ok)
        for (std::uint64_t i = 0; i < n; ++i)
          set(p + i, format::normalize(value));
      break;
    default: {
      const auto tr = t.translate(at + 1);
      const std::uint64_t v = model.count(p) ? model[p] : 0;
      if (p >= pages)
        IOPT_FUZZ_CHECK(tr.error() == status::out_of_window);
      else if (format::is_present(v))
        IOPT_FUZZ_CHECK(tr && tr->target == format::target(v, table_type::page_shift) + 1);
      else
        IOPT_FUZZ_CHECK(tr.error() == status::not_found);
      break;
    }
    }
    plan.never_fail();
    if (s != status::ok) {
      IOPT_FUZZ_CHECK(model == before); // the model did not move...
      if (s == status::no_memory)
        IOPT_FUZZ_CHECK(t.memory_bytes() == bytes_before); // ...and the table kept nothing
    }
    if (p < pages) {
      const auto got = t.get(at);
      IOPT_FUZZ_CHECK(got && *got == (model.count(p) ? model[p] : 0));
    }
    if (step % 32 == 0) {
      std::vector<mapped_run> runs;
      t.for_each_run([&](const mapped_run& r) { runs.push_back(r); });
      IOPT_FUZZ_CHECK(runs == model_runs());
    }
  }
  std::vector<mapped_run> runs;
  for (const mapped_run& r : t.mappings())
    runs.push_back(r);
  IOPT_FUZZ_CHECK(runs == model_runs());
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  iopt_fuzz::byte_reader in(data, size);
  switch (in.byte() % 5) {
  case 0: run<config_4k>(in, 24, 0); break;
  case 1: run<config_64k>(in, 32, std::uint64_t{1} << 40); break;
  case 2: run<config_huge_window>(in, 47, huge_window_bus_offset); break;
  case 3: run<config_16m>(in, 50, 0 - (std::uint64_t{1} << 50)); break; // ends at 2^64
  default: run<config_guest_small>(in, 24, 0x1000'0000); break;
  }
  return 0;
}
