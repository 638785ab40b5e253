// A 64-byte aligned, zero-filled array, the CPU backend's one kind of large buffer. Large ones are fresh mapped
// pages, so planned memory costs no RAM (and no time to clear) until it is touched. On Linux those are asked to be
// 2 MB pages: decoding streams every weight once per token, and with 4 KB pages each page costs a TLB miss (a
// two-level walk under a hypervisor), which took about a tenth of the read bandwidth on the 2-core VM. What fills
// up a little at a time (the KV cache) keeps 4 KB pages, so that it takes RAM only as it is used.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#ifdef __linux__
#include <sys/mman.h>
#endif

namespace dixie {

enum class Pages { kHuge, kSmall };

template <typename T>
class AlignedArray {
 public:
  AlignedArray() = default;
  explicit AlignedArray(size_t n, Pages pages = Pages::kHuge) : size_(n) {
    if (n == 0) return;
#ifdef __linux__
    if (pages == Pages::kHuge && n * sizeof(T) >= kHugePage) {
      mapped_bytes_ = (n * sizeof(T) + 2 * kHugePage - 1) / kHugePage * kHugePage;
      raw_ = mmap(nullptr, mapped_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (raw_ == MAP_FAILED) throw std::bad_alloc();
      const uintptr_t start = (reinterpret_cast<uintptr_t>(raw_) + kHugePage - 1) & ~(kHugePage - 1);
      data_ = reinterpret_cast<T*>(start);
      madvise(data_, mapped_bytes_ - (start - reinterpret_cast<uintptr_t>(raw_)), MADV_HUGEPAGE);  // a hint only
      return;
    }
#else
    (void)pages;
#endif
    raw_ = std::calloc(n * sizeof(T) + 64, 1);
    if (!raw_) throw std::bad_alloc();
    data_ = reinterpret_cast<T*>((reinterpret_cast<uintptr_t>(raw_) + 63) & ~static_cast<uintptr_t>(63));
  }
  AlignedArray(AlignedArray&& o) noexcept : raw_(o.raw_), data_(o.data_), size_(o.size_), mapped_bytes_(o.mapped_bytes_) {
    o.release();
  }
  AlignedArray& operator=(AlignedArray&& o) noexcept {
    if (this != &o) {
      free_memory();
      raw_ = o.raw_;
      data_ = o.data_;
      size_ = o.size_;
      mapped_bytes_ = o.mapped_bytes_;
      o.release();
    }
    return *this;
  }
  AlignedArray(const AlignedArray&) = delete;
  AlignedArray& operator=(const AlignedArray&) = delete;
  ~AlignedArray() { free_memory(); }
  T* data() { return data_; }
  const T* data() const { return data_; }
  size_t size() const { return size_; }
  size_t bytes() const { return size_ * sizeof(T); }

 private:
  static constexpr uintptr_t kHugePage = uintptr_t{2} << 20;
  void free_memory() {
#ifdef __linux__
    if (mapped_bytes_ > 0) {
      munmap(raw_, mapped_bytes_);
      return;
    }
#endif
    std::free(raw_);
  }
  void release() {
    raw_ = nullptr;
    data_ = nullptr;
    size_ = 0;
    mapped_bytes_ = 0;
  }
  void* raw_ = nullptr;
  T* data_ = nullptr;
  size_t size_ = 0;
  size_t mapped_bytes_ = 0;  // > 0 when raw_ came from mmap
};

}  // namespace dixie
