// Fuzz target: a memory map with a listener at 64 KiB. After every change,
// the sink holds exactly the full granules of the flat view's RAM sections,
// each at its host address; no add covers a held granule and no remove takes
// one that is not held.
#include "fuzz_support.hpp"

#include <iopt/listener/listener.hpp>

#include <map>
#include <set>

namespace {
using namespace iopt;
constexpr std::uint64_t granule = 1 << 16;

// Holds granules, each with the host address it was given for: an add must
// not cover a granule held already, a remove must take only held granules
// with the host addresses they were added with.
struct checking_sink {
  std::map<std::uint64_t, std::uint64_t> held; // granule -> host address
  bool wants(region_kind k) const { return k == region_kind::ram; }
  status add_range(gpa f, ua h, std::uint64_t n) {
    IOPT_FUZZ_CHECK(n != 0 && (f.value() & (granule - 1)) == 0 && (n & (granule - 1)) == 0);
    IOPT_FUZZ_CHECK(((f.value() ^ h.value()) & (granule - 1)) == 0);
    for (std::uint64_t off = 0; off < n; off += granule)
      IOPT_FUZZ_CHECK(held.emplace(f.value() + off, h.value() + off).second);
    return status::ok;
  }
  status remove_range(gpa f, ua h, std::uint64_t n) {
    for (std::uint64_t off = 0; off < n; off += granule) {
      const auto it = held.find(f.value() + off);
      IOPT_FUZZ_CHECK(it != held.end() && it->second == h.value() + off);
      held.erase(it);
    }
    return status::ok;
  }
  void unaligned(const unaligned_event& e) { IOPT_FUZZ_CHECK(e.size != 0); }
  void failed(const sink_failure&) { IOPT_FUZZ_CHECK(false); }
};
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  iopt_fuzz::byte_reader in(data, size);
  memory_map map;
  checking_sink sink;
  {
    memory_listener<page_64k, checking_sink> listener(page_64k{}, sink);
    map.attach(listener);
    std::set<std::uint64_t> ids;
    for (int step = 0; !in.done() && step < 300; ++step) {
      const std::uint8_t op = in.byte();
      if (op % 3 != 0 || ids.empty()) {
        const std::uint64_t id = 1 + in.byte() % 32;
        const std::uint64_t first = std::uint64_t{in.read<std::uint16_t>()} << 12;
        const std::uint64_t bytes = (1 + std::uint64_t{in.byte()}) << 12;
        const region_kind kind = op % 5 == 0 ? region_kind::mmio : region_kind::ram;
        const std::uint64_t host = 0x7000'0000'0000 + first + ((op & 0x40) ? 0x1000 : 0);
        const status s = map.add_region(
            {id, gpa{first}, bytes, static_cast<int>(op % 3), kind, ua{host}, op % 2u});
        IOPT_FUZZ_CHECK((s == status::ok) == (ids.count(id) == 0));
        ids.insert(id);
      } else {
        const std::uint64_t id = *std::next(ids.begin(), static_cast<long>(in.byte() % ids.size()));
        IOPT_FUZZ_CHECK(map.remove_region(id) == status::ok);
        ids.erase(id);
      }
      // The sink holds exactly the full granules of RAM sections whose guest
      // and host offsets agree.
      std::map<std::uint64_t, std::uint64_t> want;
      for (const flat_section& s : map.view()) {
        if (s.kind != region_kind::ram || ((s.first.value() ^ s.host.value()) & (granule - 1)) != 0)
          continue;
        for (std::uint64_t g = (s.first.value() + granule - 1) & ~(granule - 1);
             g + granule - 1 <= s.last(); g += granule)
          want.emplace(g, s.host.value() + (g - s.first.value()));
      }
      IOPT_FUZZ_CHECK(want == sink.held);
    }
  }
  // The listener is gone; whatever it held stays with the sink, matched
  // add-for-remove by every change it saw.
  return 0;
}
