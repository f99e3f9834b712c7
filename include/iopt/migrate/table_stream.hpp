// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// A TCE table as a byte stream, for live migration: snapshot() writes the
// set entries of a table, restore() rebuilds them in an empty table of the
// same configuration and window, and export_dense()/import_dense() convert
// from and to a plain array of entries, the form QEMU's migration state and
// a KVM table hold.
//
// The stream costs what is mapped, not the window: QEMU sends a table as
// one array of all its entries (16 GiB for a 128 TiB window of 64 KiB
// pages, whatever is mapped); here a window with one run mapped is a header
// and one record. Every field is a 64-bit word in little-endian byte order,
// whatever the host:
//
//   header, 8 words
//     0  magic "iopt-tce" (the bytes 69 6f 70 74 2d 74 63 65)
//     1  version (low 32 bits, 1) and stream kind (high 32 bits, 0: a whole
//        table)
//     2  the configuration: page shift (bits 0-7), levels (8-15), the rest 0
//        (how the table lays entries out in memory does not travel: the
//        stream holds values)
//     3  the format's read bit (bits 0-31) and write bit (32-63)
//     4  the format's address mask
//     5  what the format makes of a write-only value (normalize(write bit))
//     6  the window's bus offset
//     7  the window's size in bytes
//   records, in ascending page order, none overlapping another
//     word 0  first page (index from the window's start)
//     word 1  kind (bits 62-63: 0 a run, 1 a list) and page count (bits 0-61,
//             at least 1)
//     a run:  one value, the first page's TCE; page k maps target + k pages
//             with the same permission
//     a list: one TCE value per page
//   trailer, 2 words
//     "iopt-end" (69 6f 70 74 2d 65 6e 64), then the number of entries the
//     records set, which restore checks
//
// Values are the format's TCE values (target | permission bits) as its
// normalize() leaves them, never 0. A run is written for 3 pages or more of
// consecutive targets, shorter runs go into the list being written: a
// scattered table costs 8 bytes an entry plus 16 per stretch of consecutive
// pages, a contiguous one 24 bytes a run.
//
// restore() checks the whole stream before it changes anything: the magic,
// the version, the configuration and window against the receiver's, every
// record inside the window, in order and whole, every value one the format
// accepts, the trailer's count, no byte past it. Then it builds the entries
// in a new table and only then gives it to the receiver, so a failure,
// no_memory included, leaves the receiver exactly as it was.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include <iopt/format/byte_order.hpp>
#include <iopt/status.hpp>
#include <iopt/table/bulk_entries.hpp>
#include <iopt/table/tce_table.hpp>

namespace iopt {

// The stream format's fixed words, shared by the writers and the readers.
namespace table_stream {
// "iopt-tce" read as a little-endian word.
inline constexpr std::uint64_t magic = 0x6563742d74706f69;
// The version this library writes and reads.
inline constexpr std::uint32_t version = 1;
// Words in the header.
inline constexpr std::size_t header_words = 8;
// Bits 62-63 of a record's second word: its kind.
inline constexpr unsigned kind_shift = 62;
// A record of consecutive targets: one value follows.
inline constexpr std::uint64_t run_record = 0;
// A record of one value per page.
inline constexpr std::uint64_t list_record = 1;
// "iopt-end" read as a little-endian word: where the records end. No
// record starts with it (a page index is below 2^52).
inline constexpr std::uint64_t end_magic = 0x646e652d74706f69;
// The largest page count a record can hold.
inline constexpr std::uint64_t max_record_pages = (std::uint64_t{1} << kind_shift) - 1;
// Runs shorter than this go into lists: a run record costs 3 words.
inline constexpr std::uint64_t shortest_run = 3;
} // namespace table_stream

// A stream sink: called with consecutive pieces of the stream; a status
// other than ok stops the writer, which returns it. It must not throw (the
// writer is noexcept): a sink that can run out of memory says no_memory.
template <class Sink>
concept stream_sink = requires(Sink& s, std::span<const std::byte> bytes) {
  { s(bytes) } -> std::same_as<status>;
};

// The header a table of `Table`'s configuration writes for `window`.
template <class Table>
std::array<std::uint64_t, table_stream::header_words> stream_header(ioba_range window) noexcept {
  using format = typename Table::format;
  return {table_stream::magic,
          table_stream::version,
          std::uint64_t{Table::page_shift} | std::uint64_t{Table::levels} << 8,
          format::read_bit | format::write_bit << 32,
          format::address_mask,
          format::normalize(format::write_bit),
          window.empty() ? 0 : window.first().value(),
          window.empty() ? 0 : window.size()};
}

namespace detail {

// Words written to a sink in little-endian order, a buffer at a time.
template <class Sink>
class stream_writer {
public:
  explicit stream_writer(Sink& sink) noexcept : sink_(&sink) {}
  void word(std::uint64_t w) noexcept {
    if (used_ == buffer_.size())
      flush();
    buffer_[used_++] = swapped_if<std::endian::native != std::endian::little>(w);
  }
  // Hands what is buffered to the sink; the sink's first failure, kept.
  status flush() noexcept {
    if (used_ != 0 && failed_ == status::ok)
      failed_ = (*sink_)(std::as_bytes(std::span<const std::uint64_t>(buffer_.data(), used_)));
    used_ = 0;
    return failed_;
  }

private:
  Sink* sink_;
  std::array<std::uint64_t, 512> buffer_{};
  std::size_t used_ = 0;
  status failed_ = status::ok;
};

// Words read from a byte span, whatever its alignment.
class stream_reader {
public:
  explicit stream_reader(std::span<const std::byte> bytes) noexcept : bytes_(bytes) {}
  // Words left.
  [[nodiscard]] std::uint64_t left() const noexcept { return (bytes_.size() - at_) / 8; }
  // Whether bytes are left that do not make a word.
  [[nodiscard]] bool ragged() const noexcept { return (bytes_.size() - at_) % 8 != 0; }
  // The next word; only when left() != 0.
  std::uint64_t word() noexcept {
    std::uint64_t w = 0;
    std::memcpy(&w, bytes_.data() + at_, sizeof w);
    at_ += sizeof w;
    return swapped_if<std::endian::native != std::endian::little>(w);
  }
  // Skips n words; only when left() >= n.
  void skip(std::uint64_t n) noexcept { at_ += static_cast<std::size_t>(n * 8); }
  // Where the reader is, in bytes.
  [[nodiscard]] std::size_t offset() const noexcept { return at_; }
  // Moves back to a place offset() gave.
  void seek(std::size_t at) noexcept { at_ = at; }

private:
  std::span<const std::byte> bytes_;
  std::size_t at_ = 0;
};

} // namespace detail

// Writes the stream of `table` to `sink` (see the file comment): the header,
// a record for each stretch of set entries, the trailer. Costs the table's
// allocated levels plus its set entries. Returns the sink's first failure,
// else ok. Each entry is read once, atomically: an entry changed while the
// snapshot runs is written old or new, so a consistent stream needs the
// table's writers stopped.
template <class Table, stream_sink Sink>
status snapshot(const Table& table, Sink&& sink) noexcept {
  using format = typename Table::format;
  constexpr std::uint64_t page = Table::page_bytes;
  detail::stream_writer<std::remove_reference_t<Sink>> out(sink);
  for (const std::uint64_t w : stream_header<Table>(table.window()))
    out.word(w);
  // The list being gathered: its first page and its values, written once it
  // ends (a gap, or a run long enough for a run record).
  std::uint64_t list_first = 0, entries = 0;
  std::array<std::uint64_t, 512> list{};
  std::size_t listed = 0;
  auto end_list = [&] {
    if (listed == 0)
      return;
    out.word(list_first);
    out.word(table_stream::list_record << table_stream::kind_shift | listed);
    for (std::size_t i = 0; i < listed; ++i)
      out.word(list[i]);
    listed = 0;
  };
  table.for_each_run([&](const mapped_run& r) {
    const std::uint64_t first_page = table.page_index(r.first);
    const std::uint64_t value = format::normalize(format::make(r.target, r.perm));
    entries += r.pages;
    if (r.pages >= table_stream::shortest_run) {
      end_list();
      out.word(first_page);
      out.word(table_stream::run_record << table_stream::kind_shift | r.pages);
      out.word(value);
      return;
    }
    if (listed != 0 && list_first + listed != first_page)
      end_list();
    for (std::uint64_t k = 0; k < r.pages; ++k) {
      if (listed == list.size())
        end_list();
      if (listed == 0)
        list_first = first_page + k;
      list[listed++] = value + k * page;
    }
  });
  end_list();
  out.word(table_stream::end_magic);
  out.word(entries);
  return out.flush();
}

// What a valid stream holds, as restore() found it: for tests and tools.
struct stream_summary {
  // Records in the stream.
  std::uint64_t records = 0;
  // Entries they set.
  std::uint64_t entries = 0;
};

// Checks a whole stream against a table of `Table`'s configuration for
// `window`, changing nothing. ok with what it holds, or: stream_truncated
// (it ends inside the header, a record or the trailer),
// stream_mismatch (another version, configuration or window),
// stream_corrupt (a field no valid stream has: a bad magic, a record out of
// order, empty, outside the window or of an unknown kind, a value the
// format refuses or that maps nothing, a run whose targets wrap or leave the
// address bits, a wrong count in the trailer, bytes after it).
template <class Table>
result<stream_summary> check_stream(std::span<const std::byte> bytes, ioba_range window) noexcept {
  using format = typename Table::format;
  constexpr unsigned shift = Table::page_shift;
  detail::stream_reader in(bytes);
  if (in.left() < table_stream::header_words)
    return in.left() >= 1 && detail::stream_reader(bytes).word() != table_stream::magic
               ? status::stream_corrupt
               : status::stream_truncated;
  const auto expected = stream_header<Table>(window);
  if (in.word() != expected[0])
    return status::stream_corrupt;
  for (std::size_t i = 1; i < table_stream::header_words; ++i)
    if (in.word() != expected[i])
      return status::stream_mismatch;
  const std::uint64_t pages = window.empty() ? 0 : window.size() >> shift;
  stream_summary found;
  std::uint64_t next_free = 0; // the first page a record may start at
  for (;;) {
    if (in.left() == 0)
      return status::stream_truncated;
    const std::uint64_t first = in.word();
    if (first == table_stream::end_magic)
      break;
    if (in.left() == 0)
      return status::stream_truncated;
    const std::uint64_t word = in.word();
    const std::uint64_t kind = word >> table_stream::kind_shift;
    const std::uint64_t count = word & table_stream::max_record_pages;
    if (kind > table_stream::list_record || count == 0 || first < next_free || first >= pages ||
        count > pages - first)
      return status::stream_corrupt;
    const std::uint64_t values = kind == table_stream::run_record ? 1 : count;
    if (in.left() < values)
      return status::stream_truncated;
    std::uint64_t v = 0;
    for (std::uint64_t i = 0; i < values; ++i) {
      v = in.word();
      if (format::check(v, shift) != status::ok || !format::is_present(v) ||
          format::normalize(v) != v)
        return status::stream_corrupt;
    }
    // A run's last target must not wrap and must fit the format too.
    if (kind == table_stream::run_record &&
        (count - 1 > ((UINT64_MAX - format::target(v, shift)) >> shift) ||
         format::check(v + ((count - 1) << shift), shift) != status::ok))
      return status::stream_corrupt;
    next_free = first + count;
    ++found.records;
    found.entries += count;
  }
  if (in.left() == 0)
    return status::stream_truncated;
  if (in.word() != found.entries || in.left() != 0 || in.ragged())
    return status::stream_corrupt;
  return found;
}

// Rebuilds the stream's entries in `receiver`, which must have no entry set
// (else busy) and the configuration and window the stream was written for
// (else stream_mismatch). The stream is checked whole first (see
// check_stream); the entries are then built in a new table made with a copy
// of the receiver's allocator, which replaces the receiver only when all of
// them are in: on any failure, no_memory included, the receiver is as it
// was.
template <class Table>
status restore(Table& receiver, std::span<const std::byte> bytes) noexcept {
  using format = typename Table::format;
  const ioba_range window = receiver.window();
  const auto summary = check_stream<Table>(bytes, window);
  if (!summary)
    return summary.error();
  if (receiver.next_run(0))
    return status::busy;
  auto fresh = Table::create(window.first(), window.size(), receiver.allocator());
  if (!fresh)
    return fresh.error();
  detail::stream_reader in(bytes);
  in.skip(table_stream::header_words);
  std::array<std::uint64_t, 512> values{};
  for (std::uint64_t r = 0; r < summary->records; ++r) {
    const std::uint64_t first = in.word();
    const std::uint64_t word = in.word();
    const std::uint64_t count = word & table_stream::max_record_pages;
    const ioba at{window.first().value() + (first << Table::page_shift)};
    status s = status::ok;
    if (word >> table_stream::kind_shift == table_stream::run_record) {
      const std::uint64_t v = in.word();
      s = fresh->map_range(at, format::target(v, Table::page_shift), count, format::permissions(v));
    } else {
      for (std::uint64_t done = 0; done < count && s == status::ok;) {
        const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(count - done, 512));
        for (std::size_t i = 0; i < n; ++i)
          values[i] = in.word();
        s = fresh->put_list(ioba{at.value() + (done << Table::page_shift)},
                            std::span<const std::uint64_t>(values.data(), n));
        done += n;
      }
    }
    if (s != status::ok)
      return s; // the new table goes, with what it allocated
  }
  receiver = std::move(*fresh);
  return status::ok;
}

// Writes every entry of `table`, set or not, as its TCE value (0 for none)
// into `out`, which must hold table.pages() values (else
// invalid_parameter): the dense form of QEMU's migration state and of a KVM
// table, in the byte order `Order` (std::endian::big for KVM's table pages,
// native for QEMU's array). Costs a memset of `out` plus the set entries.
template <std::endian Order = std::endian::native, class Table>
status export_dense(const Table& table, std::span<std::uint64_t> out) noexcept {
  using format = typename Table::format;
  if (out.size() != table.pages())
    return status::invalid_parameter;
  std::memset(out.data(), 0, out.size_bytes());
  const std::uint64_t start = table.window().empty() ? 0 : table.window().first().value();
  table.for_each_run([&](const mapped_run& r) {
    const std::uint64_t first = (r.first.value() - start) >> Table::page_shift;
    const std::uint64_t value = format::normalize(format::make(r.target, r.perm));
    for (std::uint64_t k = 0; k < r.pages; ++k) {
      const std::uint64_t v = value + (k << Table::page_shift);
      out[static_cast<std::size_t>(first + k)] =
          detail::swapped_if<Order != std::endian::native>(v);
    }
  });
  return status::ok;
}

// Takes over a dense array of entries (one value per page of the receiver's
// window, 0 for none, in `Order`) into `receiver`, which must have no entry
// set (else busy). Every value is checked before anything changes
// (invalid_parameter for the wrong number of values, the format's status
// for a value it refuses); the set stretches are then written into a new
// table that replaces the receiver when all are in, so a failure leaves the
// receiver as it was. Stretches of empty entries are skipped with the
// table's vector scan.
template <std::endian Order = std::endian::native, class Table>
status import_dense(Table& receiver, ordered_values<Order> entries) noexcept {
  using format = typename Table::format;
  const std::span<const std::uint64_t> stored = entries.stored;
  if (stored.size() != receiver.pages())
    return status::invalid_parameter;
  // The next set entry from `at` on: empty ones are 0 in either byte order.
  auto next_set = [&](std::uint64_t at) {
    return at + detail::match_run<false>(stored.data() + at,
                                         static_cast<std::size_t>(stored.size() - at), 0, 0);
  };
  for (std::uint64_t at = next_set(0); at < stored.size(); at = next_set(at + 1)) {
    const std::uint64_t v = entries[static_cast<std::size_t>(at)];
    if (const status s = format::check(v, Table::page_shift); s != status::ok)
      return s;
  }
  if (receiver.next_run(0))
    return status::busy;
  const ioba_range window = receiver.window();
  auto fresh = Table::create(window.first(), window.size(), receiver.allocator());
  if (!fresh)
    return fresh.error();
  for (std::uint64_t at = next_set(0); at < stored.size();) {
    // A stretch of set entries: up to the next empty one.
    std::uint64_t end = at + 1;
    while (end < stored.size() && stored[end] != 0)
      ++end;
    const status s =
        fresh->put_list(ioba{window.first().value() + (at << Table::page_shift)},
                        ordered_values<Order>{stored.subspan(at, end - at)}, allocation::allowed,
                        [](std::uint64_t, std::uint64_t) noexcept { return status::ok; });
    if (s != status::ok)
      return s;
    at = end < stored.size() ? next_set(end) : end;
  }
  receiver = std::move(*fresh);
  return status::ok;
}

} // namespace iopt
