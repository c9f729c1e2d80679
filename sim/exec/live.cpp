#include "sim/exec/live.h"

#include "base/assert.h"

#include <algorithm>
#include <cerrno>

namespace fpsim::sim {

void SlotSet::insert(int slot) {
  FPSIM_ASSERT(slot >= 0, "a name slot is never negative");
  const auto [w, bit] = where(slot);
  std::uint64_t *word = &low_;
  if (w > 0) {
    if (high_.size() < w)
      high_.resize(w, 0);
    word = &high_[w - 1];
  }
  size_ += (*word & bit) == 0;
  *word |= bit;
}

void SlotSet::erase(int slot) {
  if (!contains(slot))
    return;
  const auto [w, bit] = where(slot);
  (w == 0 ? low_ : high_[w - 1]) &= ~bit;
  --size_;
}

Live::Live(const Names &names) {
  bindings_.backing_ids.assign(names.backings.size(), std::nullopt);
}

void IdIndex::add(std::int32_t id, int name) {
  const Entry e{id, name};
  // Ids come from a cyclic allocator: mostly each above the last.
  if (v_.empty() || v_.back() < e)
    v_.push_back(e);
  else
    v_.insert(std::lower_bound(v_.begin(), v_.end(), e), e);
}

void IdIndex::compact() {
  const auto dead = [](const Entry &e) { return e.name == kTombstone; };
  v_.erase(std::remove_if(v_.begin(), v_.end(), dead), v_.end());
  dead_ = 0;
}

std::vector<std::int32_t> IdIndex::ids() const {
  std::vector<std::int32_t> out;
  for (const Entry &e : v_)
    if (e.name != kTombstone && (out.empty() || out.back() != e.id))
      out.push_back(e.id);
  return out;
}

std::vector<std::int32_t> Live::registered_ids() const { return ids_.ids(); }

bool Live::any_blocked() const {
  for (const SlotSet &b : blocked_)
    if (!b.empty())
      return true;
  return false;
}

void Live::declare(const Statement &s) {
  if (const std::optional<NameRef> name = declared_name(s)) {
    int &n = declared_[index(name->kind)];
    n = std::max(n, name->slot + 1);
  }
}

// A later call blocking under the same name (a second read on one handle) takes its place, as in
// the executors: an await returns the latest.
void Live::block(const Statement &s) {
  const NameRef n = blocked_name(s);
  blocked_[index(n.kind)].insert(n.slot);
  if (n.kind != NameKind::Handle)
    return;
  if (s.op == Op::Open || s.op == Op::Create)
    opening_.insert(n.slot);
  else
    opening_.erase(n.slot);
}

void Live::returned(NameRef n, const Outcome &o) {
  SlotSet &b = blocked_[index(n.kind)];
  if (o.kind == Outcome::Kind::Blocks || !b.contains(n.slot))
    return;
  b.erase(n.slot);
  const bool opened = n.kind == NameKind::Handle && opening_.contains(n.slot);
  if (n.kind == NameKind::Handle)
    opening_.erase(n.slot);
  if (o.kind == Outcome::Kind::Errno || o.kind == Outcome::Kind::Invalid)
    return;
  switch (n.kind) {
  case NameKind::Handle:
    if (opened)
      handles_.insert(n.slot);
    break;
  case NameKind::Mapping:
    mappings_.insert(n.slot);
    break;
  case NameKind::Write:
    // Ok: the server holds it now; backing or fuse: it went elsewhere and returned.
    if (o.kind == Outcome::Kind::Ok)
      writes_.insert(n.slot);
    break;
  case NameKind::Backing:
    break;
  }
}

// Every name bound to the id loses it: an id handed out twice (a broken idr) is closed once.
void Live::unregister(std::int32_t id) {
  ids_.remove(id, [this](int name) { registered_.erase(name); });
}

void Live::track(const Statement &s, const Outcome &o) {
  declare(s);
  // Only a call that can sleep can be awaited; `blocks` from another statement is an executor
  // giving up on a call (the harness's close or munmap that never returned): nothing waits for
  // it, and what it ends is ended as if it had returned.
  // A close that sleeps has closed its fd already.
  if (s.op == Op::Close)
    handles_.erase(s.handle);
  if (o.kind == Outcome::Kind::Blocks && may_block(s.op))
    return block(s);
  const bool ok = o.kind != Outcome::Kind::Errno && o.kind != Outcome::Kind::Invalid &&
                  o.kind != Outcome::Kind::Blocks;
  switch (s.op) {
  case Op::Init:
    mounted_ = true;
    break;
  case Op::BackingOpen:
    if (o.kind == Outcome::Kind::Id) {
      const auto id = static_cast<std::int32_t>(o.id);
      bindings_.backing_ids.at(static_cast<std::size_t>(s.backing)) = id;
      registered_.insert(s.backing);
      ids_.add(id, s.backing);
    }
    break;
  case Op::BackingClose:
    if (ok)
      unregister(s.literal_id ? static_cast<std::int32_t>(*s.literal_id)
                              : *bindings_.backing_ids.at(static_cast<std::size_t>(s.backing)));
    break;
  case Op::Open:
  case Op::Create:
  case Op::Opendir:
    if (ok)
      handles_.insert(s.handle);
    break;
  case Op::Mmap:
    if (ok)
      mappings_.insert(s.mapping);
    break;
  case Op::Munmap:
    mappings_.erase(s.mapping);
    break;
  case Op::WriteBegin:
    if (o.kind == Outcome::Kind::Ok)
      writes_.insert(s.write);
    break;
  case Op::WriteEnd:
    writes_.erase(s.write);
    break;
  case Op::Await:
    returned(awaited_name(s), o);
    break;
  case Op::Umount:
    if (ok)
      mounted_ = false;
    break;
  case Op::DevClose:
    if (ok)
      dev_open_ = false;
    break;
  case Op::Read:
  case Op::Write:
  case Op::Close: // the fd is gone even when FLUSH failed: erased above
  case Op::Abort:
  case Op::Check:
    break;
  }
}

namespace {

Statement synth(Op op) {
  Statement s;
  s.op = op;
  s.line = 0;
  return s;
}

void expect_ok(const TeardownRun &run, const Statement &s, const Outcome &o) {
  if (o.kind != Outcome::Kind::Ok)
    run.failed(s, o);
}

// What the trace still holds goes in kernel order: held writes return, mappings go, fds close.
void release(const Live &live, const TeardownRun &run) {
  const SlotSet writes = live.writes();
  writes.for_each([&](int w) {
    Statement s = synth(Op::WriteEnd);
    s.write = w;
    run.step(s);
  });
  const SlotSet mappings = live.mappings();
  mappings.for_each([&](int m) {
    Statement s = synth(Op::Munmap);
    s.mapping = m;
    expect_ok(run, s, run.step(s));
  });
  const SlotSet handles = live.handles();
  handles.for_each([&](int h) {
    Statement s = synth(Op::Close);
    s.handle = h;
    const Outcome o = run.step(s);
    // A dead connection fails the FLUSH, and the fd is closed all the same. A close that waits
    // for the inode lock (flush_takes_inode_lock) is awaited with the other blocked calls.
    if (!(o.kind == Outcome::Kind::Errno && o.err == ENOTCONN) && o.kind != Outcome::Kind::Blocks)
      expect_ok(run, s, o);
  });
}

// One pass over the blocked calls; whether any returned. What a call that returns hands back
// (an fd, a mapping, a held write) is released before the next call is awaited: a queue of held
// writes on one inode lock then drains in one pass, not in one pass per write (which awaited
// every write still queued each time: steps quadratic in the length of the queue).
bool await_blocked(const Live &live, const TeardownRun &run) {
  bool any = false;
  for (NameKind k : {NameKind::Handle, NameKind::Mapping, NameKind::Write}) {
    const SlotSet blocked = live.blocked(k);
    blocked.for_each([&](int slot) {
      Statement s = synth(Op::Await);
      s.await_kind = k;
      s.await_slot = slot;
      run.step(s);
      if (!live.blocked(k).contains(slot)) {
        any = true;
        release(live, run);
      }
    });
  }
  return any;
}

} // namespace

void teardown(const Live &live, const TeardownRun &run) {
  teardown_clients(live, run);
  teardown_server(live, run);
}

void teardown_clients(const Live &live, const TeardownRun &run) {
  do
    release(live, run);
  while (live.any_blocked() && await_blocked(live, run));
}

void teardown_server(const Live &live, const TeardownRun &run) {
  // Ids die with the connection once the device is closed.
  if (live.dev_open())
    for (std::int32_t id : live.registered_ids()) {
      Statement s = synth(Op::BackingClose);
      s.literal_id = static_cast<std::uint32_t>(id);
      expect_ok(run, s, run.step(s));
    }
  if (live.mounted()) {
    Statement s = synth(Op::Umount);
    const Outcome o = run.step(s);
    if (o.kind == Outcome::Kind::Errno && o.err == EBUSY) {
      s.detach = true;
      expect_ok(run, s, run.step(s));
    }
  }
  if (live.dev_open()) {
    const Statement s = synth(Op::DevClose);
    expect_ok(run, s, run.step(s));
  }
}

} // namespace fpsim::sim
