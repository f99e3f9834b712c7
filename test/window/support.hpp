// Shared by the container tests: the pinning strategies over the simulated
// backend, the containers made of them, and a configuration the named ones
// lack.
#pragma once

#include <iopt/configs.hpp>
#include <iopt/prereg/pinning.hpp>
#include <iopt/window/container.hpp>

#include <array>

namespace iopt_test {

using registry_type = iopt::prereg_registry<iopt::simulated_backend, iopt::counted_accounting>;
using v2_strategy = iopt::preregistered<registry_type>;
using v1_strategy = iopt::pin_on_map<iopt::simulated_backend, iopt::counted_accounting>;
template <bool V2>
using strategy_for = std::conditional_t<V2, v2_strategy, v1_strategy>;

// A container of Strategy over windows of Configs, charging counted accounts.
template <class Strategy, class... Configs>
using container_of = iopt::dma_container<Strategy, iopt::counted_accounting, Configs...>;

// 64 KiB pages in one flat level: what automatic levels pick for small windows.
struct config_64k_flat {
  using format = iopt::hardware_tce;
  using page_size = iopt::page_64k;
  static constexpr std::array<unsigned, 1> level_bits{17};
};

} // namespace iopt_test
