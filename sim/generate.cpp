#include "sim/generate.h"

#include "sim/sim_executor.h"

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
  BackingOpen,
  BackingClose,
  BackingCloseLiteral,
  Open,
  Create,
  Opendir,
  Read,
  Write,
  Mmap,
  Munmap,
  Close,
  WriteBegin,
  WriteEnd,
  Await,
  Abort,
  Umount,
  DevClose,
  Count,
};

struct BackingState {
  std::optional<std::int32_t> id; // bound by a successful backing_open
  bool closed = false;            // a backing_close of it succeeded
};

struct HandleState {
  int file = -1; // mount file slot; -1 for opendir
  AccessMode access = AccessMode::ReadOnly;
  ReplySpec reply;
  bool fd_open = false;
  bool pending = false; // the open blocked and was not awaited yet
};

struct MappingState {
  bool mapped = false;
  bool pending = false;
};

struct WriteState {
  bool in_flight = false; // the server holds it: write_end may answer it
  bool pending = false;   // waits for the inode lock
};

class Generator {
public:
  Generator(std::uint64_t seed, const GenOptions &o)
      : rng_(seed), opts_(o), budget_(std::max(2, o.max_ops)) {
    scratch_.profile = o.profile;
    scratch_.profile_given = true;
    // The executor sizes its tables from the trace's names at begin(): give it room for every
    // name this trace can declare (one per statement at most).
    const auto cap = static_cast<std::size_t>(budget_);
    for (std::size_t i = 0; i < cap; ++i) {
      scratch_.names.backings.push_back("B" + std::to_string(i + 1));
      scratch_.names.handles.push_back("H" + std::to_string(i + 1));
      scratch_.names.mappings.push_back("M" + std::to_string(i + 1));
      scratch_.names.writes.push_back("W" + std::to_string(i + 1));
    }
    for (int i = 0; i < 4; ++i) {
      scratch_.names.mount_files.emplace_back(kMountFiles[i]);
      scratch_.names.mount_file_created.push_back(i == kCreatedFile);
    }
    for (const char *b : kBackingFiles)
      scratch_.names.backing_files.emplace_back(b);
    bindings_.backing_ids.assign(cap, std::nullopt);
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
    while (static_cast<int>(stmts_.size()) < target_) {
      if (!one())
        break;
    }
    return finish(outcomes);
  }

private:
  // ---- emitting ----------------------------------------------------------------------------

  Outcome emit(Statement s) {
    const Outcome o = ex_.step(s, bindings_);
    stmts_.push_back(std::move(s));
    outcomes_.push_back(o);
    return o;
  }

  int room() const { return target_ - static_cast<int>(stmts_.size()); }

  void emit_init() {
    Statement s;
    s.op = Op::Init;
    s.init.passthrough = !rng_.chance(2, 25);
    const unsigned depth = static_cast<unsigned>(rng_.weighted({7, 60, 30, 3}));
    s.init.max_stack_depth = static_cast<int>(depth);
    s.init.writeback_cache = rng_.chance(1, 20);
    s.init.direct_io_allow_mmap = rng_.chance(7, 20);
    s.init.no_init_ext = rng_.chance(1, 33);
    emit(s);
    mounted_ = true;
  }

  // ---- picking names -----------------------------------------------------------------------

  template <typename Pred> std::vector<int> slots(std::size_t n, Pred pred) const {
    std::vector<int> v;
    for (std::size_t i = 0; i < n; ++i)
      if (pred(static_cast<int>(i)))
        v.push_back(static_cast<int>(i));
    return v;
  }
  int pick(const std::vector<int> &v) { return v[rng_.below(v.size())]; }

  std::vector<int> open_handles() const {
    return slots(handles_.size(), [this](int h) { return handles_[h].fd_open; });
  }
  std::vector<int> bound_backings(bool want_closed) const {
    return slots(backings_.size(), [this, want_closed](int b) {
      return backings_[b].id && backings_[b].closed == want_closed;
    });
  }
  std::vector<std::pair<NameKind, int>> pending() const {
    std::vector<std::pair<NameKind, int>> v;
    for (std::size_t i = 0; i < handles_.size(); ++i)
      if (handles_[i].pending)
        v.emplace_back(NameKind::Handle, static_cast<int>(i));
    for (std::size_t i = 0; i < mappings_.size(); ++i)
      if (mappings_[i].pending)
        v.emplace_back(NameKind::Mapping, static_cast<int>(i));
    for (std::size_t i = 0; i < writes_.size(); ++i)
      if (writes_[i].pending)
        v.emplace_back(NameKind::Write, static_cast<int>(i));
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
    std::vector<unsigned> w(static_cast<std::size_t>(Act::Count), 0);
    auto set = [&](Act a, unsigned base) {
      w[static_cast<std::size_t>(a)] = base * scale_[static_cast<std::size_t>(a)];
    };
    const auto open = open_handles();
    const bool have_live_id = !bound_backings(false).empty();
    const bool any_bound = have_live_id || !bound_backings(true).empty();
    const auto pend = pending();
    bool any_in_flight = false;
    bool any_writable = false;
    bool any_mapped = false;
    for (const auto &ws : writes_)
      any_in_flight = any_in_flight || ws.in_flight;
    for (int h : open)
      any_writable = any_writable || handles_[h].access != AccessMode::ReadOnly;
    for (const auto &m : mappings_)
      any_mapped = any_mapped || m.mapped;
    // Without a live id, registering one is the likeliest next step, unless registrations keep
    // failing (passthrough was not negotiated, or the device is gone).
    set(Act::BackingOpen, have_live_id ? 4 : failed_backing_opens_ >= 2 ? 1 : 12);
    set(Act::BackingClose, any_bound ? 4 : 0);
    set(Act::BackingCloseLiteral, 1);
    set(Act::Open, 16);
    set(Act::Create, 1);
    set(Act::Opendir, 1);
    // On a closed or refused handle these are EBADF: now and then, not mostly.
    set(Act::Read, handles_.empty() ? 0 : open.empty() ? 1 : 4);
    set(Act::Write, handles_.empty() ? 0 : open.empty() ? 1 : 3);
    set(Act::Mmap, handles_.empty() ? 0 : open.empty() ? 1 : 5);
    set(Act::Munmap, any_mapped ? 4 : 0);
    set(Act::Close, open.empty() ? 0 : 8);
    set(Act::WriteBegin, any_writable ? 8 : 0);
    set(Act::WriteEnd, any_in_flight ? 8 : 0);
    set(Act::Await, pend.empty() ? 0 : 6);
    // At most max_blocked calls blocked at a time: nothing that can block while that many are.
    if (pend.size() >= static_cast<std::size_t>(opts_.max_blocked))
      for (Act a : {Act::Open, Act::Create, Act::Write, Act::Mmap, Act::WriteBegin})
        w[static_cast<std::size_t>(a)] = 0;
    // The connection's end, rarely and near the trace's end.
    const bool late = static_cast<int>(stmts_.size()) * 5 >= target_ * 4;
    set(Act::Abort, late && !aborted_ ? 1 : 0);
    set(Act::Umount, late && mounted_ ? 1 : 0);
    set(Act::DevClose, late && dev_open_ ? 1 : 0);
    const Act act = static_cast<Act>(rng_.weighted(w));
    switch (act) {
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
      open_file(Op::Open);
      break;
    case Act::Create:
      open_file(Op::Create);
      break;
    case Act::Opendir:
      open_file(Op::Opendir);
      break;
    case Act::Read:
    case Act::Write: {
      const auto h = some_handle();
      if (!h)
        break;
      Statement s;
      s.op = act == Act::Read ? Op::Read : Op::Write;
      s.handle = *h;
      emit(s);
      break;
    }
    case Act::Mmap:
      mmap();
      break;
    case Act::Munmap: {
      const auto mapped =
          slots(mappings_.size(), [this](int m) { return mappings_[m].mapped; });
      Statement s;
      s.op = Op::Munmap;
      s.mapping = pick(mapped);
      emit(s);
      mappings_[static_cast<std::size_t>(s.mapping)].mapped = false;
      break;
    }
    case Act::Close: {
      Statement s;
      s.op = Op::Close;
      s.handle = pick(open);
      emit(s);
      handles_[static_cast<std::size_t>(s.handle)].fd_open = false;
      break;
    }
    case Act::WriteBegin:
      write_begin(open);
      break;
    case Act::WriteEnd: {
      const auto held = slots(writes_.size(), [this](int x) { return writes_[x].in_flight; });
      Statement s;
      s.op = Op::WriteEnd;
      s.write = pick(held);
      emit(s);
      writes_[static_cast<std::size_t>(s.write)].in_flight = false;
      break;
    }
    case Act::Await:
      await(pend[rng_.below(pend.size())]);
      break;
    case Act::Abort:
    case Act::DevClose: {
      // A write that finished its wait for the lock and went to the server is in flight only
      // once awaited: await every blocked write first, so that the abort ends it as a write in
      // flight (replay's teardown then answers it) rather than one nobody knows is held.
      const auto waiting = slots(writes_.size(), [this](int x) { return writes_[x].pending; });
      if (room() < static_cast<int>(waiting.size()) + 1)
        return false;
      for (int x : waiting)
        await({NameKind::Write, x});
      Statement s;
      s.op = act == Act::DevClose ? Op::DevClose : Op::Abort;
      emit(s);
      aborted_ = true;
      if (s.op == Op::DevClose)
        dev_open_ = false;
      break;
    }
    case Act::Umount: {
      Statement s;
      s.op = Op::Umount;
      s.detach = rng_.chance(1, 2);
      const Outcome o = emit(s);
      if (o.kind == Outcome::Kind::Ok)
        mounted_ = false;
      break;
    }
    case Act::Count:
      break;
    }
    return true;
  }

  // ---- the statements ------------------------------------------------------------------------

  void backing_open() {
    Statement s;
    s.op = Op::BackingOpen;
    s.backing = static_cast<int>(backings_.size());
    backings_.emplace_back();
    switch (rng_.weighted({180, 6, 2, 2, 2, 2, 2})) {
    case 0:
      s.source = SourceKind::File;
      s.backing_file = rng_.chance(7, 10) ? 0 : 1;
      break;
    case 1:
      s.source = SourceKind::OPath;
      s.backing_file = rng_.chance(7, 10) ? 0 : 1;
      break;
    case 2:
      s.source = SourceKind::Dir;
      break;
    case 3:
      s.source = SourceKind::Pipe;
      break;
    case 4:
      s.source = SourceKind::Socket;
      break;
    case 5:
      s.source = SourceKind::DevNull;
      break;
    default:
      s.source = SourceKind::BadFd;
      break;
    }
    if (rng_.chance(1, 100))
      s.map_flags = 1;
    if (rng_.chance(1, 100))
      s.map_padding = 1;
    s.unprivileged = rng_.chance(1, 50);
    const Outcome o = emit(s);
    if (o.kind != Outcome::Kind::Id)
      failed_backing_opens_++;
    if (o.kind == Outcome::Kind::Id) {
      const auto id = static_cast<std::int32_t>(o.id);
      backings_[static_cast<std::size_t>(s.backing)].id = id;
      bindings_.backing_ids[static_cast<std::size_t>(s.backing)] = id;
      max_id_ = std::max(max_id_, id);
    }
  }

  void backing_close() {
    auto live = bound_backings(false);
    const auto closed = bound_backings(true);
    // Mostly a live id; sometimes one already closed (ENOENT, or a reused id's new owner).
    const bool old = live.empty() || (!closed.empty() && rng_.chance(1, 5));
    Statement s;
    s.op = Op::BackingClose;
    s.backing = pick(old ? closed : live);
    s.unprivileged = rng_.chance(1, 50);
    const Outcome o = emit(s);
    if (o.kind == Outcome::Kind::Ok)
      mark_closed(*backings_[static_cast<std::size_t>(s.backing)].id);
  }

  void mark_closed(std::int32_t id) {
    for (auto &b : backings_)
      if (b.id == id)
        b.closed = true;
  }

  // A literal id: 0 and -1 (EINVAL), one never handed out (ENOENT), or one a name holds.
  std::uint32_t literal_id() {
    std::vector<std::int32_t> known;
    for (const auto &b : backings_)
      if (b.id)
        known.push_back(*b.id);
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
    Statement s;
    s.op = Op::BackingClose;
    s.literal_id = literal_id();
    s.unprivileged = rng_.chance(1, 50);
    const Outcome o = emit(s);
    if (o.kind == Outcome::Kind::Ok)
      mark_closed(static_cast<std::int32_t>(*s.literal_id));
  }

  ReplySpec reply(bool for_create) {
    ReplySpec r;
    // cached, keep_cache, direct_io, direct_io|pdw, passthrough, passthrough|direct_io|pdw,
    // passthrough|keep_cache, passthrough|noflush, error:EACCES, enosys, a rare odd flag mix.
    const std::size_t kind = rng_.weighted({30, 8, 16, 26, 60, 30, 8, 6, 8, for_create ? 0u : 1u, 3});
    switch (kind) {
    case 0:
      break;
    case 1:
      r.flags = rf::KEEP_CACHE;
      break;
    case 2:
      r.flags = rf::DIRECT_IO;
      break;
    case 3:
      r.flags = rf::DIRECT_IO | rf::PARALLEL_DIRECT_WRITES;
      break;
    case 4:
      r.flags = rf::PASSTHROUGH;
      break;
    case 5:
      r.flags = rf::PASSTHROUGH | rf::DIRECT_IO | rf::PARALLEL_DIRECT_WRITES;
      break;
    case 6:
      r.flags = rf::PASSTHROUGH | rf::KEEP_CACHE;
      break;
    case 7:
      r.flags = rf::PASSTHROUGH | rf::NOFLUSH;
      break;
    case 8:
      r.kind = ReplySpec::Kind::Error;
      r.error = EACCES;
      return r;
    case 9:
      r.kind = ReplySpec::Kind::Enosys;
      return r;
    default: {
      static constexpr std::uint32_t kOdd[] = {rf::NOFLUSH, rf::NONSEEKABLE, rf::STREAM,
                                               rf::CACHE_DIR, rf::DIRECT_IO | rf::NOFLUSH};
      r.flags = kOdd[rng_.below(std::size(kOdd))];
      break;
    }
    }
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
    } else if (rng_.chance(1, 60) && !backings_.empty()) {
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
    const std::size_t f = rng_.weighted({50, 30, 15, created_ ? 5u : 0u});
    return static_cast<int>(f);
  }

  void open_file(Op op) {
    Statement s;
    s.op = op;
    s.handle = static_cast<int>(handles_.size());
    handles_.emplace_back();
    HandleState &h = handles_.back();
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
    const Outcome o = emit(s);
    HandleState &after = handles_[static_cast<std::size_t>(s.handle)];
    if (o.kind == Outcome::Kind::Blocks)
      after.pending = true;
    else if (o.kind == Outcome::Kind::Ok)
      after.fd_open = true;
  }

  void mmap() {
    const auto h = some_handle();
    if (!h)
      return;
    Statement s;
    s.op = Op::Mmap;
    s.mapping = static_cast<int>(mappings_.size());
    mappings_.emplace_back();
    s.handle = *h;
    s.shared = rng_.chance(1, 2);
    const Outcome o = emit(s);
    MappingState &m = mappings_[static_cast<std::size_t>(s.mapping)];
    if (o.kind == Outcome::Kind::Blocks)
      m.pending = true;
    else if (o.kind == Outcome::Kind::Ok)
      m.mapped = true;
  }

  void write_begin(const std::vector<int> &open) {
    // Held writes are what the io modes race against: prefer parallel direct writes.
    std::vector<unsigned> w;
    for (int h : open) {
      const HandleState &hs = handles_[static_cast<std::size_t>(h)];
      unsigned weight = hs.access == AccessMode::ReadOnly ? 0u : 1u;
      if (weight && is_dio_pdw(hs.reply))
        weight = 8;
      else if (weight && (hs.reply.flags & rf::DIRECT_IO))
        weight = 3;
      w.push_back(weight);
    }
    Statement s;
    s.op = Op::WriteBegin;
    s.write = static_cast<int>(writes_.size());
    writes_.emplace_back();
    s.handle = open[rng_.weighted(w)];
    const Outcome o = emit(s);
    WriteState &ws = writes_[static_cast<std::size_t>(s.write)];
    if (o.kind == Outcome::Kind::Blocks)
      ws.pending = true;
    else if (o.kind == Outcome::Kind::Ok)
      ws.in_flight = true;
  }

  void await(std::pair<NameKind, int> what) {
    Statement s;
    s.op = Op::Await;
    s.await_kind = what.first;
    s.await_slot = what.second;
    const Outcome o = emit(s);
    if (o.kind == Outcome::Kind::Blocks)
      return;
    const auto i = static_cast<std::size_t>(what.second);
    const bool ok = o.kind != Outcome::Kind::Errno && o.kind != Outcome::Kind::Invalid;
    switch (what.first) {
    case NameKind::Handle:
      handles_[i].pending = false;
      handles_[i].fd_open = ok;
      break;
    case NameKind::Mapping:
      mappings_[i].pending = false;
      mappings_[i].mapped = ok;
      break;
    case NameKind::Write:
      writes_[i].pending = false;
      writes_[i].in_flight = o.kind == Outcome::Kind::Ok;
      break;
    case NameKind::Backing:
      break;
    }
  }

  // ---- the trace as the parser would have built it ------------------------------------------

  Trace finish(std::vector<std::optional<Outcome>> *outcomes) {
    Trace t;
    t.path = "generated.trace";
    t.profile = opts_.profile;
    t.profile_given = true;
    t.names.backings.assign(scratch_.names.backings.begin(),
                            scratch_.names.backings.begin() +
                                static_cast<std::ptrdiff_t>(backings_.size()));
    t.names.handles.assign(scratch_.names.handles.begin(),
                           scratch_.names.handles.begin() +
                               static_cast<std::ptrdiff_t>(handles_.size()));
    t.names.mappings.assign(scratch_.names.mappings.begin(),
                            scratch_.names.mappings.begin() +
                                static_cast<std::ptrdiff_t>(mappings_.size()));
    t.names.writes.assign(scratch_.names.writes.begin(),
                          scratch_.names.writes.begin() +
                              static_cast<std::ptrdiff_t>(writes_.size()));
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
  Bindings bindings_;
  std::vector<Statement> stmts_;
  std::vector<Outcome> outcomes_;
  std::vector<BackingState> backings_;
  std::vector<HandleState> handles_;
  std::vector<MappingState> mappings_;
  std::vector<WriteState> writes_;
  unsigned scale_[static_cast<std::size_t>(Act::Count)] = {};
  std::int32_t max_id_ = 0;
  int failed_backing_opens_ = 0;
  bool mounted_ = false;
  bool aborted_ = false;
  bool dev_open_ = true;
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
