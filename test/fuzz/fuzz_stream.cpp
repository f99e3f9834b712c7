// Fuzz target: migration streams restored into an empty table, or applied
// as a round of changes to a table that holds entries. The first byte
// picks the mode (bit 7: changes) and an allocation to fail (bits 0-6; 0:
// none); the rest is the stream. A restore or an application that fails
// must leave the receiver as it was and give back every block it took. A
// restore that succeeds must hold what check_stream counted, and its own
// snapshot must restore to the same table; changes that apply must apply
// again to the same result. Nothing may crash or leak, whatever the bytes.
#include "fuzz_support.hpp"

#include <iopt/format/hardware_tce.hpp>
#include <iopt/migrate/table_stream.hpp>
#include <iopt/table/tce_table.hpp>
#include <iopt/testing/fault_injecting_allocator.hpp>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace {

using namespace iopt;

// Four levels of small blocks over 4096 pages of 4 KiB, so that records
// reach every level's edges.
struct config_small {
  using format = hardware_tce;
  using page_size = page_4k;
  static constexpr std::array<unsigned, 4> level_bits{3, 2, 2, 6};
  using allocator = fault_injecting_allocator;
};
using table_type = tce_table<config_small>;
constexpr std::uint64_t window_offset = 0x1000'0000, window_bytes = std::uint64_t{1} << 24;

struct byte_sink {
  std::vector<std::byte> bytes;
  status operator()(std::span<const std::byte> piece) {
    bytes.insert(bytes.end(), piece.begin(), piece.end());
    return status::ok;
  }
};

std::vector<mapped_run> runs_of(const table_type& t) {
  std::vector<mapped_run> runs;
  t.for_each_run([&](const mapped_run& r) { runs.push_back(r); });
  return runs;
}

table_type make(fault_plan& plan) {
  auto made =
      table_type::create(ioba{window_offset}, window_bytes, fault_injecting_allocator(plan));
  IOPT_FUZZ_CHECK(made.has_value());
  return std::move(made).value();
}

// Applies the stream as changes to a table holding a run, a list and
// entries at both ends of the window.
void apply_as_changes(std::span<const std::byte> stream, std::uint64_t fail_at, fault_plan& plan) {
  table_type receiver = make(plan);
  const std::uint64_t last = window_offset + window_bytes - table_type::page_bytes;
  IOPT_FUZZ_CHECK(receiver.map_range(ioba{window_offset}, 0x40'0000, 9, permission::read) ==
                  status::ok);
  const std::uint64_t list[] = {0x9000, 0x3'0000, 0x3'1000};
  IOPT_FUZZ_CHECK(receiver.map_list(ioba{window_offset + 0x80'0000}, list, permission::write) ==
                  status::ok);
  IOPT_FUZZ_CHECK(receiver.map(ioba{last}, 0x7000, permission::read_write) == status::ok);
  const auto before = runs_of(receiver);
  const std::size_t bytes_before = receiver.memory_bytes();
  const std::int64_t live_before = plan.live_bytes;
  const auto checked =
      check_stream<table_type>(stream, receiver.window(), table_stream::kind::changes);
  plan.fail_nth(fail_at);
  const status s = apply_changes(receiver, stream);
  plan.never_fail();
  if (s != status::ok) {
    IOPT_FUZZ_CHECK(s == checked.error() || (checked && s == status::no_memory));
    IOPT_FUZZ_CHECK(runs_of(receiver) == before);
    IOPT_FUZZ_CHECK(receiver.memory_bytes() == bytes_before);
    IOPT_FUZZ_CHECK(plan.live_bytes == live_before);
    return;
  }
  IOPT_FUZZ_CHECK(checked.has_value());
  const auto after = runs_of(receiver);
  IOPT_FUZZ_CHECK(apply_changes(receiver, stream) == status::ok);
  IOPT_FUZZ_CHECK(runs_of(receiver) == after);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0)
    return 0;
  const std::uint64_t fail_at = data[0] & 0x7f;
  const std::span<const std::byte> stream(reinterpret_cast<const std::byte*>(data + 1), size - 1);
  fault_plan plan;
  if ((data[0] & 0x80) != 0) {
    apply_as_changes(stream, fail_at, plan);
    IOPT_FUZZ_CHECK(plan.live_bytes == 0 && plan.live_blocks == 0);
    return 0;
  }
  {
    table_type receiver = make(plan);
    const std::size_t bytes_before = receiver.memory_bytes();
    const std::int64_t live_before = plan.live_bytes;
    const auto checked = check_stream<table_type>(stream, receiver.window());
    plan.fail_nth(fail_at);
    const status s = restore(receiver, stream);
    plan.never_fail();
    if (s != status::ok) {
      // Refused by the check, or an injected allocation failure after it.
      IOPT_FUZZ_CHECK(s == checked.error() || (checked && s == status::no_memory));
      IOPT_FUZZ_CHECK(!receiver.next_run(0));
      IOPT_FUZZ_CHECK(receiver.memory_bytes() == bytes_before);
      IOPT_FUZZ_CHECK(plan.live_bytes == live_before);
    } else {
      IOPT_FUZZ_CHECK(checked.has_value());
      std::uint64_t entries = 0;
      const auto runs = runs_of(receiver);
      for (const mapped_run& r : runs)
        entries += r.pages;
      IOPT_FUZZ_CHECK(entries == checked->entries);
      byte_sink again;
      IOPT_FUZZ_CHECK(snapshot(receiver, again) == status::ok);
      table_type copy = make(plan);
      IOPT_FUZZ_CHECK(restore(copy, again.bytes) == status::ok);
      IOPT_FUZZ_CHECK(runs_of(copy) == runs);
    }
  }
  IOPT_FUZZ_CHECK(plan.live_bytes == 0 && plan.live_blocks == 0);
  return 0;
}
