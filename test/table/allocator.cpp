#include <iopt/table/allocator.hpp>
#include <iopt/testing/fault_injecting_allocator.hpp>

#include <doctest/doctest.h>

#include <cstdint>
#include <initializer_list>

using namespace iopt;

struct not_an_allocator {
  void* allocate(std::size_t) { return nullptr; }
};
static_assert(!block_allocator<not_an_allocator>);
static_assert(!block_allocator<int>);

TEST_CASE("the heap allocator returns naturally aligned blocks") {
  heap_allocator heap;
  for (std::size_t bytes :
       {std::size_t{8}, std::size_t{4096}, std::size_t{1} << 17, std::size_t{1} << 21}) {
    void* p = heap.allocate(bytes, bytes);
    REQUIRE(p != nullptr);
    CHECK(reinterpret_cast<std::uintptr_t>(p) % bytes == 0);
    heap.deallocate(p, bytes, bytes);
  }
}

TEST_CASE("the fault-injecting allocator fails the n-th allocation and counts what lives") {
  fault_plan plan;
  fault_injecting_allocator alloc(plan);
  plan.fail_nth(2);
  void* a = alloc.allocate(64, 64);
  CHECK(a != nullptr);
  CHECK(alloc.allocate(64, 64) == nullptr);
  void* c = alloc.allocate(128, 128);
  CHECK(c != nullptr);
  CHECK(plan.points == 3);
  CHECK(plan.failures == 1);
  CHECK(plan.live_blocks == 2);
  CHECK(plan.live_bytes == 192);
  alloc.deallocate(a, 64, 64);
  alloc.deallocate(c, 128, 128);
  CHECK(plan.live_blocks == 0);
  plan.fail_nth(1, true);
  CHECK(alloc.allocate(8, 8) == nullptr);
  CHECK(alloc.allocate(8, 8) == nullptr);
  CHECK(plan.failures == 2);
}
