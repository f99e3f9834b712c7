// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// A TCE table as a byte stream, for live migration: snapshot() writes the
// set entries of a table, restore() rebuilds them in an empty table of the
// same configuration and window, snapshot_changes() and apply_changes()
// carry what changed since the last round (pre-copy), and
// export_dense()/import_dense() convert from and to a plain array of
// entries, the form QEMU's migration state and a KVM table hold.
//
// The stream costs what is mapped, not the window: QEMU sends a table as
// one array of all its entries (16 GiB for a 128 TiB window of 64 KiB
// pages, whatever is mapped); here a window with one run mapped is a header
// and one record. Every field is a 64-bit word in little-endian byte order,
// whatever the host:
//
//   header, 8 words
//     0  magic "iopt-tce" (the bytes 69 6f 70 74 2d 74 63 65)
//     1  version (low 32 bits, 1) and stream kind (high 32 bits: 0 a whole
//        table, 1 the changes of one round; 2 is a container's, see
//        migrate/container_stream.hpp)
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
//     word 1  kind (bits 62-63: 0 a run, 1 a list, 2 a clear) and page
//             count (bits 0-61, at least 1)
//     a run:  one value, the first page's TCE; page k maps target + k pages
//             with the same permission
//     a list: one TCE value per page
//     a clear: no value; the pages are empty (only in a stream of changes)
//   trailer, 2 words
//     "iopt-end" (69 6f 70 74 2d 65 6e 64), then the number of pages the
//     records cover, which the reader checks
//
// Values are the format's TCE values (target | permission bits) as its
// normalize() leaves them, never 0. A run is written for 3 pages or more of
// consecutive targets, shorter runs go into the list being written: a
// scattered table costs 8 bytes an entry plus 16 per stretch of consecutive
// pages, a contiguous one 24 bytes a run.
//
// A stream of changes holds, for every page that changed since the last
// round, what the page holds now: set pages as runs and lists, emptied ones
// as clears. Applied in order on top of the table restored from the full
// snapshot, the rounds give the source table exactly (the tracker may name
// pages that did not change; sending them again is harmless).
//
// restore() checks the whole stream before it changes anything: the magic,
// the version, the configuration and window against the receiver's, every
// record inside the window, in order and whole, every value one the format
// accepts, the trailer's count, no byte past it. Then it reserves every
// level the entries need at once, so that no_memory leaves the receiver
// exactly as it was, and only then writes them, which cannot fail; a new
// leaf block is written once, whole, before it is published.
// apply_changes() and import_dense() work the same way.
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
#include <iopt/table/allocator.hpp>
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
// A record of emptied pages (streams of changes only): no value follows.
inline constexpr std::uint64_t clear_record = 2;
// The stream kinds of header word 1's high half.
enum class kind : std::uint32_t {
  // Every set entry of one table.
  table = 0,
  // The pages of one table that changed in one round.
  changes = 1,
  // The windows of a container (migrate/container_stream.hpp).
  container = 2,
};
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
std::array<std::uint64_t, table_stream::header_words>
stream_header(ioba_range window, table_stream::kind kind = table_stream::kind::table) noexcept {
  using format = typename Table::format;
  return {table_stream::magic,
          table_stream::version | std::uint64_t{static_cast<std::uint32_t>(kind)} << 32,
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

private:
  std::span<const std::byte> bytes_;
  std::size_t at_ = 0;
};

// The values that follow a record's two words.
constexpr std::uint64_t record_values(std::uint64_t record, std::uint64_t count) noexcept {
  return record == table_stream::run_record ? 1 : record == table_stream::list_record ? count : 0;
}

// Calls on_record(first, record kind, count, reader) for each of the
// `records` records of a stream check_stream() accepted; on_record reads
// exactly the record's values from the reader.
template <class OnRecord>
void for_each_record(std::span<const std::byte> bytes, std::uint64_t records,
                     OnRecord&& on_record) noexcept {
  stream_reader in(bytes);
  in.skip(table_stream::header_words);
  for (std::uint64_t r = 0; r < records; ++r) {
    const std::uint64_t first = in.word();
    const std::uint64_t word = in.word();
    on_record(first, word >> table_stream::kind_shift, word & table_stream::max_record_pages, in);
  }
}

// The spans of an accepted stream's set records in `table`, as
// tce_table::reserve_each takes them.
template <class Table>
auto set_spans(const Table& table, std::span<const std::byte> bytes,
               std::uint64_t records) noexcept {
  return [&table, bytes, records](auto&& on_span) {
    const std::uint64_t start = table.window().first().value();
    for_each_record(
        bytes, records,
        [&](std::uint64_t first, std::uint64_t record, std::uint64_t count, stream_reader& in) {
          in.skip(record_values(record, count));
          if (record != table_stream::clear_record)
            on_span(*table.locate(ioba{start + (first << Table::page_shift)}, count));
        });
  };
}

// The records of a stream, written in ascending page order: runs of 3
// pages or more as run records, shorter ones gathered into lists, emptied
// stretches as clears; counts the pages the records cover for the trailer.
template <class Table, class Sink>
class record_writer {
  using format = typename Table::format;

public:
  explicit record_writer(stream_writer<Sink>& out) noexcept : out_(&out) {}

  // Pages [first, first + pages) map consecutive targets from `value`.
  void run(std::uint64_t first, std::uint64_t pages, std::uint64_t value) noexcept {
    end_clear();
    covered_ += pages;
    if (pages >= table_stream::shortest_run) {
      end_list();
      record(first, table_stream::run_record, pages);
      out_->word(value);
      return;
    }
    if (listed_ != 0 && list_first_ + listed_ != first)
      end_list();
    for (std::uint64_t k = 0; k < pages; ++k) {
      if (listed_ == list_.size())
        end_list();
      if (listed_ == 0)
        list_first_ = first + k;
      list_[listed_++] = value + (k << Table::page_shift);
    }
  }
  // A mapped run of `table`, as for_each_run gives it.
  void run(const Table& table, const mapped_run& r) noexcept {
    run(table.page_index(r.first), r.pages, format::normalize(format::make(r.target, r.perm)));
  }
  // Pages [first, first + pages) are empty.
  void clear(std::uint64_t first, std::uint64_t pages) noexcept {
    end_list();
    covered_ += pages;
    if (cleared_ != 0 && clear_first_ + cleared_ == first) {
      cleared_ += pages;
      return;
    }
    end_clear();
    clear_first_ = first;
    cleared_ = pages;
  }
  // Ends the records: the trailer.
  void finish() noexcept {
    end_list();
    end_clear();
    out_->word(table_stream::end_magic);
    out_->word(covered_);
  }

private:
  void record(std::uint64_t first, std::uint64_t kind, std::uint64_t pages) noexcept {
    out_->word(first);
    out_->word(kind << table_stream::kind_shift | pages);
  }
  void end_clear() noexcept {
    if (cleared_ != 0)
      record(clear_first_, table_stream::clear_record, cleared_);
    cleared_ = 0;
  }
  void end_list() noexcept {
    if (listed_ == 0)
      return;
    record(list_first_, table_stream::list_record, listed_);
    for (std::size_t i = 0; i < listed_; ++i)
      out_->word(list_[i]);
    listed_ = 0;
  }

  stream_writer<Sink>* out_;
  std::uint64_t list_first_ = 0; // the first page of the list being gathered
  std::array<std::uint64_t, 512> list_{};
  std::size_t listed_ = 0;
  std::uint64_t clear_first_ = 0, cleared_ = 0; // the clear being gathered
  std::uint64_t covered_ = 0;
};

} // namespace detail

// Writes the stream of `table` to `sink` (see the file comment): the header,
// a record for each stretch of set entries, the trailer. Costs the table's
// allocated levels plus its set entries. Returns the sink's first failure,
// else ok. Each entry is read once, atomically: an entry changed while the
// snapshot runs is written old or new, so a consistent copy needs the
// table's writers stopped, or tracking started before the snapshot and a
// last round of changes taken with them stopped.
template <class Table, stream_sink Sink>
status snapshot(const Table& table, Sink&& sink) noexcept {
  detail::stream_writer<std::remove_reference_t<Sink>> out(sink);
  for (const std::uint64_t w : stream_header<Table>(table.window()))
    out.word(w);
  detail::record_writer<Table, std::remove_reference_t<Sink>> records(out);
  table.for_each_run([&](const mapped_run& r) { records.run(table, r); });
  records.finish();
  return out.flush();
}

// Writes what changed in `table` since tracking started or the last call
// (Table::take_changes) as a stream of changes: for every changed stretch,
// its set entries as runs and lists and its empty pages as clears. Costs
// the changes, not the table. not_permitted when the table is not
// tracking; else the sink's first failure, or ok. The marks are taken even
// when the sink fails: start over with a full snapshot then.
template <class Table, stream_sink Sink>
status snapshot_changes(Table& table, Sink&& sink) noexcept {
  using format = typename Table::format;
  constexpr std::uint64_t short_stretch = 8;
  if (!table.tracking())
    return status::not_permitted;
  detail::stream_writer<std::remove_reference_t<Sink>> out(sink);
  for (const std::uint64_t w : stream_header<Table>(table.window(), table_stream::kind::changes))
    out.word(w);
  detail::record_writer<Table, std::remove_reference_t<Sink>> records(out);
  const std::uint64_t start = table.window().first().value();
  table.take_changes([&](std::uint64_t first, std::uint64_t last) {
    if (last - first < short_stretch) {
      // A few pages (the common scattered change): read each one; a walk
      // that gathers runs costs more than it saves here.
      for (std::uint64_t page = first; page <= last; ++page) {
        const std::uint64_t v = table.get(ioba{start + (page << Table::page_shift)}).value();
        if (format::is_present(v))
          records.run(page, 1, format::normalize(v));
        else
          records.clear(page, 1);
      }
      return;
    }
    std::uint64_t next = first; // the first page of the stretch not yet written
    const ioba at{start + (first << Table::page_shift)};
    [[maybe_unused]] const status s =
        table.for_each_run(at, last - first + 1, [&](const mapped_run& r) {
          const std::uint64_t page = table.page_index(r.first);
          if (page != next)
            records.clear(next, page - next);
          records.run(table, r);
          next = page + r.pages;
        });
    IOPT_ASSERT(s == status::ok); // the tracker marks pages of the window only
    if (next <= last)
      records.clear(next, last - next + 1);
  });
  records.finish();
  return out.flush();
}

// What a valid stream holds, as check_stream() found it: for tests and tools.
struct stream_summary {
  // Records in the stream.
  std::uint64_t records = 0;
  // Entries they set.
  std::uint64_t entries = 0;
  // Pages they empty (a stream of changes only).
  std::uint64_t cleared = 0;
};

// Checks a whole stream of `kind` (a whole table, or changes) against a
// table of `Table`'s configuration for `window`, changing nothing. ok with
// what it holds, or: stream_truncated (it ends inside the header, a record
// or the trailer), stream_mismatch (another version, kind, configuration or
// window), stream_corrupt (a field no valid stream has: a bad magic, a
// record out of order, empty, outside the window or of an unknown kind, a
// clear in a whole table, a value the format refuses or that maps nothing,
// a run whose targets wrap or leave the address bits, a wrong count in the
// trailer, bytes after it).
template <class Table>
result<stream_summary> check_stream(std::span<const std::byte> bytes, ioba_range window,
                                    table_stream::kind kind = table_stream::kind::table) noexcept {
  using format = typename Table::format;
  constexpr unsigned shift = Table::page_shift;
  detail::stream_reader in(bytes);
  if (in.left() < table_stream::header_words)
    return in.left() >= 1 && detail::stream_reader(bytes).word() != table_stream::magic
               ? status::stream_corrupt
               : status::stream_truncated;
  const auto expected = stream_header<Table>(window, kind);
  const std::uint64_t last_kind =
      kind == table_stream::kind::changes ? table_stream::clear_record : table_stream::list_record;
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
    const std::uint64_t record = word >> table_stream::kind_shift;
    const std::uint64_t count = word & table_stream::max_record_pages;
    if (record > last_kind || count == 0 || first < next_free || first >= pages ||
        count > pages - first)
      return status::stream_corrupt;
    next_free = first + count;
    ++found.records;
    if (record == table_stream::clear_record) {
      found.cleared += count;
      continue;
    }
    const std::uint64_t values = detail::record_values(record, count);
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
    if (record == table_stream::run_record &&
        (count - 1 > ((UINT64_MAX - format::target(v, shift)) >> shift) ||
         format::check(v + ((count - 1) << shift), shift) != status::ok))
      return status::stream_corrupt;
    found.entries += count;
  }
  if (in.left() == 0)
    return status::stream_truncated;
  if (in.word() != found.entries + found.cleared || in.left() != 0 || in.ragged())
    return status::stream_corrupt;
  return found;
}

namespace detail {

// Writes the records of a stream check_stream() accepted into `table`,
// whose levels below its set records (set_spans) `levels` reserved with
// reserve_each(..., written = true): each is installed as its entries are
// written. Cannot fail.
template <class Table>
void write_records(Table& table, std::span<const std::byte> bytes, std::uint64_t records,
                   typename Table::level_reservation& levels) noexcept {
  using format = typename Table::format;
  const std::uint64_t start = table.window().first().value();
  std::array<std::uint64_t, 512> values{};
  for_each_record(
      bytes, records,
      [&](std::uint64_t first, std::uint64_t record, std::uint64_t count, stream_reader& in) {
        const auto span = table.locate(ioba{start + (first << Table::page_shift)}, count);
        IOPT_ASSERT(span.has_value()); // checked: inside the window
        status s = status::ok;
        if (record == table_stream::clear_record) {
          table.clear(*span);
        } else if (record == table_stream::run_record) {
          const std::uint64_t v = in.word();
          s = table.map_range(levels, *span, format::target(v, Table::page_shift),
                              format::permissions(v));
        } else {
          for (std::uint64_t done = 0; done < count && s == status::ok;) {
            const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(count - done, 512));
            for (std::size_t i = 0; i < n; ++i)
              values[i] = in.word();
            s = table.put_list(
                levels, *table.locate(ioba{start + ((first + done) << Table::page_shift)}, n),
                native_values{std::span<const std::uint64_t>(values.data(), n)},
                [](std::uint64_t, std::uint64_t) noexcept { return status::ok; });
            done += n;
          }
        }
        IOPT_ASSERT(s == status::ok); // levels reserved, values checked
        (void)s;
      });
}

} // namespace detail

// Rebuilds the stream's entries in `receiver`, which must have no entry set
// (else busy) and the configuration and window the stream was written for
// (else stream_mismatch). The stream is checked whole first (see
// check_stream), then every level the entries need is reserved at once
// (no_memory leaves the receiver as it was), then the entries are written,
// which cannot fail.
template <class Table>
status restore(Table& receiver, std::span<const std::byte> bytes) noexcept {
  const auto summary = check_stream<Table>(bytes, receiver.window());
  if (!summary)
    return summary.error();
  if (!receiver.empty())
    return status::busy;
  auto levels = receiver.reserve_each(detail::set_spans(receiver, bytes, summary->records), true);
  if (!levels)
    return levels.error();
  detail::write_records(receiver, bytes, summary->records, levels);
  return status::ok;
}

// Applies a stream of changes (snapshot_changes) to `receiver`, which holds
// the source table as of the round before: afterwards it holds the source
// as of this round. The stream is checked whole first (see check_stream,
// kind changes); then the levels every set record needs are reserved at
// once, so no_memory leaves the receiver as it was; then the records are
// written, which cannot fail.
template <class Table>
status apply_changes(Table& receiver, std::span<const std::byte> bytes) noexcept {
  const auto summary = check_stream<Table>(bytes, receiver.window(), table_stream::kind::changes);
  if (!summary)
    return summary.error();
  auto levels = receiver.reserve_each(detail::set_spans(receiver, bytes, summary->records), true);
  if (!levels)
    return levels.error();
  // The reservation lives on while the records are written: a clear does
  // not give back a level a later record was counted on.
  detail::write_records(receiver, bytes, summary->records, levels);
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

namespace detail {

// Stretches of set entries found by one scan, kept so that a second pass
// need not scan again; when memory for more cannot be had, the list stops
// growing and says where the second pass must scan from.
class stretch_list {
public:
  // A stretch: its first page and how many.
  struct stretch {
    std::uint64_t first, count;
  };
  stretch_list() noexcept = default;
  stretch_list(const stretch_list&) = delete;
  stretch_list& operator=(const stretch_list&) = delete;
  ~stretch_list() {
    if (data_ != nullptr)
      heap_.deallocate(data_, capacity_ * sizeof(stretch), alignof(stretch));
  }
  // Keeps a stretch, unless the list is full for good.
  void add(std::uint64_t first, std::uint64_t count) noexcept {
    if (full_)
      return;
    if (size_ == capacity_ && !grow()) {
      full_ = true;
      resume_ = first;
      return;
    }
    data_[size_++] = {first, count};
  }
  // The kept stretches.
  [[nodiscard]] std::span<const stretch> kept() const noexcept { return {data_, size_}; }
  // Whether stretches were left out, from resume_at() on.
  [[nodiscard]] bool full() const noexcept { return full_; }
  // The first page of the first stretch left out.
  [[nodiscard]] std::uint64_t resume_at() const noexcept { return resume_; }

private:
  bool grow() noexcept {
    const std::size_t capacity = capacity_ == 0 ? 256 : capacity_ * 2;
    auto* bigger =
        static_cast<stretch*>(heap_.allocate(capacity * sizeof(stretch), alignof(stretch)));
    if (bigger == nullptr)
      return false;
    if (data_ != nullptr) {
      std::memcpy(bigger, data_, size_ * sizeof(stretch));
      heap_.deallocate(data_, capacity_ * sizeof(stretch), alignof(stretch));
    }
    data_ = bigger;
    capacity_ = capacity;
    return true;
  }
  heap_allocator heap_;
  stretch* data_ = nullptr;
  std::size_t size_ = 0, capacity_ = 0;
  bool full_ = false;
  std::uint64_t resume_ = 0;
};

} // namespace detail

// Takes over a dense array of entries (one value per page of the receiver's
// window, 0 for none, in `Order`) into `receiver`, which must have no entry
// set (else busy). One scan finds the set stretches (skipping empty entries
// with the table's vector scan), checks every value (invalid_parameter for
// the wrong number of values, the format's status for a value it refuses)
// and reserves every level they need; only then are they written, which
// cannot fail. A failure leaves the receiver as it was.
template <std::endian Order = std::endian::native, class Table>
status import_dense(Table& receiver, ordered_values<Order> entries) noexcept {
  using format = typename Table::format;
  const std::span<const std::uint64_t> stored = entries.stored;
  const std::uint64_t size = stored.size();
  if (size != receiver.pages())
    return status::invalid_parameter;
  if (!receiver.empty())
    return status::busy;
  const std::uint64_t start = receiver.window().first().value();
  // Calls on_stretch(first, count) for each stretch of set entries from
  // `from` on; stops early when on_stretch returns false.
  auto scan = [&](std::uint64_t from, auto&& on_stretch) {
    for (std::uint64_t at = from; at < size;) {
      at += detail::match_run<false>(stored.data() + at, static_cast<std::size_t>(size - at), 0,
                                     0); // empty entries are 0 in either byte order
      if (at == size)
        return;
      std::uint64_t end = at + 1;
      while (end < size && stored[end] != 0)
        ++end;
      if (!on_stretch(at, end - at))
        return;
      at = end;
    }
  };
  auto span_of = [&](std::uint64_t first, std::uint64_t count) {
    return *receiver.locate(ioba{start + (first << Table::page_shift)}, count);
  };
  // The one scan: check, keep the stretches, count the levels they lack.
  status bad = status::ok;
  detail::stretch_list stretches;
  auto levels = receiver.reserve_each(
      [&](auto&& on_span) {
        scan(0, [&](std::uint64_t first, std::uint64_t count) {
          for (std::uint64_t k = 0; k < count && bad == status::ok; ++k)
            bad = format::check(entries[static_cast<std::size_t>(first + k)], Table::page_shift);
          if (bad != status::ok)
            return false;
          stretches.add(first, count);
          on_span(span_of(first, count));
          return true;
        });
      },
      true);
  if (bad != status::ok)
    return bad;
  if (!levels)
    return levels.error();
  // The writes: the kept stretches, then a scan for those left out; each
  // installs its levels as it writes.
  auto write = [&](std::uint64_t first, std::uint64_t count) {
    [[maybe_unused]] const status s = receiver.put_list(
        levels, span_of(first, count), ordered_values<Order>{stored.subspan(first, count)},
        [](std::uint64_t, std::uint64_t) noexcept { return status::ok; });
    IOPT_ASSERT(s == status::ok); // checked and reserved
  };
  for (const auto& kept : stretches.kept())
    write(kept.first, kept.count);
  if (stretches.full())
    scan(stretches.resume_at(), [&](std::uint64_t first, std::uint64_t count) {
      write(first, count);
      return true;
    });
  return status::ok;
}

} // namespace iopt
