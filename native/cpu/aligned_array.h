// A 64-byte aligned, zero-filled array, the CPU backend's one kind of large buffer. Large ones come from calloc's
// fresh mapped pages, so planned memory costs no RAM (and no time to clear) until it is touched.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

namespace dixie {

template <typename T>
class AlignedArray {
 public:
  AlignedArray() = default;
  explicit AlignedArray(size_t n) : size_(n) {
    if (n == 0) return;
    raw_ = std::calloc(n * sizeof(T) + 64, 1);
    if (!raw_) throw std::bad_alloc();
    data_ = reinterpret_cast<T*>((reinterpret_cast<uintptr_t>(raw_) + 63) & ~static_cast<uintptr_t>(63));
  }
  AlignedArray(AlignedArray&& o) noexcept : raw_(o.raw_), data_(o.data_), size_(o.size_) { o.release(); }
  AlignedArray& operator=(AlignedArray&& o) noexcept {
    if (this != &o) {
      std::free(raw_);
      raw_ = o.raw_;
      data_ = o.data_;
      size_ = o.size_;
      o.release();
    }
    return *this;
  }
  AlignedArray(const AlignedArray&) = delete;
  AlignedArray& operator=(const AlignedArray&) = delete;
  ~AlignedArray() { std::free(raw_); }
  T* data() { return data_; }
  const T* data() const { return data_; }
  size_t size() const { return size_; }
  size_t bytes() const { return size_ * sizeof(T); }

 private:
  void release() {
    raw_ = nullptr;
    data_ = nullptr;
    size_ = 0;
  }
  void* raw_ = nullptr;
  T* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace dixie
