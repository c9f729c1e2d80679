#include "sim/search/generate.h"

#include "base/assert.h"
#include "sim/exec/live.h"
#include "sim/exec/sim_executor.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <string>

namespace fpsim::sim {

Rng::Rng(std::uint64_t seed) {
  std::uint64_t x = seed;
  for (auto &s : s_) {
    x += kSplitMix64Gamma;
    s = splitmix64_mix(x);
  }
}

std::uint64_t Rng::next() {
  auto rotl = [](std::uint64_t v, int k) { return (v << k) | (v >> (64 - k)); };
  const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const std::uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

std::uint64_t Rng::below(std::uint64_t n) {
  // Multiply-shift: the high half of a 64x64 product (bias below 2^-40 for our small n).
  return static_cast<std::uint64_t>((static_cast<unsigned __int128>(next()) * n) >> 64);
}

int Rng::range(int lo, int hi) {
  return lo + static_cast<int>(below(static_cast<std::uint64_t>(hi - lo) + 1));
}

std::size_t Rng::weighted(const std::vector<unsigned> &weights) {
  std::uint64_t total = 0;
  for (unsigned w : weights)
    total += w;
  std::uint64_t r = below(total);
  for (std::size_t i = 0; i < weights.size(); ++i) {
    if (r < weights[i])
      return i;
    r -= weights[i];
  }
  return weights.size() - 1;
}

namespace {

using model::AccessMode;
namespace rf = reply_flag;

// Mount files: three that exist and one that only a `create` brings into being. Few inodes,
// so that many opens share one.
constexpr const char *kMountFiles[] = {"a", "b", "c", "new"};
constexpr int kCreatedFile = 3;
constexpr const char *kBackingFiles[] = {"x.dat", "y.dat"};

enum class Act : std::uint8_t {
  BackingOpen, BackingClose, BackingCloseLiteral, Open, Create, Opendir, Read, Write, Mmap,
  Munmap, Close, WriteBegin, WriteEnd, Await, Abort, Umount, DevClose, Count,
};

// What a handle was opened with; whether it is open is the Live's.
struct HandleInfo {
  int file = -1; // mount file slot; -1 for opendir
  AccessMode access = AccessMode::ReadOnly;
  ReplySpec reply;
};

// The op each action writes, in Act's order.
constexpr Op kOpOf[] = {Op::BackingOpen, Op::BackingClose, Op::BackingClose, Op::Open,
                        Op::Create,      Op::Opendir,      Op::Read,         Op::Write,
                        Op::Mmap,        Op::Munmap,       Op::Close,        Op::WriteBegin,
                        Op::WriteEnd,    Op::Await,        Op::Abort,        Op::Umount,
                        Op::DevClose};
static_assert(std::size(kOpOf) == static_cast<std::size_t>(Act::Count));
Op op_of(Act a) { return kOpOf[static_cast<std::size_t>(a)]; }

// Room for every name a trace of `cap` statements can declare (one per statement at most): the
// executor and the Live size their tables from the names.
Names names_for(int cap) {
  Names n;
  n.number(cap);
  for (int i = 0; i < 4; ++i) {
    n.mount_files.emplace_back(kMountFiles[i]);
    n.mount_file_created.push_back(i == kCreatedFile);
  }
  for (const char *f : kBackingFiles)
    n.backing_files.emplace_back(f);
  return n;
}

class Generator {
public:
  Generator(std::uint64_t seed, const GenOptions &o)
      : rng_(seed), opts_(o), budget_(std::max(2, o.max_ops)), live_(names_for(budget_)) {
    scratch_.profile = o.profile;
    scratch_.profile_given = true;
    scratch_.names = names_for(budget_);
    // Per-trace emphasis: each action's weight is scaled by 1..4 (in halves), so some traces
    // are mostly id churn, others mostly writes in flight or mmaps.
    for (auto &s : scale_)
      s = static_cast<unsigned>(rng_.range(1, 8));
  }

  Trace run(std::vector<std::optional<Outcome>> *outcomes) {
    ex_.begin(scratch_, opts_.profile);
    target_ = rng_.range(std::max(2, budget_ / 2), budget_);
    // Rarely, an ioctl on the device before the mount exists.
    if (rng_.chance(1, 40)) {
      if (rng_.chance(1, 2))
        backing_open();
      else
        backing_close_literal();
    }
    emit_init();
    while (static_cast<int>(stmts_.size()) < target_ && one()) {
    }
    return finish(outcomes);
  }

private:
  // ---- emitting ----------------------------------------------------------------------------

  Outcome emit(Statement s) {
    const Outcome o = ex_.step(s, live_.bindings());
    live_.track(s, o);
    stmts_.push_back(std::move(s));
    outcomes_.push_back(o);
    return o;
  }

  int room() const { return target_ - static_cast<int>(stmts_.size()); }

  void emit_init() {
    Statement s = stmt(Op::Init);
    s.init.passthrough = !rng_.chance(2, 25);
    const unsigned depth = static_cast<unsigned>(rng_.weighted({7, 60, 30, 3}));
    s.init.max_stack_depth = static_cast<int>(depth);
    s.init.writeback_cache = rng_.chance(1, 20);
    s.init.direct_io_allow_mmap = rng_.chance(7, 20);
    s.init.no_init_ext = rng_.chance(1, 33);
    emit(s);
  }

  // ---- picking names -----------------------------------------------------------------------

  static std::vector<int> slots(const SlotSet &set) {
    std::vector<int> v;
    set.for_each([&v](int slot) { v.push_back(slot); });
    return v;
  }
  int pick(const std::vector<int> &v) { return v[rng_.below(v.size())]; }

  std::vector<int> open_handles() const { return slots(live_.handles()); }
  // Names whose id is still registered, or (closed) whose id was registered and is not any more.
  std::vector<int> bound_backings(bool closed) const {
    std::vector<int> v;
    const auto &ids = live_.bindings().backing_ids;
    for (int b = 0; b < live_.declared(NameKind::Backing); ++b)
      if (ids[static_cast<std::size_t>(b)] && live_.registered().contains(b) != closed)
        v.push_back(b);
    return v;
  }
  // The blocked calls the generator awaits: the opens, mmaps and write_begins, which declared
  // their names; a read or write that blocks is left to replay's teardown.
  std::vector<NameRef> pending() const {
    std::vector<NameRef> v;
    live_.blocked(NameKind::Handle).for_each([&](int h) {
      if (live_.blocked_open(h))
        v.push_back({NameKind::Handle, h});
    });
    for (NameKind k : {NameKind::Mapping, NameKind::Write})
      live_.blocked(k).for_each([&](int slot) { v.push_back({k, slot}); });
    return v;
  }
  // A handle for read/write/mmap/close: mostly an open fd, sometimes a closed or still
  // blocked one (EBADF).
  std::optional<int> some_handle() {
    const auto open = open_handles();
    if (!open.empty() && !rng_.chance(1, 10))
      return pick(open);
    if (handles_.empty())
      return std::nullopt;
    return static_cast<int>(rng_.below(handles_.size()));
  }

  static bool is_dio_pdw(const ReplySpec &r) {
    return r.kind == ReplySpec::Kind::Flags && (r.flags & rf::DIRECT_IO) &&
           (r.flags & rf::PARALLEL_DIRECT_WRITES);
  }

  // ---- one statement -----------------------------------------------------------------------

  bool one() {
    const auto open = open_handles();
    const auto pend = pending();
    return act(static_cast<Act>(rng_.weighted(weights(open, pend))), open, pend);
  }

  std::vector<unsigned> weights(const std::vector<int> &open,
                                const std::vector<NameRef> &pend) const {
    std::vector<unsigned> w(static_cast<std::size_t>(Act::Count), 0);
    auto set = [&](Act a, unsigned base) {
      w[static_cast<std::size_t>(a)] = base * scale_[static_cast<std::size_t>(a)];
    };
    const bool have_live_id = !live_.registered().empty();
    const bool any_bound = have_live_id || !bound_backings(true).empty();
    const bool declared = !handles_.empty();
    bool any_writable = false;
    for (int h : open)
      any_writable |= handles_[static_cast<std::size_t>(h)].access != AccessMode::ReadOnly;
    // Without a live id, registering one is the likeliest next step, unless registrations keep
    // failing (passthrough was not negotiated, or the device is gone).
    set(Act::BackingOpen, have_live_id ? 4 : failed_backing_opens_ >= 2 ? 1 : 12);
    set(Act::BackingClose, any_bound ? 4 : 0);
    set(Act::BackingCloseLiteral, 1);
    set(Act::Open, 16);
    set(Act::Create, 1);
    set(Act::Opendir, 1);
    // On a closed or refused handle these are EBADF: now and then, not mostly.
    set(Act::Read, !declared ? 0 : open.empty() ? 1 : 4);
    set(Act::Write, !declared ? 0 : open.empty() ? 1 : 3);
    set(Act::Mmap, !declared ? 0 : open.empty() ? 1 : 5);
    set(Act::Munmap, live_.mappings().empty() ? 0 : 4);
    set(Act::Close, open.empty() ? 0 : 8);
    set(Act::WriteBegin, any_writable ? 8 : 0);
    set(Act::WriteEnd, live_.writes().empty() ? 0 : 8);
    set(Act::Await, pend.empty() ? 0 : 6);
    // At most max_blocked calls blocked at a time: nothing that can block while that many are.
    // Reads and closes stay, as they always did, so that every seed keeps the trace it gave
    // (repro lines and saved counterexamples name seeds).
    if (pend.size() >= static_cast<std::size_t>(opts_.max_blocked))
      for (std::size_t a = 0; a < w.size(); ++a)
        if (const Act act = static_cast<Act>(a);
            may_block(op_of(act)) && act != Act::Read && act != Act::Close)
          w[a] = 0;
    // The connection's end, rarely and near the trace's end.
    const bool late = static_cast<int>(stmts_.size()) * 5 >= target_ * 4;
    set(Act::Abort, late && !aborted_ ? 1 : 0);
    set(Act::Umount, late && live_.mounted() ? 1 : 0);
    set(Act::DevClose, late && live_.dev_open() ? 1 : 0);
    return w;
  }

  // Writes the action's statements; false when the trace has no room left for them.
  bool act(Act a, const std::vector<int> &open, const std::vector<NameRef> &pend) {
    switch (a) {
    case Act::BackingOpen:
      backing_open();
      break;
    case Act::BackingClose:
      backing_close();
      break;
    case Act::BackingCloseLiteral:
      backing_close_literal();
      break;
    case Act::Open:
    case Act::Create:
    case Act::Opendir:
      open_file(op_of(a));
      break;
    case Act::Read:
    case Act::Write:
      if (const auto h = some_handle())
        emit(on_handle(op_of(a), *h));
      break;
    case Act::Mmap:
      mmap();
      break;
    case Act::Munmap: {
      Statement s = stmt(Op::Munmap);
      s.mapping = pick(slots(live_.mappings()));
      emit(s);
      break;
    }
    case Act::Close:
      emit(on_handle(Op::Close, pick(open)));
      break;
    case Act::WriteBegin:
      write_begin(open);
      break;
    case Act::WriteEnd: {
      Statement s = stmt(Op::WriteEnd);
      s.write = pick(slots(live_.writes()));
      emit(s);
      break;
    }
    case Act::Await:
      await(pend[rng_.below(pend.size())]);
      break;
    case Act::Abort:
    case Act::DevClose:
      return connection_end(op_of(a));
    case Act::Umount: {
      Statement s = stmt(Op::Umount);
      s.detach = rng_.chance(1, 2);
      emit(s);
      break;
    }
    case Act::Count:
      break;
    }
    return true;
  }

  static Statement stmt(Op op) {
    Statement s;
    s.op = op;
    return s;
  }
  static Statement on_handle(Op op, int handle) {
    Statement s = stmt(op);
    s.handle = handle;
    return s;
  }

  // abort or dev_close. A write that finished its wait for the lock and went to the server is
  // in flight only once awaited: every blocked write is awaited first, so that the end of the
  // connection ends it as a write in flight (replay's teardown then answers it) rather than one
  // nobody knows is held.
  bool connection_end(Op op) {
    const auto waiting = slots(live_.blocked(NameKind::Write));
    if (room() < static_cast<int>(waiting.size()) + 1)
      return false;
    for (int x : waiting)
      await({NameKind::Write, x});
    Statement s = stmt(op);
    emit(s);
    aborted_ = true;
    return true;
  }

  // ---- the statements ------------------------------------------------------------------------

  void backing_open() {
    Statement s = stmt(Op::BackingOpen);
    s.backing = live_.declared(NameKind::Backing);
    static constexpr SourceKind kSources[] = {SourceKind::File, SourceKind::OPath,
                                              SourceKind::Dir,  SourceKind::Pipe,
                                              SourceKind::Socket, SourceKind::DevNull,
                                              SourceKind::BadFd};
    s.source = kSources[rng_.weighted({180, 6, 2, 2, 2, 2, 2})];
    if (s.source == SourceKind::File || s.source == SourceKind::OPath)
      s.backing_file = rng_.chance(7, 10) ? 0 : 1;
    if (rng_.chance(1, 100))
      s.map_flags = 1;
    if (rng_.chance(1, 100))
      s.map_padding = 1;
    s.unprivileged = rng_.chance(1, 50);
    const Outcome o = emit(s);
    if (o.kind != Outcome::Kind::Id)
      failed_backing_opens_++;
    else
      max_id_ = std::max(max_id_, static_cast<std::int32_t>(o.id));
  }

  void backing_close() {
    auto live = bound_backings(false);
    const auto closed = bound_backings(true);
    // Mostly a live id; sometimes one already closed (ENOENT, or a reused id's new owner).
    const bool old = live.empty() || (!closed.empty() && rng_.chance(1, 5));
    Statement s = stmt(Op::BackingClose);
    s.backing = pick(old ? closed : live);
    s.unprivileged = rng_.chance(1, 50);
    emit(s);
  }

  // A literal id: 0 and -1 (EINVAL), one never handed out (ENOENT), or one a name holds.
  std::uint32_t literal_id() {
    std::vector<std::int32_t> known;
    for (const auto &id : live_.bindings().backing_ids)
      if (id)
        known.push_back(*id);
    switch (rng_.weighted({2, 2, 1, 2, known.empty() ? 0u : 5u})) {
    case 0:
      return 0;
    case 1:
      return 0xFFFFFFFFu;
    case 2:
      return 0x80000000u;
    case 3:
      return static_cast<std::uint32_t>(max_id_ + rng_.range(1, 3));
    default:
      return static_cast<std::uint32_t>(known[rng_.below(known.size())]);
    }
  }

  void backing_close_literal() {
    Statement s = stmt(Op::BackingClose);
    s.literal_id = literal_id();
    s.unprivileged = rng_.chance(1, 50);
    emit(s);
  }

  ReplySpec reply(bool for_create) {
    ReplySpec r;
    // cached, keep_cache, direct_io, direct_io|pdw, passthrough, passthrough|direct_io|pdw,
    // passthrough|keep_cache, passthrough|noflush, error:EACCES, enosys, a rare odd flag mix.
    const std::size_t kind = rng_.weighted({30, 8, 16, 26, 60, 30, 8, 6, 8, for_create ? 0u : 1u, 3});
    static constexpr std::uint32_t kFlags[] = {0,
                                               rf::KEEP_CACHE,
                                               rf::DIRECT_IO,
                                               rf::DIRECT_IO | rf::PARALLEL_DIRECT_WRITES,
                                               rf::PASSTHROUGH,
                                               rf::PASSTHROUGH | rf::DIRECT_IO |
                                                   rf::PARALLEL_DIRECT_WRITES,
                                               rf::PASSTHROUGH | rf::KEEP_CACHE,
                                               rf::PASSTHROUGH | rf::NOFLUSH};
    static constexpr std::uint32_t kOdd[] = {rf::NOFLUSH, rf::NONSEEKABLE, rf::STREAM,
                                             rf::CACHE_DIR, rf::DIRECT_IO | rf::NOFLUSH};
    if (kind == 8) {
      r.kind = ReplySpec::Kind::Error;
      r.error = EACCES;
      return r;
    }
    if (kind == 9) {
      r.kind = ReplySpec::Kind::Enosys;
      return r;
    }
    r.flags = kind < std::size(kFlags) ? kFlags[kind] : kOdd[rng_.below(std::size(kOdd))];
    if (r.flags & rf::PASSTHROUGH) {
      const auto live = bound_backings(false);
      const auto closed = bound_backings(true);
      const std::size_t how = rng_.weighted({live.empty() ? 0u : 16u, closed.empty() ? 0u : 3u, 2});
      if (how == 0 || how == 1) {
        r.id_kind = ReplySpec::IdKind::Name;
        r.backing = pick(how == 0 ? live : closed);
      } else {
        r.id_kind = ReplySpec::IdKind::Literal;
        r.literal_id = static_cast<std::int32_t>(literal_id());
      }
    } else if (rng_.chance(1, 60) && live_.declared(NameKind::Backing) > 0) {
      // A backing id without passthrough: the kernel ignores it.
      r.id_kind = ReplySpec::IdKind::Literal;
      r.literal_id = 1;
    }
    return r;
  }

  int pick_mount_file() {
    // Mostly an inode some handle already has open, so that opens pile up on it.
    std::vector<int> used;
    for (const auto &h : handles_)
      if (h.file >= 0)
        used.push_back(h.file);
    if (!used.empty() && rng_.chance(3, 5))
      return pick(used);
    return static_cast<int>(rng_.weighted({50, 30, 15, created_ ? 5u : 0u}));
  }

  void open_file(Op op) {
    Statement s = stmt(op);
    s.handle = static_cast<int>(handles_.size());
    handles_.emplace_back();
    HandleInfo &h = handles_.back();
    if (op == Op::Open) {
      s.file = pick_mount_file();
      s.access = std::array{AccessMode::ReadWrite, AccessMode::ReadOnly,
                            AccessMode::WriteOnly}[rng_.weighted({50, 40, 10})];
      s.o_direct = rng_.chance(1, 20);
      s.o_trunc = rng_.chance(1, 20);
    } else if (op == Op::Create) {
      // Only the file no trace starts with is ever created (so the parser marks exactly it).
      s.file = kCreatedFile;
      s.access = AccessMode::ReadWrite;
      created_ = true;
    }
    s.reply = reply(op == Op::Create);
    h.file = s.file;
    h.access = op == Op::Opendir ? AccessMode::ReadOnly : s.access;
    h.reply = s.reply;
    emit(s);
  }

  void mmap() {
    const auto h = some_handle();
    if (!h)
      return;
    Statement s = stmt(Op::Mmap);
    s.mapping = live_.declared(NameKind::Mapping);
    s.handle = *h;
    s.shared = rng_.chance(1, 2);
    emit(s);
  }

  void write_begin(const std::vector<int> &open) {
    // Held writes are what the io modes race against: prefer parallel direct writes.
    std::vector<unsigned> w;
    for (int h : open) {
      const HandleInfo &hs = handles_[static_cast<std::size_t>(h)];
      unsigned weight = hs.access == AccessMode::ReadOnly ? 0u : 1u;
      if (weight && is_dio_pdw(hs.reply))
        weight = 8;
      else if (weight && (hs.reply.flags & rf::DIRECT_IO))
        weight = 3;
      w.push_back(weight);
    }
    Statement s = stmt(Op::WriteBegin);
    s.write = live_.declared(NameKind::Write);
    s.handle = open[rng_.weighted(w)];
    emit(s);
  }

  void await(NameRef what) {
    Statement s = stmt(Op::Await);
    s.await_kind = what.kind;
    s.await_slot = what.slot;
    emit(s);
  }

  // ---- the trace as the parser would have built it ------------------------------------------

  Trace finish(std::vector<std::optional<Outcome>> *outcomes) {
    Trace t;
    t.path = "generated.trace";
    t.profile = opts_.profile;
    t.profile_given = true;
    auto declared = [&](std::vector<std::string> Names::*v, NameKind k) {
      (t.names.*v).assign((scratch_.names.*v).begin(),
                          (scratch_.names.*v).begin() + live_.declared(k));
    };
    declared(&Names::backings, NameKind::Backing);
    declared(&Names::handles, NameKind::Handle);
    declared(&Names::mappings, NameKind::Mapping);
    declared(&Names::writes, NameKind::Write);
    // Files are interned in order of first appearance.
    std::vector<int> mount_slot(std::size(kMountFiles), -1);
    std::vector<int> backing_slot(std::size(kBackingFiles), -1);
    for (std::size_t i = 0; i < stmts_.size(); ++i) {
      Statement &s = stmts_[i];
      s.line = static_cast<int>(i) + 3; // after "fpsim-trace 1" and "kernel P"
      if (s.file >= 0) {
        int &slot = mount_slot[static_cast<std::size_t>(s.file)];
        if (slot < 0) {
          slot = static_cast<int>(t.names.mount_files.size());
          t.names.mount_files.emplace_back(kMountFiles[s.file]);
          t.names.mount_file_created.push_back(false);
        }
        if (s.op == Op::Create)
          t.names.mount_file_created[static_cast<std::size_t>(slot)] = true;
        s.file = slot;
      }
      if (s.backing_file >= 0) {
        int &slot = backing_slot[static_cast<std::size_t>(s.backing_file)];
        if (slot < 0) {
          slot = static_cast<int>(t.names.backing_files.size());
          t.names.backing_files.emplace_back(kBackingFiles[s.backing_file]);
        }
        s.backing_file = slot;
      }
    }
    t.statements = std::move(stmts_);
    if (outcomes) {
      outcomes->clear();
      for (Outcome &o : outcomes_)
        outcomes->emplace_back(std::move(o));
    }
    return t;
  }

  Rng rng_;
  GenOptions opts_;
  int budget_;
  int target_ = 0;
  Trace scratch_;
  SimExecutor ex_;
  std::vector<Statement> stmts_;
  std::vector<Outcome> outcomes_;
  Live live_;
  std::vector<HandleInfo> handles_;
  unsigned scale_[static_cast<std::size_t>(Act::Count)] = {};
  std::int32_t max_id_ = 0;
  int failed_backing_opens_ = 0;
  bool aborted_ = false;
  bool created_ = false;
};

} // namespace

Trace generate_trace(std::uint64_t seed, const GenOptions &opts) {
  return Generator(seed, opts).run(nullptr);
}

Trace generate_trace(std::uint64_t seed, const GenOptions &opts,
                     std::vector<std::optional<Outcome>> *outcomes) {
  return Generator(seed, opts).run(outcomes);
}

} // namespace fpsim::sim
