// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// A doubly linked list threaded through its members, for objects that must
// leave their list when they are destroyed (listeners, notifiers): a member
// derives from intrusive_node<Member>, and either side going away unlinks the
// other, so nothing dangles. Not thread-safe: the owner serializes.
#pragma once

namespace iopt::detail {

template <class Node>
class intrusive_list;

template <class Node>
class intrusive_node {
public:
  intrusive_node(const intrusive_node&) = delete;
  intrusive_node& operator=(const intrusive_node&) = delete;

  [[nodiscard]] bool linked() const noexcept { return list_ != nullptr; }
  void unlink() noexcept {
    if (list_ != nullptr)
      list_->erase(static_cast<Node&>(*this));
  }

protected:
  intrusive_node() noexcept = default;
  ~intrusive_node() { unlink(); }

private:
  friend class intrusive_list<Node>;
  intrusive_list<Node>* list_ = nullptr;
  Node* prev_ = nullptr;
  Node* next_ = nullptr;
};

template <class Node>
class intrusive_list {
public:
  intrusive_list() noexcept = default;
  intrusive_list(const intrusive_list&) = delete;
  intrusive_list& operator=(const intrusive_list&) = delete;
  ~intrusive_list() {
    while (head_ != nullptr)
      erase(*head_);
  }

  void push_front(Node& n) noexcept {
    n.unlink();
    hook(n).list_ = this;
    hook(n).next_ = head_;
    if (head_ != nullptr)
      hook(*head_).prev_ = &n;
    head_ = &n;
  }
  void erase(Node& n) noexcept {
    auto& h = hook(n);
    if (h.prev_ != nullptr)
      hook(*h.prev_).next_ = h.next_;
    else
      head_ = h.next_;
    if (h.next_ != nullptr)
      hook(*h.next_).prev_ = h.prev_;
    h.prev_ = h.next_ = nullptr;
    h.list_ = nullptr;
  }
  template <class F>
  void for_each(F&& f) const {
    for (Node* n = head_; n != nullptr; n = hook(*n).next_)
      f(*n);
  }
  [[nodiscard]] bool empty() const noexcept { return head_ == nullptr; }

private:
  static intrusive_node<Node>& hook(Node& n) noexcept { return n; }
  Node* head_ = nullptr;
};

} // namespace iopt::detail
