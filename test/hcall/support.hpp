// Shared by the hypercall tests: a guest with RAM at guest physical 0 and a
// log of what the front end reports.
#pragma once

#include "table/support.hpp"

#include <iopt/hcall/tce_hcalls.hpp>

#include <vector>

namespace iopt_test {

struct change {
  std::uint64_t liobn;
  iopt::ioba first;
  std::uint64_t pages;
  friend bool operator==(const change&, const change&) = default;
};

// Records what the front end reports through its change hook.
struct change_log {
  std::vector<change> changes;
  void tces_changed(std::uint64_t liobn, iopt::ioba first, std::uint64_t pages) noexcept {
    changes.push_back({liobn, first, pages});
  }
  iopt::tce_change_hook hook() noexcept {
    return iopt::tce_change_hook::to<&change_log::tces_changed>(*this);
  }
};

// 64 MiB of guest RAM at 0 for 4K/64K windows; 16M pages need more of it.
template <class Config>
constexpr std::uint64_t guest_ram_bytes = std::uint64_t{1} << 26;
template <>
inline constexpr std::uint64_t guest_ram_bytes<iopt::config_16m> = std::uint64_t{1} << 27;
template <>
inline constexpr std::uint64_t guest_ram_bytes<iopt::config_16m_flat> = std::uint64_t{1} << 27;

// Where tests put indirect lists: the last 256 KiB of guest RAM.
template <class Config>
constexpr std::uint64_t list_area = guest_ram_bytes<Config> - (std::uint64_t{1} << 18);

constexpr std::uint64_t test_liobn = 0x8000'0001;

} // namespace iopt_test
