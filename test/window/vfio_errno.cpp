// The errno table: each sPAPR VFIO ioctl, driven through a container with
// the inputs the Linux driver answers in its own way, must give the driver's
// errno (drivers/vfio/vfio_iommu_spapr_tce.c), except where iopt is stricter
// on purpose (test/BAD_INPUTS.md), and every refusal must change nothing.
#include "window/support.hpp"

#include <iopt/configs.hpp>
#include <iopt/window/container.hpp>
#include <iopt/window/vfio_errno.hpp>

#include <doctest/doctest.h>

using namespace iopt;
using namespace iopt_test;

namespace {
constexpr std::uint64_t k64 = 1 << 16;
constexpr std::uint64_t gib = std::uint64_t{1} << 30;

template <class Strategy>
using container_type =
    container_of<Strategy, config_4k, config_huge_window, config_16m, config_16m_flat>;

struct fixture {
  simulated_backend backend{16};
  counted_accounting pins{std::uint64_t{1} << 40};
  counted_accounting tables{std::uint64_t{1} << 40};
  registry_type registry{backend, pins};
  v2_strategy v2{registry};
  v1_strategy v1{backend, pins};
  container_type<v2_strategy> c2{v2, tables};
  container_type<v1_strategy> c1{v1, tables};

  struct counters {
    std::uint64_t pinned, pin_charge, table_charge, regions;
    unsigned windows2, windows1;
    friend bool operator==(const counters&, const counters&) = default;
  };
  counters now() const {
    return {backend.pinned_pages(),  pins.charged(),    tables.charged(),
            registry.region_count(), c2.window_count(), c1.window_count()};
  }
};

template <class T>
status status_of(const result<T>& r) {
  return r ? status::ok : r.error();
}
} // namespace

TEST_CASE("errno: the other memory model's ioctls are ENOTTY") {
  fixture f;
  const auto before = f.now();
  CHECK(vfio_errno(vfio_ioctl::enable, f.c2.enable()) == ENOTTY);
  CHECK(vfio_errno(vfio_ioctl::disable, f.c2.disable()) == ENOTTY);
  CHECK(vfio_errno(vfio_ioctl::register_memory, f.c1.register_memory(ua{0x1000'0000}, k64)) ==
        ENOTTY);
  CHECK(vfio_errno(vfio_ioctl::unregister_memory, f.c1.unregister_memory(ua{0x1000'0000}, k64)) ==
        ENOTTY);
  CHECK(f.now() == before);
}

TEST_CASE("errno: v1 enable state, as the driver keeps it") {
  fixture f;
  const auto before = f.now();
  CHECK(vfio_errno(vfio_ioctl::map_dma,
                   f.c1.map_dma(ioba{0}, ua{0x1000'0000}, 4096, permission::read)) == EPERM);
  CHECK(vfio_errno(vfio_ioctl::unmap_dma, status_of(f.c1.unmap_dma(ioba{0}, 4096))) == EPERM);
  CHECK(f.now() == before); // not even the default window was made
  CHECK(vfio_errno(vfio_ioctl::disable, f.c1.disable()) == 0); // disable when not enabled: fine
  CHECK(vfio_errno(vfio_ioctl::enable, f.c1.enable()) == 0);
  CHECK(vfio_errno(vfio_ioctl::enable, f.c1.enable()) == EBUSY);
  REQUIRE(f.c1.map_dma(ioba{0}, ua{0x1000'0000}, 4096, permission::read) == status::ok);
  CHECK(vfio_errno(vfio_ioctl::disable, f.c1.disable()) == 0); // mappings stay
  CHECK(f.c1.translate(ioba{0}));
  CHECK(vfio_errno(vfio_ioctl::unmap_dma, status_of(f.c1.unmap_dma(ioba{0}, 4096))) == EPERM);
  REQUIRE(f.c1.enable() == status::ok);
  CHECK(*f.c1.unmap_dma(ioba{0}, 4096) == 4096);
}

TEST_CASE("errno: MAP_DMA and UNMAP_DMA") {
  fixture f;
  const ua mem{0x1000'0000};
  REQUIRE(f.c2.register_memory(mem, 16 * k64) == status::ok);
  REQUIRE(f.c2.map_dma(ioba{0}, mem, k64, permission::read) == status::ok);
  const auto before = f.now();
  auto map = [&](std::uint64_t iova, std::uint64_t from, std::uint64_t size,
                 permission perm = permission::read) {
    return vfio_errno(vfio_ioctl::map_dma, f.c2.map_dma(ioba{iova}, ua{from}, size, perm));
  };
  CHECK(map(2 * gib, mem.value(), 4096) == ENXIO);        // IOVA in no window
  CHECK(map(k64, mem.value() + 0x800, 4096) == EINVAL);   // vaddr not aligned to the IOMMU page
  CHECK(map(k64, mem.value(), 0x800) == EINVAL);          // size not aligned
  CHECK(map(k64 + 0x800, mem.value(), 4096) == EINVAL);   // IOVA not aligned (the driver: +1)
  CHECK(map(gib - 4096, mem.value(), 2 * 4096) == ENXIO); // runs past the window (iopt)
  CHECK(map(k64, mem.value(), 4096, permission::none) == EINVAL); // neither read nor write
  CHECK(map(k64, mem.value(), 0) == EINVAL);                      // size 0 (iopt)
  CHECK(map(0, mem.value(), 4096) == EBUSY);                      // over a mapping (iopt)
  CHECK(map(k64, 0x2000'0000, 4096) == EINVAL);                   // memory not registered
  CHECK(map(k64, mem.value() + 15 * k64, 2 * k64) == EINVAL);     // runs off the region
  CHECK(f.now() == before);
  auto unmap = [&](std::uint64_t iova, std::uint64_t size) {
    return vfio_errno(vfio_ioctl::unmap_dma, status_of(f.c2.unmap_dma(ioba{iova}, size)));
  };
  CHECK(unmap(2 * gib, 4096) == ENXIO);
  CHECK(unmap(0, 0x800) == EINVAL);
  CHECK(unmap(0x800, 4096) == EINVAL);
  CHECK(unmap(gib - 4096, 2 * 4096) == ENXIO);
  CHECK(unmap(0, 0) == EINVAL); // the driver: 0 and nothing done
  CHECK(f.now() == before);
  CHECK(unmap(2 * k64, 4096) == 0); // nothing mapped there: not an error
}

TEST_CASE("errno: v1 IOMMU pages larger than the host page need a huge page (EPERM)") {
  fixture f;
  REQUIRE(f.c1.enable() == status::ok);
  REQUIRE(f.c1.remove_window(ioba{0}) == status::ok); // the default, never made: cancelled
  REQUIRE(f.c1.create_window(24, 34));                // 16M pages over 64K host pages
  const auto before = f.now();
  CHECK(vfio_errno(vfio_ioctl::map_dma, f.c1.map_dma(ioba{0}, ua{0x4000'0000},
                                                     std::uint64_t{1} << 24, permission::read)) ==
        EPERM);
  CHECK(f.now() == before);
  f.backend.back_with_huge_pages(ua{0x4000'0000}, std::uint64_t{1} << 26, 24);
  CHECK(f.c1.map_dma(ioba{0}, ua{0x4000'0000}, std::uint64_t{1} << 24, permission::read) ==
        status::ok);
  CHECK(f.pins.charged() == std::uint64_t{1} << 24); // all 256 host pages under it
}

TEST_CASE("errno: REGISTER_MEMORY and UNREGISTER_MEMORY") {
  fixture f;
  const ua mem{0x1000'0000};
  REQUIRE(f.c2.register_memory(mem, 16 * k64) == status::ok);
  const auto before = f.now();
  auto reg = [&](std::uint64_t first, std::uint64_t size) {
    return vfio_errno(vfio_ioctl::register_memory, f.c2.register_memory(ua{first}, size));
  };
  CHECK(reg(mem.value(), 16 * k64) == EBUSY);       // the same range again
  CHECK(reg(mem.value() + k64, k64) == EINVAL);     // inside it
  CHECK(reg(mem.value() - k64, 2 * k64) == EINVAL); // over its head
  CHECK(reg(mem.value() + 0x1000, k64) == EINVAL);  // not host-page aligned
  CHECK(reg(0x2000'0000, k64 + 0x1000) == EINVAL);  // size not aligned
  CHECK(reg(0 - 2 * k64, 4 * k64) == EINVAL);       // wraps
  CHECK(reg(0x2000'0000, 0) == EINVAL);             // nothing
  auto unreg = [&](std::uint64_t first, std::uint64_t size) {
    return vfio_errno(vfio_ioctl::unregister_memory, f.c2.unregister_memory(ua{first}, size));
  };
  CHECK(unreg(mem.value(), 8 * k64) == ENOENT);      // part of it
  CHECK(unreg(0x2000'0000, k64) == ENOENT);          // nothing there
  CHECK(unreg(mem.value() + 0x1000, k64) == EINVAL); // not aligned
  CHECK(f.now() == before);
  REQUIRE(f.c2.map_dma(ioba{0}, mem, 4096, permission::read) == status::ok);
  CHECK(unreg(mem.value(), 16 * k64) == EBUSY); // mapped (the driver: 0, leaving it pinned)
  REQUIRE(*f.c2.unmap_dma(ioba{0}, 4096) == 4096);
  CHECK(unreg(mem.value(), 16 * k64) == 0);
}

TEST_CASE("errno: SPAPR_TCE_CREATE and SPAPR_TCE_REMOVE") {
  fixture f;
  auto create = [&](unsigned page_shift, unsigned window_shift, unsigned levels = 0) {
    return vfio_errno(vfio_ioctl::create_window,
                      status_of(f.c2.create_window(page_shift, window_shift, levels)));
  };
  CHECK(create(21, 40) == EINVAL);    // 2M: not a page size of this container
  CHECK(create(16, 15) == EINVAL);    // smaller than one page
  CHECK(create(16, 47, 6) == EINVAL); // 6 levels
  CHECK(create(16, 47, 2) == EINVAL); // no 2-level table of 64K pages here
  CHECK(create(24, 62) == EINVAL);    // larger than any table indexes
  const auto before = f.now();        // (the default window was made by the first create)
  CHECK(create(16, 47) == 0);
  CHECK(create(24, 40) == ENOSPC); // both windows exist
  CHECK(f.now().windows2 == before.windows2 + 1);
  auto remove = [&](std::uint64_t start) {
    return vfio_errno(vfio_ioctl::remove_window, f.c2.remove_window(ioba{start}));
  };
  CHECK(remove(0x1000) == EINVAL);                       // no window starts there
  CHECK(remove(huge_window_bus_offset + k64) == EINVAL); // inside a window, not its start (iopt)
  CHECK(remove(huge_window_bus_offset) == 0);
  CHECK(remove(huge_window_bus_offset) == EINVAL); // gone
}

TEST_CASE("DPDK's sequence: remove the default window, ask for one level, retry with more") {
  fixture f;
  // The host kernel does not bring the default window back: a kernel-like container.
  container_type<v2_strategy> c{f.v2, f.tables, container_options{.restore_default_window = false}};
  // GET_INFO, then TCE_REMOVE of the default window: it was never made, so
  // removing it only cancels it (the kernel's def_window_pending).
  const container_info info = c.info();
  CHECK((info.page_size_mask & (std::uint64_t{1} << 24)) != 0);
  REQUIRE(c.remove_window(info.default_window_start) == status::ok);
  CHECK(f.tables.charged() == 0);
  // 256 GiB of 16M hugepages (PA mode): one level is enough.
  const auto made = c.create_window(24, 38, 1);
  REQUIRE(made);
  CHECK(*made == ioba{0}); // DPDK requires the window at 0
  const ua mem{0x100'0000'0000};
  f.backend.back_with_huge_pages(mem, std::uint64_t{1} << 30, 24);
  REQUIRE(c.register_memory(mem, std::uint64_t{1} << 30) == status::ok);
  REQUIRE(c.map_dma(ioba{0x4000'0000}, mem, std::uint64_t{1} << 30, permission::read_write) ==
          status::ok);
  CHECK(c.translate(ioba{0x4000'0000 + 0x123})->target ==
        f.backend.translate(mem + 0x123)->value());
  REQUIRE(*c.unmap_dma(ioba{0x4000'0000}, std::uint64_t{1} << 30) == std::uint64_t{1} << 30);
  REQUIRE(c.unregister_memory(mem, std::uint64_t{1} << 30) == status::ok);
  REQUIRE(c.remove_window(ioba{0}) == status::ok);
  CHECK(c.window_count() == 0); // nothing comes back
  // 128 TiB of 16M pages: one level cannot index it, nor two here; DPDK
  // retries with more levels until one fits.
  CHECK(vfio_errno(vfio_ioctl::create_window, status_of(c.create_window(24, 47, 1))) == EINVAL);
  CHECK(vfio_errno(vfio_ioctl::create_window, status_of(c.create_window(24, 47, 2))) == EINVAL);
  const auto deep = c.create_window(24, 47, 3);
  REQUIRE(deep);
  CHECK(*deep == ioba{0});
}
