// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// hook<Args...>: how iopt tells its owner that something changed. A hook is
// a plain function and a context pointer, set at run time and called with
// the change; an empty hook is not called. It is the one mechanism for every
// report iopt makes:
//
//   dma_change_hook   (table/mappings.hpp)  a run of a DMA window was mapped
//                                           or unmapped (the container)
//   tce_change_hook   (hcall/change_hook.hpp) a guest's hypercall changed
//                                           entries of one of its windows
//   dirty_hook        (prereg/pinning.hpp)  pages a device could write were
//                                           unmapped
//
// A function pointer, not a template parameter: hooks are attached after
// construction (a notifier arrives when a listener does), cost one test when
// empty, and keep the types that call them free of further parameters.
#pragma once

namespace iopt {

// A report channel that calls report(context, args...) when set and nothing
// when empty; copied by value, it owns neither the function nor the context.
template <class... Args>
class hook {
public:
  // What a hook calls: the context it was set with, then the report itself.
  // It must not throw.
  using function = void (*)(void* context, Args... args) noexcept;

  // An empty hook: calling it does nothing.
  constexpr hook() noexcept = default;
  // A hook that calls report(context, args...); `context` must outlive every
  // call (a null `report` gives an empty hook).
  constexpr hook(function report, void* context) noexcept : report_(report), context_(context) {}

  // A hook that calls (object.*Member)(args...); `object` must outlive the
  // hook and Member must not throw.
  template <auto Member, class Object>
  [[nodiscard]] static constexpr hook to(Object& object) noexcept {
    return hook(
        [](void* self, Args... args) noexcept { (static_cast<Object*>(self)->*Member)(args...); },
        &object);
  }

  // Reports `args`; does nothing when the hook is empty.
  void operator()(Args... args) const noexcept {
    if (report_ != nullptr)
      report_(context_, args...);
  }
  // Whether the hook is set, so a caller can skip work that only builds a report.
  [[nodiscard]] explicit operator bool() const noexcept { return report_ != nullptr; }

private:
  function report_ = nullptr;
  void* context_ = nullptr;
};

} // namespace iopt
