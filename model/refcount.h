// refcount_t semantics without undefined behaviour: misuse is reported, never wrapped.
#pragma once

#include <cstdint>

namespace fpsim::model {

// What went wrong with a refcount operation. The kernel's refcount_t WARNs and saturates on
// each of these; the model reports them to its owner, which records a violation.
enum class RefcountMisuse : std::uint8_t {
  None,
  IncFromZero, // refcount_inc on a freed object: use after free
  Underflow,   // refcount_dec below zero
};

class RefCount {
public:
  RefCount() = default;
  explicit RefCount(std::int32_t initial) : value_(initial) {}

  std::int32_t value() const { return value_; }

  // refcount_inc: the object must already be live.
  RefcountMisuse inc() {
    if (value_ <= 0)
      return RefcountMisuse::IncFromZero;
    ++value_;
    return RefcountMisuse::None;
  }

  // refcount_inc_not_zero: the lock-free lookup path; a dying object is simply not found.
  bool inc_not_zero() {
    if (value_ <= 0)
      return false;
    ++value_;
    return true;
  }

  // refcount_dec_and_test: *reached_zero tells the caller to free.
  RefcountMisuse dec_and_test(bool *reached_zero) {
    *reached_zero = false;
    if (value_ <= 0)
      return RefcountMisuse::Underflow;
    --value_;
    *reached_zero = value_ == 0;
    return RefcountMisuse::None;
  }

  // Only for fuse_backing_files_free, which frees every fb unconditionally at conn teardown.
  void force_zero() { value_ = 0; }

private:
  std::int32_t value_ = 0;
};

} // namespace fpsim::model
