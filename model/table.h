// The model's object tables. Reading is free; every write goes through mut() or push_back(),
// which record the index, so the invariant checker can look at only what a step touched
// instead of every object ever made.
#pragma once

#include "base/assert.h"

#include <cstdint>
#include <vector>

namespace fpsim::model {

template <typename T> class Table {
public:
  using const_iterator = typename std::vector<T>::const_iterator;

  std::size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  const T &operator[](std::size_t i) const { return items_[i]; }
  // Bounds-checked in every build: an index the table never handed out is a bug in fpsim.
  const T &at(std::size_t i) const {
    FPSIM_ASSERT(i < items_.size(), "Table::at on an index the table never handed out");
    return items_[i];
  }
  const T &back() const {
    FPSIM_ASSERT(!items_.empty(), "Table::back on an empty table");
    return items_.back();
  }
  const_iterator begin() const { return items_.begin(); }
  const_iterator end() const { return items_.end(); }

  // Bounds-checked write access; the object counts as touched until clear_touched().
  T &mut(std::size_t i) {
    FPSIM_ASSERT(i < items_.size(), "Table::mut on an index the table never handed out");
    T &item = items_[i];
    touch(static_cast<std::uint32_t>(i));
    return item;
  }
  void push_back(const T &item) {
    items_.push_back(item);
    marked_.push_back(0);
    touch(static_cast<std::uint32_t>(items_.size() - 1));
  }

  // Indices written since the last clear_touched(), each once, in first-touch order. Never
  // longer than the table.
  const std::vector<std::uint32_t> &touched() const { return touched_; }
  void clear_touched() {
    for (std::uint32_t i : touched_)
      marked_[i] = 0;
    touched_.clear();
  }

private:
  void touch(std::uint32_t i) {
    if (marked_[i])
      return;
    marked_[i] = 1;
    touched_.push_back(i);
  }

  std::vector<T> items_;
  std::vector<std::uint8_t> marked_; // bytes, not bits: set and tested on every write
  std::vector<std::uint32_t> touched_;
};

} // namespace fpsim::model
