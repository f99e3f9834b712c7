// Baseline: preregistered regions kept in a linked list and looked up by
// walking it, as the Linux kernel's mm_iommu lookup does (new regions are
// added at the head; a lookup walks until a region contains the range).
// Like the kernel's callers, and like iopt's lookup, it then reads the
// region's start, size and page shift and hands them over: the same work,
// so the comparison is of the search alone.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

namespace iopt_baseline {

class linked_list_registry {
public:
  struct node {
    std::uint64_t ua;
    std::uint64_t entries; // host pages
    unsigned page_shift;   // the largest IOMMU page the region backs
    node* next;
  };
  struct region {
    std::uint64_t ua, size;
    unsigned page_shift;
  };

  explicit linked_list_registry(unsigned page_shift) : page_shift_(page_shift) {}

  void add(std::uint64_t ua, std::uint64_t bytes) {
    owned_.push_back(std::make_unique<node>(node{ua, bytes >> page_shift_, page_shift_, head_}));
    head_ = owned_.back().get();
  }

  std::optional<region> lookup(std::uint64_t ua, std::uint64_t size) const {
    for (const node* n = head_; n != nullptr; n = n->next)
      if (n->ua <= ua && ua + size <= n->ua + (n->entries << page_shift_))
        return region{n->ua, n->entries << page_shift_, n->page_shift};
    return std::nullopt;
  }

private:
  unsigned page_shift_;
  node* head_ = nullptr;
  std::vector<std::unique_ptr<node>> owned_;
};

} // namespace iopt_baseline
