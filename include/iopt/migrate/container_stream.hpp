// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// A DMA container as a byte stream, for live migration: snapshot_container()
// writes every window of a container with what its mappings map from,
// restore_container() makes the same windows in an empty container on the
// destination and maps the same user memory into them again.
//
// A container's TCE tables hold host physical addresses, which mean nothing
// on another host; what the destination can use is what the user asked
// for: per window, its shape, and per mapping, the bus pages, the user
// memory behind them and the permission. The destination VMM sets its
// memory up first (v1: enable; v2: register the memory) and the restore
// maps through its own pinning strategy, as map_dma does. The stream uses
// the conventions of the table stream (migrate/table_stream.hpp): 64-bit
// little-endian words, its magic and end marker, its statuses, stream kind
// 2 in the version word:
//
//   header, 4 words
//     0  magic "iopt-tce" (the bytes 69 6f 70 74 2d 74 63 65)
//     1  version (low 32 bits, 1) and stream kind (high 32 bits, 2)
//     2  how many windows follow: 0, 1 or 2
//     3  flags: bit 0, the default window is still due (neither made nor
//        removed; then no window follows); the other bits 0
//   each window, in ascending bus order
//     a window header, 4 words
//       0  "iopt-win" (the bytes 69 6f 70 74 2d 77 69 6e)
//       1  its bus start: 0 or 2^59, the container's two slots
//       2  IOMMU page shift (bits 0-7), table levels (8-15), bit 16 set for
//          the default window (only at 0); the other bits 0
//       3  its size in bytes, a power of two, at least one page
//     then its mappings, in ascending page order, none overlapping another,
//     3 words each
//       0  first page (index from the window's start)
//       1  permission (bits 62-63: 1 read, 2 write, 3 both) and page count
//          (bits 0-61, at least 1)
//       2  the user address of the first page, aligned to the page; page k
//          maps from that address plus k pages
//   trailer, 3 words
//     "iopt-end" (69 6f 70 74 2d 65 6e 64), then the number of mappings,
//     then the number of pages they map, which the reader checks
//
// A window's mappings end where the next window header or the trailer
// starts: neither marker can be a page index (those are below 2^52). A
// mapping record covers a run of pages whose user addresses follow one
// another with one permission, so a contiguous GiB costs 24 bytes whatever
// its page size, and an empty 128 TiB window 32.
//
// restore_container() checks the whole stream before it changes anything
// (check_container_stream), then whether the receiver's configurations can
// make every window (stream_mismatch if not), then builds the windows and
// maps privately (dma_container::rebuild): a failure of any kind leaves the
// receiver exactly as it was.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>

#include <iopt/addr/address.hpp>
#include <iopt/addr/align.hpp>
#include <iopt/addr/range.hpp>
#include <iopt/format/permission.hpp>
#include <iopt/migrate/table_stream.hpp>
#include <iopt/status.hpp>
#include <iopt/table/table_config.hpp>
#include <iopt/window/container.hpp>

namespace iopt {

// The container stream's fixed words (the magic, end marker and version
// are the table stream's).
namespace container_stream {
// Header word 1: the version and the container stream's kind.
inline constexpr std::uint64_t version_word =
    table_stream::version | std::uint64_t{static_cast<std::uint32_t>(table_stream::kind::container)}
                                << 32;
// Words in the header.
inline constexpr std::size_t header_words = 4;
// Header word 3, bit 0: the default window is still due.
inline constexpr std::uint64_t default_due_flag = 1;
// "iopt-win" read as a little-endian word: a window header starts.
inline constexpr std::uint64_t window_magic = 0x6e69772d74706f69;
// Words in a window header, its marker included.
inline constexpr std::size_t window_header_words = 4;
// Window header word 2, bit 16: the default window.
inline constexpr std::uint64_t default_window_flag = std::uint64_t{1} << 16;
// Words in a mapping record.
inline constexpr std::size_t record_words = 3;
// Bits 62-63 of a record's second word: the permission.
inline constexpr unsigned permission_shift = 62;
// The largest page count a record can hold.
inline constexpr std::uint64_t max_record_pages = (std::uint64_t{1} << permission_shift) - 1;
// Words in the trailer, its marker included.
inline constexpr std::size_t trailer_words = 3;
} // namespace container_stream

// Writes the stream of `container` to `sink` (see the file comment): its
// windows in bus order, each with its mappings as runs of consecutive user
// addresses. Costs the windows' allocated levels and mapped entries. Returns
// the sink's first failure, else ok. The container must not change while
// the snapshot runs.
template <class Container, stream_sink Sink>
status snapshot_container(const Container& container, Sink&& sink) noexcept {
  namespace cs = container_stream;
  detail::stream_writer<std::remove_reference_t<Sink>> out(sink);
  std::uint64_t windows = 0;
  container.for_each_window([&](const window_description&) { ++windows; });
  out.word(table_stream::magic);
  out.word(cs::version_word);
  out.word(windows);
  out.word(container.default_window_due() ? cs::default_due_flag : 0);
  std::uint64_t records = 0, pages = 0;
  container.for_each_window([&](const window_description& w) {
    out.word(cs::window_magic);
    out.word(w.start.value());
    out.word(std::uint64_t{w.page_shift} | std::uint64_t{w.levels} << 8 |
             (w.is_default ? cs::default_window_flag : 0));
    out.word(w.bytes);
    (void)container.for_each_user_run(w.start, [&](const user_run& r) {
      out.word((r.first.value() - w.start.value()) >> w.page_shift);
      out.word(std::uint64_t{static_cast<std::uint8_t>(r.perm)} << cs::permission_shift | r.pages);
      out.word(r.from.value());
      ++records;
      pages += r.pages;
    });
  });
  out.word(table_stream::end_magic);
  out.word(records);
  out.word(pages);
  return out.flush();
}

// What a valid container stream holds, as check_container_stream found it.
struct container_stream_summary {
  // The windows, in bus order; the first window_count are valid.
  std::array<window_description, max_dma_windows> windows{};
  // How many windows the stream holds.
  std::size_t window_count = 0;
  // Whether the default window is still due.
  bool default_due = false;
  // Mapping records in the stream.
  std::uint64_t records = 0;
  // Pages they map.
  std::uint64_t pages = 0;
  // The windows as a plan for dma_container::rebuild; refers to this summary.
  [[nodiscard]] std::span<const window_description> plan() const noexcept {
    return {windows.data(), window_count};
  }
};

// Checks a whole container stream, changing nothing. ok with what it
// holds, or: stream_truncated (it ends inside the header, a window header,
// a record or the trailer), stream_mismatch (another version or stream
// kind, a flag or a window header bit this version does not know),
// stream_corrupt (a field no valid stream has: a bad magic or window
// marker, more or fewer windows than the header says, windows while the
// default one is due, a window at a bus start that is no slot's, out of
// order or twice in one slot, a default window outside slot 0, a page shift
// of 64 or more, a size that is not a power of two or smaller than a page,
// levels outside 1 to 5, a record before any window, out of order, empty,
// with no permission, outside its window, with a user address not aligned
// to the page or whose last page passes 2^64, wrong counts in the trailer,
// bytes after it). Whether a receiver can make the windows is
// restore_container's question.
inline result<container_stream_summary>
check_container_stream(std::span<const std::byte> bytes) noexcept {
  namespace cs = container_stream;
  detail::stream_reader in(bytes);
  if (in.left() < cs::header_words)
    return in.left() >= 1 && detail::stream_reader(bytes).word() != table_stream::magic
               ? status::stream_corrupt
               : status::stream_truncated;
  if (in.word() != table_stream::magic)
    return status::stream_corrupt;
  if (in.word() != cs::version_word)
    return status::stream_mismatch;
  const std::uint64_t windows = in.word();
  const std::uint64_t flags = in.word();
  if ((flags & ~cs::default_due_flag) != 0)
    return status::stream_mismatch;
  container_stream_summary found;
  found.default_due = (flags & cs::default_due_flag) != 0;
  if (windows > max_dma_windows || (found.default_due && windows != 0))
    return status::stream_corrupt;
  std::uint64_t window_pages = 0; // of the window being read
  unsigned shift = 0;
  std::uint64_t next_free = 0; // the first page a record may start at
  for (;;) {
    if (in.left() == 0)
      return status::stream_truncated;
    const std::uint64_t first = in.word();
    if (first == table_stream::end_magic)
      break;
    if (first == cs::window_magic) {
      if (found.window_count == windows)
        return status::stream_corrupt; // more windows than the header says
      if (in.left() < cs::window_header_words - 1)
        return status::stream_truncated;
      window_description& w = found.windows[found.window_count];
      w.start = ioba{in.word()};
      const std::uint64_t shape = in.word();
      w.bytes = in.word();
      if ((shape & ~(cs::default_window_flag | 0xffff)) != 0)
        return status::stream_mismatch;
      w.page_shift = static_cast<unsigned>(shape & 0xff);
      w.levels = static_cast<unsigned>((shape >> 8) & 0xff);
      w.is_default = (shape & cs::default_window_flag) != 0;
      const bool at_slot = w.start == ioba{0} || w.start == ioba{huge_window_bus_offset};
      const bool in_order = found.window_count == 0 || found.windows[0].start < w.start;
      if (!at_slot || !in_order || (w.is_default && w.start != ioba{0}) || w.page_shift >= 64 ||
          !std::has_single_bit(w.bytes) || w.bytes >> w.page_shift == 0 || w.levels == 0 ||
          w.levels > max_table_levels)
        return status::stream_corrupt;
      ++found.window_count;
      shift = w.page_shift;
      window_pages = w.bytes >> shift;
      next_free = 0;
      continue;
    }
    if (found.window_count == 0)
      return status::stream_corrupt; // a record of no window
    if (in.left() < cs::record_words - 1)
      return status::stream_truncated;
    const std::uint64_t word = in.word();
    const std::uint64_t from = in.word();
    const std::uint64_t count = word & cs::max_record_pages;
    if (word >> cs::permission_shift == 0 || count == 0 || first < next_free ||
        first >= window_pages || count > window_pages - first || !is_aligned(from, shift) ||
        !ua_range::make(ua{from}, count << shift))
      return status::stream_corrupt;
    next_free = first + count;
    ++found.records;
    found.pages += count;
  }
  if (found.window_count != windows)
    return status::stream_corrupt; // fewer windows than the header says
  if (in.left() < cs::trailer_words - 1)
    return status::stream_truncated;
  if (in.word() != found.records || in.word() != found.pages || in.left() != 0 || in.ragged())
    return status::stream_corrupt;
  return found;
}

namespace detail {

// Calls map(const user_run&) for each record of a stream
// check_container_stream() accepted, in order, until one does not return
// ok; that status, or ok.
template <class Map>
status for_each_stream_run(std::span<const std::byte> bytes, Map&& map) noexcept {
  namespace cs = container_stream;
  stream_reader in(bytes);
  in.skip(cs::header_words);
  std::uint64_t start = 0;
  unsigned shift = 0;
  for (std::uint64_t first = in.word(); first != table_stream::end_magic; first = in.word()) {
    if (first == cs::window_magic) {
      start = in.word();
      shift = static_cast<unsigned>(in.word() & 0xff);
      in.skip(1);
      continue;
    }
    const std::uint64_t word = in.word();
    const user_run run{ioba{start + (first << shift)}, ua{in.word()}, word & cs::max_record_pages,
                       static_cast<permission>(word >> cs::permission_shift)};
    if (const status s = map(run); s != status::ok)
      return s;
  }
  return status::ok;
}

} // namespace detail

// Makes the windows of the stream in `receiver`, whose windows must map
// nothing (else busy), and maps the stream's runs into them through the
// receiver's strategy; all or nothing. The stream is checked whole first
// (check_container_stream's statuses); then stream_mismatch when the
// receiver's configurations cannot make one of its windows (page size,
// size, levels) or its default window differs from the stream's; then
// dma_container::rebuild's statuses: busy, not_permitted (v1 not enabled),
// the strategy's for memory it cannot map (v2: not_found for memory not
// registered), no_memory. On any failure the receiver is as it was.
template <class Container>
status restore_container(Container& receiver, std::span<const std::byte> bytes) noexcept {
  const auto found = check_container_stream(bytes);
  if (!found)
    return found.error();
  if (receiver.check_plan(found->plan(), found->default_due) != status::ok)
    return status::stream_mismatch;
  return receiver.rebuild(found->plan(), found->default_due, [bytes](auto&& map) noexcept {
    return detail::for_each_stream_run(bytes, map);
  });
}

} // namespace iopt
