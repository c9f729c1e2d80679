// What is live in a trace, as its statements and their outcomes say, and the teardown that ends
// it. Outcomes alone, not an executor's insides, so that the simulator and the real kernel are
// torn down by the same statements. Replay follows a trace with it and tears down at the end;
// fpsim explore offers each state the statements it allows and runs the same teardown from every
// state; the generator writes only statements that can run.
#pragma once

#include "sim/exec/executor.h"
#include "sim/trace/statement.h"

#include <array>
#include <bit>
#include <cstdint>
#include <functional>
#include <algorithm>
#include <boost/container/small_vector.hpp>
#include <vector>

namespace fpsim::sim {

// Slots of one name kind, iterated in ascending order. Slots below 64 are one word of bits, so
// a small set is copied without allocating: fpsim explore copies its state on every transition.
class SlotSet {
public:
  SlotSet() = default;
  // An empty vector is not copied: most sets have no slot past 63.
  SlotSet(const SlotSet &o) : low_(o.low_), size_(o.size_) {
    if (!o.high_.empty())
      high_ = o.high_;
  }
  SlotSet &operator=(const SlotSet &o) {
    low_ = o.low_;
    size_ = o.size_;
    if (!o.high_.empty() || !high_.empty())
      high_ = o.high_;
    return *this;
  }
  SlotSet(SlotSet &&) = default;
  SlotSet &operator=(SlotSet &&) = default;

  bool contains(int slot) const {
    const auto [w, bit] = where(slot);
    return w == 0 ? (low_ & bit) != 0 : w <= high_.size() && (high_[w - 1] & bit) != 0;
  }
  void insert(int slot);
  void erase(int slot);
  bool empty() const { return size_ == 0; }
  int size() const { return size_; }
  // Slots 0..63 as bits: what fpsim explore hashes (its slots are all below 32).
  std::uint64_t low_bits() const { return low_; }

  template <typename F> void for_each(F &&f) const {
    each_bit(low_, 0, f);
    for (std::size_t i = 0; i < high_.size(); ++i)
      each_bit(high_[i], 64 * (static_cast<int>(i) + 1), f);
  }

private:
  static std::pair<std::size_t, std::uint64_t> where(int slot) {
    const auto u = static_cast<std::size_t>(slot);
    return {u / 64, std::uint64_t{1} << (u % 64)};
  }
  template <typename F> static void each_bit(std::uint64_t word, int base, F &f) {
    while (word) {
      f(base + std::countr_zero(word));
      word &= word - 1;
    }
  }

  std::uint64_t low_ = 0;
  int size_ = 0;
  std::vector<std::uint64_t> high_; // word i: slots 64 * (i + 1) ...
};

// The registered ids and the names bound to each, in id order: a sorted vector whose closed
// entries become tombstones until half of it is, so that a teardown closing every id in turn
// stays linear; inline for a few ids, which is all fpsim explore copies with its states.
class IdIndex {
public:
  void add(std::int32_t id, int name);
  // Calls f(name) for every name bound to id, and forgets them.
  template <typename F> void remove(std::int32_t id, F &&f) {
    auto it = std::lower_bound(v_.begin(), v_.end(), Entry{id, kTombstone});
    for (; it != v_.end() && it->id == id; ++it)
      if (it->name != kTombstone) {
        f(it->name);
        it->name = kTombstone;
        ++dead_;
      }
    if (dead_ * 2 > v_.size())
      compact();
  }
  // The distinct ids, ascending.
  std::vector<std::int32_t> ids() const;

private:
  static constexpr int kTombstone = -1; // sorts before every name of its id
  struct Entry {
    std::int32_t id;
    int name;
    auto operator<=>(const Entry &) const = default;
  };
  void compact();

  boost::container::small_vector<Entry, 4> v_;
  std::size_t dead_ = 0;
};

class Live {
public:
  // Sized for the trace's backing names (the bindings hold one id per name).
  explicit Live(const Names &names);

  // Follows one statement's outcome. Call it for every statement run, teardown's included.
  void track(const Statement &s, const Outcome &o);

  // The id each backing name got from its backing_open, kept after the id is closed (a
  // backing_close of the name again refers to the same id).
  const Bindings &bindings() const { return bindings_; }
  // Backing names whose id is still registered.
  const SlotSet &registered() const { return registered_; }
  // The distinct ids still registered, ascending.
  std::vector<std::int32_t> registered_ids() const;

  const SlotSet &handles() const { return handles_; }   // fds open
  const SlotSet &mappings() const { return mappings_; } // mapped
  const SlotSet &writes() const { return writes_; }     // held by the server
  // Calls blocked and not yet returned to an await, by the name the await gives.
  const SlotSet &blocked(NameKind k) const { return blocked_[index(k)]; }
  bool any_blocked() const;
  // The handle's blocked call is its open or create: the await that returns it gives the fd.
  bool blocked_open(int handle) const { return opening_.contains(handle); }

  bool mounted() const { return mounted_; }
  bool dev_open() const { return dev_open_; }
  // How many names of the kind the statements so far declared (the next one's slot).
  int declared(NameKind k) const { return declared_[index(k)]; }

private:
  static std::size_t index(NameKind k) { return static_cast<std::size_t>(k); }
  void declare(const Statement &s);
  void block(const Statement &s);
  void returned(NameRef n, const Outcome &o);
  void unregister(std::int32_t id);

  Bindings bindings_;
  SlotSet registered_;
  IdIndex ids_;
  SlotSet handles_, mappings_, writes_, opening_;
  std::array<SlotSet, 4> blocked_; // by NameKind; nothing blocks on a backing name
  std::array<int, 4> declared_{};
  bool mounted_ = false;
  bool dev_open_ = true;
};

// What teardown needs from its caller.
struct TeardownRun {
  // Runs one statement the way every other statement of the trace is run (so that the Live
  // given to teardown follows its outcome) and returns the outcome.
  std::function<Outcome(const Statement &)> step;
  // A teardown step that must succeed did not.
  std::function<void(const Statement &, const Outcome &)> failed;
};

// Ends what `live` holds in kernel order: held writes are answered, mappings go, fds close; then
// blocked calls are awaited, releasing what each one that returns hands back before the next
// is awaited, for as long as any returns; then the ids still registered close, the mount goes
// (detached if it is busy) and the device closes.
void teardown(const Live &live, const TeardownRun &run);
// teardown's two halves: what the clients hold (writes, mappings, fds, blocked calls), then what
// the server holds (ids, the mount, the device).
void teardown_clients(const Live &live, const TeardownRun &run);
void teardown_server(const Live &live, const TeardownRun &run);

} // namespace fpsim::sim
