// Shared by the fuzz targets: decoding bytes into operations, and a check
// that stops the run at the first disagreement with a reference model.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace iopt_fuzz {

// Reads little-endian integers from the input; past the end it yields zeros
// and says it is done, so every input decodes to some operation sequence.
class byte_reader {
public:
  byte_reader(const std::uint8_t* data, std::size_t size) noexcept : data_(data), size_(size) {}
  [[nodiscard]] bool done() const noexcept { return at_ >= size_; }
  template <class T>
  T read() noexcept {
    T v = 0;
    for (std::size_t i = 0; i < sizeof(T); ++i, ++at_)
      if (at_ < size_)
        v = static_cast<T>(v | static_cast<T>(static_cast<T>(data_[at_]) << (8 * i)));
    return v;
  }
  std::uint8_t byte() noexcept { return read<std::uint8_t>(); }

private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t at_ = 0;
};

#define IOPT_FUZZ_CHECK(cond)                                                                      \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      std::fprintf(stderr, "fuzz check failed: %s at %s:%d\n", #cond, __FILE__, __LINE__);         \
      std::abort();                                                                                \
    }                                                                                              \
  } while (0)

} // namespace iopt_fuzz
