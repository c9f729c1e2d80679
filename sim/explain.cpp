// `fpsim explain`: see sim/explain.h. Every rule below mirrors one branch of model/*.cpp, which
// is named after the kernel function it models; the branch is recognised from the statement,
// the outcome and the model state before and after the step, never by changing the model.
#include "sim/explain.h"

#include "sim/printer.h"
#include "sim/sim_executor.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <fmt/format.h>
#include <map>

namespace fpsim::sim {

using namespace model;

namespace {

// ---- words -----------------------------------------------------------------------------------

std::string join(const std::vector<std::string> &v, std::string_view sep = ", ") {
  std::string s;
  for (const auto &x : v) {
    if (!s.empty())
      s += sep;
    s += x;
  }
  return s;
}

// "W1", "W1 and W2", "W1, W2 and W3"
std::string and_list(const std::vector<std::string> &v) {
  if (v.empty())
    return "nobody";
  if (v.size() == 1)
    return v[0];
  std::vector<std::string> head(v.begin(), v.end() - 1);
  return join(head) + " and " + v.back();
}

std::string err(int e) { return errno_name(e); }

template <typename Id>
std::string name_in(const std::vector<std::string> &v, Id id, std::string_view kind) {
  const auto i = idx(id);
  if (i < v.size() && !v[i].empty())
    return v[i];
  return fmt::format("{}#{}", kind, i);
}

std::string fb_name(const ObjectNames &n, FbId b) { return name_in(n.fbs, b, "fb"); }

std::optional<InodeId> inode_of(const Model &m, int slot) {
  for (std::uint32_t i = 0; i < m.inodes.size(); ++i)
    if (m.inodes[i].name == static_cast<std::uint32_t>(slot))
      return InodeId{i};
  return std::nullopt;
}

// The inode as it was before a step that may have instantiated it (fuse_iget).
const FuseInode &inode_before(const Model &b, InodeId i) {
  static const FuseInode blank{};
  return idx(i) < b.inodes.size() ? b.inodes[idx(i)] : blank;
}

std::string io_mode(const FuseInode &fi, const ObjectNames &n) {
  if (fi.fb)
    return fmt::format("PT({},{})", fb_name(n, *fi.fb), -fi.iocachectr);
  if (fi.iocachectr > 0)
    return fmt::format("CACHED({})", fi.iocachectr);
  if (fi.iocachectr < 0)
    return fmt::format("DIO({})", -fi.iocachectr);
  return "NEUTRAL";
}

std::string ctr_change(std::int32_t x, std::int32_t y) {
  return x == y ? fmt::format("iocachectr stays {}", x) : fmt::format("iocachectr {} -> {}", x, y);
}

std::string refs_change(std::int32_t x, std::int32_t y) {
  return x == y ? fmt::format("refcount stays {}", x) : fmt::format("refcount {} -> {}", x, y);
}

std::string source_of(const Trace &t, const FuseBacking &b) {
  auto file = [&](std::string prefix) {
    return b.source < t.names.backing_files.size() ? prefix + t.names.backing_files[b.source]
                                                   : std::string("a backing file");
  };
  switch (b.kind) {
  case BackingFdKind::Regular:
    return file("");
  case BackingFdKind::OPath:
    return file("opath:");
  case BackingFdKind::Dir:
    return "a directory";
  case BackingFdKind::Pipe:
    return "a pipe";
  case BackingFdKind::Socket:
    return "a socket";
  case BackingFdKind::DevNull:
    return "/dev/null";
  case BackingFdKind::BadFd:
    return "fd -1";
  }
  return "?";
}

// The reply's flags as the trace would write them ("passthrough|keep_cache"), for this profile.
std::string flag_words(std::uint32_t f, KernelProfile p) {
  std::vector<std::string> w;
  for (int bit = 0; bit < 32; ++bit) {
    const std::uint32_t m = 1u << bit;
    if (!(f & m))
      continue;
    if (m == fopen_passthrough(p))
      w.emplace_back("passthrough");
    else if (m == fopen::DIRECT_IO)
      w.emplace_back("direct_io");
    else if (m == fopen::KEEP_CACHE)
      w.emplace_back("keep_cache");
    else if (m == fopen::NONSEEKABLE)
      w.emplace_back("nonseekable");
    else if (m == fopen::CACHE_DIR)
      w.emplace_back("cache_dir");
    else if (m == fopen::STREAM)
      w.emplace_back("stream");
    else if (m == fopen::NOFLUSH)
      w.emplace_back("noflush");
    else if (m == fopen::PARALLEL_DIRECT_WRITES)
      w.emplace_back("parallel_direct_writes");
    else if (p == KernelProfile::V15 && m == kV15FopenCacheIo)
      w.emplace_back("bit:7 (the seed's internal FOPEN_CACHE_IO)");
    else
      w.push_back(fmt::format("bit:{}", bit));
  }
  return w.empty() ? std::string("cached (no flags)") : join(w, "|");
}

// ---- who holds what --------------------------------------------------------------------------

std::vector<std::string> cached_holders(const Model &m, InodeId i, const ObjectNames &n) {
  std::vector<std::string> v;
  for (std::uint32_t f = 0; f < m.files.size(); ++f)
    if (m.files[f].inode == i && !m.files[f].released && m.files[f].iomode == IoMode::Cached)
      v.push_back(n.file(FileId{f}));
  return v;
}

// The names of the writes on inode i that satisfy pred, in creation order.
template <typename Pred>
std::vector<std::string> writes_where(const Model &m, InodeId i, const ObjectNames &n, Pred pred) {
  std::vector<std::string> v;
  for (std::uint32_t w = 0; w < m.writes.size(); ++w)
    if (m.writes[w].inode == i && pred(m.writes[w]))
      v.push_back(n.write(WriteId{w}));
  return v;
}

std::vector<std::string> counted_writes(const Model &m, InodeId i, const ObjectNames &n) {
  return writes_where(m, i, n, [](const model::Write &w) { return w.counted && !w.done; });
}

// Passthrough files, then parallel direct writes in flight.
std::vector<std::string> uncached_holders(const Model &m, InodeId i, const ObjectNames &n) {
  std::vector<std::string> v;
  for (std::uint32_t f = 0; f < m.files.size(); ++f)
    if (m.files[f].inode == i && !m.files[f].released && m.files[f].iomode == IoMode::Uncached)
      v.push_back(n.file(FileId{f}));
  for (std::string &w : counted_writes(m, i, n))
    v.push_back(std::move(w));
  return v;
}

std::vector<std::string> lock_holders(const Model &m, InodeId i, const ObjectNames &n) {
  return writes_where(m, i, n, [](const model::Write &w) { return w.locked && !w.done; });
}

std::vector<std::string> folio_lockers(const Model &m, InodeId i, const ObjectNames &n) {
  return writes_where(m, i, n, [](const model::Write &w) { return w.folio_locked; });
}

std::string write_end_list(const std::vector<std::string> &writes) {
  std::vector<std::string> v;
  for (const auto &w : writes)
    v.push_back("write_end " + w);
  return and_list(v);
}

// ---- waits -----------------------------------------------------------------------------------

enum class Wait : std::uint8_t { CacheIo, PageLock, InodeLock, TruncateLock, Other };

// Classified with if-chains so that a wait the model adds later lands in Other, not in a
// compile error.
Wait wait_of(const Model &m, const Task &t) {
  if (t.kind == TaskKind::OpenCachedIoWait || t.kind == TaskKind::MmapCachedIoWait)
    return Wait::CacheIo;
  if (t.kind == TaskKind::OpenInvalidateWait || t.kind == TaskKind::ReadPageWait ||
      t.kind == TaskKind::MmapInvalidateWait)
    return Wait::PageLock;
  if (t.kind == TaskKind::WriteLockWait)
    return Wait::InodeLock;
  if (m.file(t.file).f_flags.o_trunc)
    return Wait::TruncateLock;
  return Wait::Other;
}

// What the explainer remembers about a call that blocked.
struct TaskNote {
  std::string name; // the H, M or W of the statement that blocked
  Op op = Op::Open;
  int line = 0;
  int done_line = -1;
  std::string rule; // of its completion
  std::string why;
  std::string outcome;
};

std::string op_word(Op op) {
  switch (op) {
  case Op::Open:
  case Op::Create:
    return "open";
  case Op::Read:
    return "read";
  case Op::Write:
  case Op::WriteBegin:
    return "write";
  case Op::Mmap:
    return "mmap";
  case Op::Init:
  case Op::BackingOpen:
  case Op::BackingClose:
  case Op::Opendir:
  case Op::Munmap:
  case Op::Close:
  case Op::WriteEnd:
  case Op::Await:
  case Op::Abort:
  case Op::Umount:
  case Op::DevClose:
  case Op::Check:
    break;
  }
  return std::string(op_name(op));
}

struct Why {
  std::string rule;
  std::string why;
};

// Why a sleeping call sleeps, and what will wake it.
Why wait_reason(const Model &m, TaskId id, const ObjectNames &n, Op op) {
  const Task &task = m.tasks.at(idx(id));
  const std::string iname = n.inode(task.inode);
  const FuseInode &fi = m.inode(task.inode);
  const std::string fname = n.file(task.file);
  switch (wait_of(m, task)) {
  case Wait::CacheIo: {
    const bool mmap = task.kind == TaskKind::MmapCachedIoWait;
    const std::vector<std::string> writes = counted_writes(m, task.inode, n);
    const std::vector<std::string> all = uncached_holders(m, task.inode, n);
    std::string who =
        writes.size() == 1
            ? fmt::format("the parallel direct write {} in flight holds an uncached reference "
                          "({})",
                          and_list(writes), io_mode(fi, n))
            : fmt::format("the parallel direct writes {} in flight hold uncached references "
                          "({})",
                          and_list(writes), io_mode(fi, n));
    std::string wake = fmt::format("it wakes when {} ({})",
                                   writes.size() == 1 ? "it ends" : "the last of them ends",
                                   write_end_list(writes));
    if (all.size() != writes.size()) {
      // The seed waited for every uncached reference, passthrough files included.
      who =
          fmt::format("{} {} ({}); the seed waits for every uncached reference, passthrough "
                      "files included",
                      and_list(all),
                      all.size() == 1 ? "holds an uncached reference" : "hold uncached references",
                      io_mode(fi, n));
      wake = fmt::format("it wakes when all of them are gone (close, write_end)");
    }
    return {"fuse_file_cached_io_open",
            fmt::format("{} needs a cached io reference on inode {}, but {}: a cached user must "
                        "not appear while uncached io bypasses the page cache, so the {} sleeps "
                        "on direct_io_waitq (uninterruptibly) until iocachectr returns to 0; "
                        "FUSE_I_CACHE_IO_MODE is set meanwhile so that new parallel writes take "
                        "the inode lock exclusively and cannot starve it; {}",
                        mmap ? fmt::format("a shared mapping of direct_io file {}", fname)
                             : fmt::format("the cached open {}", fname),
                        iname, who, mmap ? "mmap" : "open", wake)};
  }
  case Wait::PageLock: {
    const std::vector<std::string> lockers = folio_lockers(m, task.inode, n);
    const std::string locked = fmt::format(
        "the page at offset 0 of {} is locked by {}, a write-through WRITE the server holds (the "
        "page was not uptodate, so fuse_perform_write keeps it locked until the reply)",
        iname, and_list(lockers));
    if (task.kind == TaskKind::ReadPageWait)
      return {"fuse_cache_read_iter -> filemap_read",
              fmt::format("{} reads through the page cache, and {}; the read sleeps on the page "
                          "lock until the server answers ({})",
                          fname, locked, write_end_list(lockers))};
    if (task.kind == TaskKind::MmapInvalidateWait)
      return {"fuse_file_mmap -> invalidate_inode_pages2",
              fmt::format("mmap of direct_io file {} first invalidates the page cache of {}, and "
                          "{}; mmap sleeps on the page lock until the server answers ({})",
                          fname, iname, locked, write_end_list(lockers))};
    return {"fuse_open -> invalidate_inode_pages2",
            fmt::format("the reply lacks FOPEN_KEEP_CACHE, so open invalidates the page cache of "
                        "{} after its io mode is settled, and {}; open sleeps on the page lock "
                        "until the server answers ({})",
                        iname, locked, write_end_list(lockers))};
  }
  case Wait::InodeLock:
  case Wait::TruncateLock: {
    const bool trunc = wait_of(m, task) == Wait::TruncateLock;
    const bool exclusive = trunc || m.writes.at(idx(task.write)).exclusive;
    const std::vector<std::string> holders = lock_holders(m, task.inode, n);
    std::vector<std::string> before;
    if (!trunc)
      for (std::uint32_t w = 0; w < idx(task.write); ++w)
        if (m.writes[w].inode == task.inode && !m.writes[w].locked && !m.writes[w].done)
          before.push_back(n.write(WriteId{w}));
    std::string held =
        holders.empty()
            ? std::string("is free, but")
            : fmt::format("is held {} by {}{}", fi.i_rwsem.writer ? "exclusively" : "shared",
                          and_list(holders), before.empty() ? "" : ", and");
    std::string queue = before.empty()
                            ? ""
                            : fmt::format(" {} queued for it earlier (i_rwsem is served in order)",
                                          and_list(before));
    const std::string what = trunc
                                 ? fmt::format("O_TRUNC: open {} truncates {} (SETATTR) under "
                                               "its inode lock (do_truncate)",
                                               fname, iname)
                                 : fmt::format("the write on {} needs the inode lock (i_rwsem) "
                                               "of {} {}",
                                               fname, iname, exclusive ? "exclusively" : "shared");
    return {trunc ? "do_truncate -> inode_lock"
                  : (exclusive ? "fuse_file_write_iter -> inode_lock"
                               : "fuse_dio_lock -> inode_lock_shared"),
            fmt::format("{}; the lock {}{}; it sleeps until the lock is free ({})", what, held,
                        queue, holders.empty() ? "its turn" : write_end_list(holders))};
  }
  case Wait::Other:
    break;
  }
  return {"fuse_run_woken_tasks", fmt::format("{} {} sleeps in the kernel", op_word(op), fname)};
}

std::string wait_short(const Model &m, const Task &task, const ObjectNames &n) {
  const std::string iname = n.inode(task.inode);
  switch (wait_of(m, task)) {
  case Wait::CacheIo:
    return fmt::format("direct_io_waitq of {} (iocachectr < 0)", iname);
  case Wait::PageLock:
    return fmt::format("the page lock of {} (held write)", iname);
  case Wait::InodeLock:
  case Wait::TruncateLock:
    return fmt::format("the inode lock of {}", iname);
  case Wait::Other:
    break;
  }
  return "a wait queue";
}

// ---- the step being explained ----------------------------------------------------------------

struct Step {
  const Trace &t;
  const Statement &s;
  const Outcome &o;
  const Bindings &bind;
  const Model &b; // before
  const Model &a; // after
  const ObjectNames &n;
  KernelProfile p;
  std::optional<FileId> fd;      // the statement's handle's open file, before the step
  std::optional<VmaId> vma;      // the statement's mapping, before the step
  std::optional<WriteId> write;  // the statement's held write, before the step
  std::optional<TaskId> awaited; // the sleeping call an await collects
  const std::vector<std::optional<FileId>> *fds = nullptr; // per handle, after the step
};

struct Explained {
  std::string rule;
  std::string why;
  std::vector<std::string> effects;
};

// Effects worth reporting beside the rule, by kind.
enum : unsigned {
  kReleases = 1u << 0,
  kInodes = 1u << 1,
  kFbRefs = 1u << 2,
  kWakeups = 1u << 3,
  kWritesEnded = 1u << 4,
  kConn = 1u << 5,
  kAll = 0xffu,
};

class Explainer {
public:
  explicit Explainer(const Trace &t) : t_(t) {}

  std::vector<TaskNote> &notes() { return notes_; }

  Explained explain(const Step &st) {
    Explained e;
    if (st.o.kind == Outcome::Kind::Invalid) {
      e.rule = "fpsim: statement cannot run";
      e.why = st.o.message;
      return e;
    }
    unsigned mask = kAll;
    std::optional<FileId> skip_release;
    Why w;
    switch (st.s.op) {
    case Op::Init:
      w = init(st);
      break;
    case Op::BackingOpen:
      w = backing_open(st);
      mask = kWakeups;
      break;
    case Op::BackingClose:
      w = backing_close(st);
      mask = kWakeups;
      break;
    case Op::Open:
    case Op::Create:
      w = open(st);
      mask = kReleases | kWakeups | kConn;
      last_open_rule_ = st.o.internal_err ? w.rule : "";
      last_open_line_ = st.s.line;
      break;
    case Op::Opendir:
      w = opendir(st);
      mask = kWakeups;
      break;
    case Op::Read:
      w = read(st);
      mask = kWakeups;
      break;
    case Op::Write:
    case Op::WriteBegin:
      w = write(st);
      mask = kReleases | kWakeups | kFbRefs;
      break;
    case Op::Mmap:
      w = mmap(st);
      mask = kWakeups;
      break;
    case Op::Munmap:
      w = munmap(st, &skip_release);
      break;
    case Op::Close:
      w = close(st, &skip_release);
      break;
    case Op::WriteEnd:
      w = write_end(st);
      break;
    case Op::Await:
      w = await(st);
      if (st.awaited && st.o.kind != Outcome::Kind::Blocks) {
        const Op op = notes_.at(idx(*st.awaited)).op;
        if (op == Op::Open || op == Op::Create) {
          last_open_rule_ = st.o.internal_err ? w.rule : "";
          last_open_line_ = st.s.line;
        }
      }
      break;
    case Op::Abort:
      w = abort(st);
      break;
    case Op::Umount:
      w = umount(st);
      break;
    case Op::DevClose:
      w = dev_close(st);
      break;
    case Op::Check:
      w = {"fpsim check", "checks go through explain_check"};
      break;
    }
    e.rule = std::move(w.rule);
    e.why = std::move(w.why);
    e.effects = effects(st, mask, skip_release, e.why);
    return e;
  }

  Explained explain_check(const Statement &s, const CheckResult &r, const Model &m,
                          const ObjectNames &n, const std::vector<std::optional<FbId>> &fbs) {
    Explained e;
    const CheckSpec &c = s.check;
    std::string verdict;
    switch (r.kind) {
    case CheckResult::Kind::Pass:
      verdict = "holds";
      break;
    case CheckResult::Kind::Fail:
      verdict = "FAILS: " + r.message;
      break;
    case CheckResult::Kind::NotObservable:
      verdict = "not observable";
      break;
    }
    switch (c.kind) {
    case CheckKind::Inode: {
      const std::string name = t_.names.mount_files.at(static_cast<std::size_t>(c.slot));
      const auto id = inode_of(m, c.slot);
      const FuseInode blank{};
      const FuseInode &fi = id ? m.inode(*id) : blank;
      e.rule = "struct fuse_inode: iocachectr, fi->fb, FUSE_I_CACHE_IO_MODE";
      e.why = fmt::format("inode {} is {} (iocachectr {}, fb {}, FUSE_I_CACHE_IO_MODE {}){}: the "
                          "assertion {}",
                          name, io_mode(fi, n), fi.iocachectr,
                          fi.fb ? fb_name(n, *fi.fb) : std::string("none"),
                          fi.cache_io_mode ? 1 : 0, id ? "" : " (never looked up)", verdict);
      break;
    }
    case CheckKind::Backing: {
      const std::string name = t_.names.backings.at(static_cast<std::size_t>(c.slot));
      e.rule = "struct fuse_backing: refcount_t count";
      const auto &fb = fbs.at(static_cast<std::size_t>(c.slot));
      if (!fb) {
        e.why = fmt::format("{} was never registered: the assertion {}", name, verdict);
        break;
      }
      const FuseBacking &b = m.backing(*fb);
      std::vector<std::string> holders;
      for (const auto &[id, f] : m.fc.backing_files_map)
        if (f == *fb)
          holders.push_back(fmt::format("the id map (id {})", id));
      for (std::uint32_t i = 0; i < m.inodes.size(); ++i)
        if (!m.inodes[i].evicted && m.inodes[i].fb == *fb)
          holders.push_back("inode " + n.inode(InodeId{i}));
      e.why = b.freed ? fmt::format("{} is freed (refcount 0): the assertion {}", name, verdict)
                      : fmt::format("{} has refcount {}, one reference per holder: {}; the "
                                    "assertion {}",
                                    name, b.count.value(), and_list(holders), verdict);
      break;
    }
    case CheckKind::File: {
      const std::string &h = t_.names.handles.at(static_cast<std::size_t>(c.slot));
      e.rule = "struct fuse_file: ff->iomode, ff->passthrough";
      std::optional<FileId> f;
      for (std::uint32_t i = 0; i < m.files.size() && i < n.files.size(); ++i)
        if (n.files[i] == h)
          f = FileId{i};
      if (!f) {
        e.why = fmt::format("{} was never opened: the assertion {}", h, verdict);
        break;
      }
      const FuseFile &ff = m.file(*f);
      const char *mode = ff.iomode == IoMode::Cached     ? "cached"
                         : ff.iomode == IoMode::Uncached ? "uncached"
                                                         : "none";
      e.why = fmt::format("the FUSE file opened as {} has ff->iomode {}, {}, and is {}: the "
                          "assertion {}",
                          h, mode,
                          ff.passthrough ? "a per-file backing_file (passthrough)"
                                         : "no backing_file (not passthrough)",
                          ff.released ? "released" : "not released yet", verdict);
      break;
    }
    case CheckKind::Conn:
      e.rule = "struct fuse_conn: passthrough, connected, no_open";
      e.why = fmt::format("the connection has passthrough={} connected={} no_open={}: the "
                          "assertion {}",
                          m.fc.passthrough ? 1 : 0, m.fc.connected ? 1 : 0, m.fc.no_open ? 1 : 0,
                          verdict);
      break;
    case CheckKind::Last:
      e.rule = last_open_rule_.empty() ? "fuse_file_io_open" : last_open_rule_;
      e.why = last_open_rule_.empty()
                  ? fmt::format("no io-mode rule refused the last open or create{}, so the "
                                "internal errno is 0: the assertion {}",
                                last_open_line_ ? fmt::format(" (line {})", last_open_line_) : "",
                                verdict)
                  : fmt::format("the last open or create (line {}) was refused by {}, whose "
                                "errno open(2) hid behind EIO: the assertion {}",
                                last_open_line_, last_open_rule_, verdict);
      break;
    case CheckKind::Drained:
      e.rule = "invariant I11 (drain)";
      e.why = fmt::format("no fb is alive, every iocachectr is 0 and every per-file "
                          "backing_file and credential reference was put: the assertion {}",
                          verdict);
      break;
    }
    return e;
  }

private:
  // ---- init and the ioctls ----

  Why init(const Step &st) {
    const InitSpec &i = st.s.init;
    const Model &a = st.a;
    std::string why;
    if (!i.passthrough)
      why = "the INIT reply does not offer FUSE_PASSTHROUGH: passthrough stays off, so "
            "BACKING_OPEN will be refused with EPERM";
    else if (i.no_init_ext)
      why = "FUSE_PASSTHROUGH sits in flags2, which the kernel ignores without FUSE_INIT_EXT "
            "in flags: passthrough stays off (no error: INIT is never rejected)";
    else if (i.max_stack_depth < 1 || i.max_stack_depth > kFilesystemMaxStackDepth)
      why = fmt::format("max_stack_depth {} is outside 1..FILESYSTEM_MAX_STACK_DEPTH (2): "
                        "passthrough is silently left off",
                        i.max_stack_depth);
    else if (i.writeback_cache && !a.fc.passthrough)
      why = "since 6.11 passthrough and the writeback cache exclude each other: with "
            "writeback_cache in the reply passthrough is silently left off";
    else
      why = fmt::format("the reply offers FUSE_PASSTHROUGH with max_stack_depth {}: passthrough "
                        "is enabled ({})",
                        i.max_stack_depth,
                        i.max_stack_depth == 1
                            ? "backing files must sit on a plain, unstacked filesystem"
                            : "backing files may sit on a filesystem stacked one level deep, "
                              "such as another FUSE mount");
    std::vector<std::string> more;
    if (a.fc.writeback_cache)
      more.emplace_back("writeback cache on: buffered writes only dirty the page cache");
    if (a.fc.direct_io_allow_mmap)
      more.emplace_back("FUSE_DIRECT_IO_ALLOW_MMAP: direct_io files may be mapped shared");
    else if (i.direct_io_allow_mmap)
      more.emplace_back("FUSE_DIRECT_IO_ALLOW_MMAP is in flags2 too and is ignored");
    if (!more.empty())
      why += "; " + join(more, "; ");
    return {"process_init_reply",
            "mount(2) with FUSE_DEV_IOC_SYNC_INIT: the INIT reply is processed before mount "
            "returns; " +
                why};
  }

  Why backing_open(const Step &st) {
    const Statement &s = st.s;
    const Model &b = st.b;
    const KernelProfile p = st.p;
    const std::string &name = t_.names.backings.at(static_cast<std::size_t>(s.backing));
    if (st.o.kind == Outcome::Kind::Id) {
      const FbId fb{static_cast<std::uint32_t>(st.a.backings.size() - 1)};
      const FuseBacking &nb = st.a.backing(fb);
      const std::int32_t next = b.fc.idr_next;
      std::string cyclic;
      std::vector<std::string> closed;
      for (std::int32_t k = 1; k < next && closed.size() < 4; ++k)
        if (!fb_of_id(b, k))
          closed.push_back(std::to_string(k));
      if (nb.id != next)
        cyclic = fmt::format(" (the cursor stood at {}, which was taken)", next);
      else if (!closed.empty())
        cyclic = fmt::format(" and not id {} although it is free: ids are handed out cyclically, "
                             "a closed id is not reused before wrap-around",
                             and_list(closed));
      return {"fuse_backing_open",
              fmt::format("{} becomes a new backing object for {} with the caller's credentials; "
                          "idr_alloc_cyclic registered it as id {}{}; its refcount is 1: the id "
                          "map's reference",
                          name, source_of(t_, nb), nb.id, cyclic)};
    }
    const int e = st.o.err;
    const std::string E = err(e);
    auto refused = [&](std::string rule, std::string why) {
      return Why{std::move(rule), fmt::format("{} -> {}; {} is not registered", why, E, name)};
    };
    if (!b.fc.dev_open)
      return refused("fuse_dev_ioctl_backing_open",
                     "the server's /dev/fuse fd is closed (dev_close): there is no device to "
                     "issue the ioctl on");
    if (!b.fc.initialized)
      return refused(
          "fuse_dev_ioctl_backing_open -> fuse_get_dev",
          fmt::format("the /dev/fuse fd is not installed on a mounted connection yet "
                      "(no init): {}",
                      p == KernelProfile::V15 ? "the seed answers EINVAL" : "6.9+ answers EPERM"));
    if (!b.fc.passthrough)
      return refused("fuse_backing_open",
                     "passthrough was not negotiated at INIT (fc->passthrough is 0), so backing "
                     "files cannot be registered");
    if (s.unprivileged)
      return refused("fuse_backing_open",
                     "the caller lacks CAP_SYS_ADMIN in the initial user namespace; "
                     "registering a backing file needs it");
    if (s.map_flags != 0 || (p != KernelProfile::V15 && s.map_padding != 0))
      return refused("fuse_backing_open",
                     fmt::format("struct fuse_backing_map must have flags 0{}; this one has {}",
                                 p == KernelProfile::V15 ? "" : " and padding 0",
                                 s.map_flags ? fmt::format("flags={}", s.map_flags)
                                             : fmt::format("padding={}", s.map_padding)));
    switch (s.source) {
    case SourceKind::BadFd:
      return refused("fuse_backing_open", "fd -1 does not resolve to a file (fget_raw fails)");
    case SourceKind::OPath:
      if (p != KernelProfile::V6_18)
        return refused("fuse_backing_open",
                       "an O_PATH fd does not resolve with fget before 6.12 (6.12+ uses "
                       "fget_raw and accepts it)");
      break;
    case SourceKind::Dir:
      return refused("fuse_backing_open",
                     p == KernelProfile::V6_18
                         ? "since 6.17 only regular files may back a FUSE file; a directory "
                           "gives EISDIR"
                         : "a backing file needs f_op->read_iter and write_iter, which a "
                           "directory lacks");
    case SourceKind::Pipe:
    case SourceKind::Socket:
    case SourceKind::DevNull:
      if (p == KernelProfile::V6_18)
        return refused("fuse_backing_open",
                       "since 6.17 only regular files may back a FUSE file (a pipe, socket or "
                       "device gives EINVAL)");
      break;
    case SourceKind::File:
      break;
    }
    if (e == ELOOP)
      return refused("fuse_backing_open",
                     fmt::format("the backing file's filesystem is stacked as deep as "
                                 "fc->max_stack_depth ({}) allows or deeper",
                                 b.fc.max_stack_depth));
    if (e == ENOSPC)
      return refused("fuse_backing_open -> idr_alloc_cyclic",
                     "no free id is left in [1, INT_MAX]; the new fb is freed again");
    return refused("fuse_dev_ioctl_backing_open", "the ioctl failed");
  }

  std::optional<FbId> fb_of_id(const Model &m, std::int32_t id) const {
    for (const auto &[i, fb] : m.fc.backing_files_map)
      if (i == id)
        return fb;
    return std::nullopt;
  }

  // Which backing object once had this id, even if its id was closed since.
  std::optional<FbId> fb_ever_with_id(const Model &m, std::int32_t id) const {
    for (std::uint32_t i = 0; i < m.backings.size(); ++i)
      if (m.backings[i].id == id)
        return FbId{i};
    return std::nullopt;
  }

  Why backing_close(const Step &st) {
    const Statement &s = st.s;
    const Model &b = st.b;
    const Model &a = st.a;
    std::int32_t id = 0;
    std::string what;
    if (s.literal_id) {
      id = static_cast<std::int32_t>(*s.literal_id);
      what = fmt::format("id {}", *s.literal_id);
    } else {
      const auto &bound = st.bind.backing_ids.at(static_cast<std::size_t>(s.backing));
      id = bound.value_or(0);
      what =
          fmt::format("{}'s id {}", t_.names.backings.at(static_cast<std::size_t>(s.backing)), id);
    }
    if (st.o.kind == Outcome::Kind::Errno) {
      const std::string E = err(st.o.err);
      if (!b.fc.dev_open)
        return {"fuse_dev_ioctl_backing_close",
                fmt::format("the server's /dev/fuse fd is closed (dev_close) -> {}", E)};
      if (!b.fc.initialized)
        return {"fuse_dev_ioctl_backing_close -> fuse_get_dev",
                fmt::format("the /dev/fuse fd is not installed on a mounted connection yet (no "
                            "init) -> {}",
                            E)};
      if (!b.fc.passthrough)
        return {
            "fuse_backing_close",
            fmt::format("passthrough was not negotiated at INIT (fc->passthrough is 0) -> {}", E)};
      if (s.unprivileged)
        return {
            "fuse_backing_close",
            fmt::format("the caller lacks CAP_SYS_ADMIN in the initial user namespace -> {}", E)};
      if (id <= 0)
        return {"fuse_backing_close",
                fmt::format("the u32 argument is read into an int: {} is not a valid id (ids are "
                            "1..INT_MAX) -> {}",
                            s.literal_id && static_cast<std::int32_t>(*s.literal_id) < 0
                                ? fmt::format("{} reads as {}, which", *s.literal_id, id)
                                : fmt::format("{}", id),
                            E)};
      const auto old = fb_ever_with_id(a, id);
      return {"fuse_backing_close",
              fmt::format("{} is not in the id map ({}) -> {}", what,
                          old ? fmt::format("{} was registered under it, but it was closed "
                                            "already or freed with the connection",
                                            fb_name(st.n, *old))
                              : std::string("no backing_open returned it"),
                          E)};
    }
    const auto fb = fb_of_id(b, id);
    if (!fb)
      return {"fuse_backing_close", fmt::format("{} is removed from the id map", what)};
    const std::int32_t before = b.backing(*fb).count.value();
    const FuseBacking &after = a.backing(*fb);
    std::vector<std::string> holders;
    for (std::uint32_t i = 0; i < a.inodes.size(); ++i)
      if (!a.inodes[i].evicted && a.inodes[i].fb == *fb)
        holders.push_back("inode " + st.n.inode(InodeId{i}));
    std::string rest;
    if (after.freed)
      rest = fmt::format("that was its last reference, so fuse_backing_free frees {} (its file "
                         "and credentials are put)",
                         fb_name(st.n, *fb));
    else
      rest = fmt::format("{} still holds it: an id in use is closed anyway (never EBUSY); open "
                         "passthrough files keep working, but new opens quoting id {} fail",
                         and_list(holders), id);
    return {"fuse_backing_close",
            fmt::format("removes {} from the id map and puts the map's reference on {} ({}); {}",
                        what, fb_name(st.n, *fb), refs_change(before, after.count.value()), rest)};
  }

  // ---- open, create, opendir ----

  std::string reply_text(const Step &st) const { return format_reply(st.s.reply, t_.names); }

  Why open(const Step &st) {
    const Statement &s = st.s;
    const Outcome &o = st.o;
    const Model &b = st.b;
    const Model &a = st.a;
    const bool create = s.op == Op::Create;
    const std::string &file = t_.names.mount_files.at(static_cast<std::size_t>(s.file));
    const std::string req = create ? "CREATE" : "OPEN";
    const std::string rule_open = create ? "fuse_create_open" : "fuse_file_open";
    if (a.files.size() == b.files.size()) {
      if (o.kind == Outcome::Kind::Errno) {
        const std::string E = err(o.err);
        if (!b.fc.mounted)
          return {"path_openat",
                  fmt::format("the FUSE mount is gone (umount): {} no longer resolves inside it "
                              "-> {}",
                              file, E)};
        if (!b.fc.connected)
          return {"fuse_get_req",
                  fmt::format("the connection was aborted (fc->connected is 0): the LOOKUP of "
                              "{} cannot be sent -> {}; only files opened before the abort keep "
                              "working",
                              file, E)};
        if (!create && o.err == ENOENT)
          return {"fuse_lookup",
                  fmt::format("{} does not exist in the mount yet (a later create makes it): "
                              "LOOKUP answers ENOENT",
                              file)};
        if (create && o.err == EEXIST)
          return {"open_last_lookups",
                  fmt::format("{} exists already and create uses O_CREAT|O_EXCL -> EEXIST; the "
                              "server never sees CREATE",
                              file)};
        if (s.reply.kind == ReplySpec::Kind::Error && o.err == s.reply.error)
          return {rule_open,
                  fmt::format("the server answered {} with {}: open(2) returns it as it is; the "
                              "server handed out no file handle, so no RELEASE follows",
                              req, E)};
        if (create && s.reply.kind == ReplySpec::Kind::Enosys)
          return {"fuse_create_open",
                  "the server does not implement CREATE (ENOSYS); the kernel's MKNOD+OPEN "
                  "fallback is not modelled"};
      }
      return {rule_open, fmt::format("{} returned {}", rule_open, format_outcome_detailed(o))};
    }
    const FileId f{static_cast<std::uint32_t>(a.files.size() - 1)};
    const FuseFile &ff = a.file(f);
    const InodeId ino = ff.inode;
    const FuseInode &before = inode_before(b, ino);
    const FuseInode &after = a.inode(ino);
    std::vector<std::string> pre;
    if (create)
      pre.push_back(
          fmt::format("the server created {} and answered CREATE with {}", file, reply_text(st)));
    const bool no_open = !create && b.fc.no_open;
    const bool enosys = !create && !no_open && s.reply.kind == ReplySpec::Kind::Enosys;
    if (no_open)
      pre.emplace_back("the server does not implement OPEN (fc->no_open, set by an earlier "
                       "ENOSYS): no OPEN is sent and the file gets FOPEN_KEEP_CACHE, whatever "
                       "the reply says");
    if (enosys)
      pre.emplace_back("the server answered OPEN with ENOSYS: fuse_file_open sets fc->no_open "
                       "(later opens never reach the server) and gives the file "
                       "FOPEN_KEEP_CACHE");
    if ((no_open || enosys) && ff.has_args)
      pre.emplace_back("6.18 keeps ff->args for such a file, so it is an ordinary cached open");
    auto with_pre = [&pre](Why w) {
      if (!pre.empty())
        w.why = join(pre, "; ") + "; " + w.why;
      return w;
    };
    if (o.kind == Outcome::Kind::Blocks) {
      const TaskId task{static_cast<std::uint32_t>(a.tasks.size() - 1)};
      Why w = wait_reason(a, task, st.n, s.op);
      if (after.iocachectr != before.iocachectr)
        w.why = fmt::format("fuse_file_cached_io_open already counted it ({}); then {}",
                            ctr_change(before.iocachectr, after.iocachectr), w.why);
      return with_pre(std::move(w));
    }
    if (o.kind == Outcome::Kind::Errno && o.internal_err)
      return with_pre(refusal(st, ff, before, ino));
    if (o.kind == Outcome::Kind::Errno) {
      if (o.err == ENOTCONN && ff.f_flags.o_trunc)
        return with_pre({"do_truncate",
                         "O_TRUNC: the SETATTR that truncates the file cannot be sent on an "
                         "aborted connection -> ENOTCONN; the new file is dropped"});
      return with_pre({rule_open, fmt::format("{} returned {}", rule_open, err(o.err))});
    }
    return with_pre(admitted(st, ff, before, after, ino));
  }

  Why refusal(const Step &st, const FuseFile &ff, const FuseInode &before, InodeId ino) {
    const Outcome &o = st.o;
    const Model &b = st.b;
    const KernelProfile p = st.p;
    const std::uint32_t pt = fopen_passthrough(p);
    const std::uint32_t flags = ff.open_flags;
    const std::string iname = st.n.inode(ino);
    const std::string mode = io_mode(before, st.n);
    const int internal = o.internal_err;
    Why w{"fuse_file_io_open", fmt::format("the io-mode setup failed with {}", err(internal))};
    bool looked_up = false; // a lookup reference and a per-file backing_file were taken
    const std::optional<FbId> looked_up_fb = fb_of_id(b, ff.backing_id);
    if (internal == EINVAL) {
      if (p == KernelProfile::V15 && (flags & kV15FopenCacheIo))
        w = {"fuse_file_io_open",
             "the seed keeps bit 7 as the kernel-internal FOPEN_CACHE_IO, and a server must not "
             "send it (its passthrough bit is 1<<8)"};
      else if (before.fb && !(flags & pt))
        w = {"fuse_file_io_open",
             fmt::format("inode {} is in passthrough mode ({}): it holds backing object {}, and "
                         "every open of it must be passthrough too, or its page cache would go "
                         "stale behind the backing file's back; this reply ({}) lacks "
                         "FOPEN_PASSTHROUGH",
                         iname, mode, fb_name(st.n, *before.fb),
                         st.s.reply.kind == ReplySpec::Kind::Flags && !st.b.fc.no_open
                             ? reply_text(st)
                             : flag_words(flags, p))};
      else if ((flags & pt) && !b.fc.passthrough)
        w = {"fuse_file_passthrough_open",
             "the reply asks for passthrough, but passthrough was not negotiated at INIT "
             "(fc->passthrough is 0)"};
      else if ((flags & pt) && (flags & ~fopen_passthrough_mask(p)))
        w = {"fuse_file_passthrough_open",
             fmt::format("FOPEN_PASSTHROUGH may only come with direct_io, "
                         "parallel_direct_writes and noflush (FOPEN_PASSTHROUGH_MASK); this reply "
                         "also has {}",
                         flag_words(flags & ~fopen_passthrough_mask(p), p))};
      else if ((flags & pt) && ff.backing_id <= 0)
        w = {"fuse_passthrough_open",
             fmt::format("the reply's backing_id {} is not a valid id (ids start at 1)",
                         ff.backing_id)};
    } else if (internal == ENOENT) {
      const auto old = fb_ever_with_id(st.a, ff.backing_id);
      w = {"fuse_passthrough_open",
           fmt::format("fuse_backing_lookup finds no backing object under id {}: {}", ff.backing_id,
                       old ? fmt::format("{} was registered under it, but that id was closed "
                                         "(backing_close)",
                                         fb_name(st.n, *old))
                           : std::string("no backing_open returned it"))};
    } else if (internal == ENXIO) {
      w = {"fuse_passthrough_open -> backing_file_open",
           fmt::format("{} wraps a socket, and a socket cannot be opened by path (sock_no_open); "
                       "the lookup reference is put back",
                       looked_up_fb ? fb_name(st.n, *looked_up_fb) : std::string("the fb"))};
    } else if (internal == EBUSY) {
      looked_up = true;
      std::string same;
      if (before.fb && looked_up_fb &&
          b.backing(*before.fb).kind == b.backing(*looked_up_fb).kind &&
          b.backing(*before.fb).source == b.backing(*looked_up_fb).source)
        same = fmt::format(" (both wrap {}, but backing objects are compared, not files)",
                           source_of(t_, b.backing(*looked_up_fb)));
      w = {"fuse_inode_uncached_io_start",
           fmt::format("inode {} already holds backing object {}; the reply names {}, another "
                       "object{}",
                       iname, before.fb ? fb_name(st.n, *before.fb) : std::string("?"),
                       looked_up_fb
                           ? fmt::format("{} (id {})", fb_name(st.n, *looked_up_fb), ff.backing_id)
                           : fmt::format("id {}", ff.backing_id),
                       same)};
    } else if (internal == ETXTBSY) {
      if (flags & pt) {
        looked_up = true;
        const std::vector<std::string> users = cached_holders(b, ino, st.n);
        w = {"fuse_inode_uncached_io_start",
             fmt::format("inode {} is in cached io mode ({}): {} use{} its page cache, which "
                         "reads and writes through the backing file would bypass",
                         iname, mode, and_list(users), users.size() == 1 ? "s" : "")};
      } else {
        w = {"fuse_file_cached_io_open",
             fmt::format("inode {} holds backing object {} (it entered passthrough mode): a "
                         "cached open is refused",
                         iname, before.fb ? fb_name(st.n, *before.fb) : std::string("?"))};
      }
    }
    std::string tail = fmt::format(" -> {}, which open(2) reports as EIO", err(internal));
    if (looked_up)
      tail += fmt::format("; the refused open puts back what it took (the lookup reference on "
                          "{} and its per-file backing_file)",
                          looked_up_fb ? fb_name(st.n, *looked_up_fb) : std::string("the fb"));
    if (o.release)
      tail += "; the kernel then sends the server a synchronous RELEASE for the file handle it "
              "had just handed out (fuse_sync_release), before open(2) returns";
    else
      tail += "; no RELEASE reaches the server: it does not implement OPEN";
    w.why += tail;
    return w;
  }

  Why admitted(const Step &st, const FuseFile &ff, const FuseInode &before, const FuseInode &after,
               InodeId ino) {
    const KernelProfile p = st.p;
    const std::uint32_t pt = fopen_passthrough(p);
    const std::uint32_t flags = ff.open_flags;
    const std::string iname = st.n.inode(ino);
    const std::string h = st.n.file(FileId{static_cast<std::uint32_t>(st.a.files.size() - 1)});
    std::vector<std::string> notes;
    if (st.s.reply.kind == ReplySpec::Kind::Flags && !(flags & fopen::DIRECT_IO) &&
        (wire_open_flags(st.s.reply, p) & fopen::PARALLEL_DIRECT_WRITES) && !st.b.fc.no_open)
      notes.emplace_back("FOPEN_PARALLEL_DIRECT_WRITES is dropped without FOPEN_DIRECT_IO");
    if (ff.has_args && !(flags & fopen::KEEP_CACHE) && before.folio_uptodate &&
        !after.folio_uptodate)
      notes.push_back(
          fmt::format("no FOPEN_KEEP_CACHE: the page cache of {} is invalidated", iname));
    if (ff.f_flags.o_trunc)
      notes.emplace_back("O_TRUNC: the file is truncated (SETATTR) under the inode lock");
    auto with_notes = [&notes](Why w) {
      if (!notes.empty())
        w.why += "; " + join(notes, "; ");
      return w;
    };
    if (!ff.has_args)
      return with_notes({"fuse_file_io_open",
                         fmt::format("ff->args is NULL, so fuse_file_io_open returns at once: {} "
                                     "takes no io-mode reference and reply flags are ignored "
                                     "(inode {} stays {})",
                                     h, iname, io_mode(after, st.n))});
    if ((flags & fopen::DIRECT_IO) && !(flags & pt))
      return with_notes(
          {"fuse_file_io_open",
           fmt::format("FOPEN_DIRECT_IO without FOPEN_PASSTHROUGH: reads and writes of {} go "
                       "straight to the server, past the page cache, so {} takes no io-mode "
                       "reference; inode {} stays {}{}",
                       h, h, iname, io_mode(after, st.n),
                       (flags & fopen::PARALLEL_DIRECT_WRITES)
                           ? "; FOPEN_PARALLEL_DIRECT_WRITES lets its writes share the inode lock"
                           : "")});
    if (flags & pt) {
      const std::optional<FbId> fb = ff.opened_with_fb ? ff.opened_with_fb : after.fb;
      const std::string fbn = fb ? fb_name(st.n, *fb) : std::string("the fb");
      const std::int32_t rb =
          fb && idx(*fb) < st.b.backings.size() ? st.b.backing(*fb).count.value() : 0;
      const std::int32_t ra = fb ? st.a.backing(*fb).count.value() : 0;
      std::string first = fmt::format(
          "fuse_passthrough_open looks up id {} ({}, +1 for the lookup) and opens a per-file "
          "backing_file on {} with {}'s open flags under {}'s credentials",
          ff.backing_id, fbn, fb ? source_of(t_, st.a.backing(*fb)) : std::string("its file"), h,
          fbn);
      std::string second;
      if (!before.fb) {
        second = fmt::format("fuse_inode_uncached_io_start: inode {} attaches {} and keeps the "
                             "lookup reference as its own ({}, {} {})",
                             iname, fbn, ctr_change(before.iocachectr, after.iocachectr), fbn,
                             refs_change(rb, ra));
        if (before.iocachectr < 0)
          second +=
              fmt::format("; {} in flight do{} not conflict: only a different backing "
                          "object would",
                          before.iocachectr == -1
                              ? std::string("the parallel direct write")
                              : fmt::format("the {} parallel direct writes", -before.iocachectr),
                          before.iocachectr == -1 ? "es" : "");
      } else {
        second = fmt::format("fuse_inode_uncached_io_start: inode {} already holds {}, so the "
                             "lookup reference is put back ({} {}); {}",
                             iname, fbn, fbn, refs_change(rb, ra),
                             ctr_change(before.iocachectr, after.iocachectr));
      }
      std::string route;
      if (flags & fopen::DIRECT_IO)
        route = "FOPEN_DIRECT_IO overrides passthrough for read and write, which still go to "
                "the server; mmap uses the backing file";
      else if (p == KernelProfile::V15)
        route = "the seed (5/9) opens in passthrough mode but still reads and writes through "
                "FUSE";
      else
        route = fmt::format("reads and writes of {} now go to the backing file, not the server", h);
      return with_notes({"fuse_passthrough_open + fuse_inode_uncached_io_start",
                         first + "; " + second + "; " + route});
    }
    std::string what;
    if (before.iocachectr == 0)
      what = fmt::format("first cached open, inode {} enters cached io mode ({}, "
                         "FUSE_I_CACHE_IO_MODE set)",
                         iname, ctr_change(before.iocachectr, after.iocachectr));
    else
      what = fmt::format("inode {} is already {}: one more cached reference ({})", iname,
                         io_mode(before, st.n), ctr_change(before.iocachectr, after.iocachectr));
    if (ff.f_flags.o_direct)
      what += "; O_DIRECT without FOPEN_DIRECT_IO is still a cached open (its io bypasses the "
              "page cache through fuse_direct_IO)";
    return with_notes({"fuse_file_cached_io_open", what});
  }

  Why opendir(const Step &st) {
    const Model &b = st.b;
    if (st.o.kind == Outcome::Kind::Errno) {
      if (!b.fc.mounted)
        return {"path_openat", fmt::format("the FUSE mount is gone (umount) -> {}", err(st.o.err))};
      if (!b.fc.connected)
        return {
            "fuse_get_req",
            fmt::format("the connection was aborted: OPENDIR cannot be sent -> {}", err(st.o.err))};
      return {
          "fuse_dir_open",
          fmt::format("the server answered OPENDIR with {}: opendir(3) returns it", err(st.o.err))};
    }
    std::string why = "OPENDIR never enters io modes: FOPEN_PASSTHROUGH and a backing id in its "
                      "reply are ignored, even an unknown id";
    if (b.fc.no_opendir)
      why = "the server does not implement OPENDIR (an earlier ENOSYS): no request is sent; " + why;
    else if (st.s.reply.kind == ReplySpec::Kind::Enosys)
      why = "the server answered OPENDIR with ENOSYS: fc->no_opendir is set and the directory "
            "opens without it; " +
            why;
    return {"fuse_dir_open", why};
  }

  // ---- io ----

  static Why ebadf_fd(const std::string &h) {
    return {"fdget", fmt::format("{} is not an open file descriptor (it was closed, or its open "
                                 "failed or has not returned) -> EBADF",
                                 h)};
  }

  std::string handle_name(const Step &st) const {
    return t_.names.handles.at(static_cast<std::size_t>(st.s.handle));
  }

  Why read(const Step &st) {
    const std::string h = handle_name(st);
    if (!st.fd)
      return ebadf_fd(h);
    const FuseFile &ff = st.b.file(*st.fd);
    const FuseInode &fi = st.b.inode(ff.inode);
    const std::string iname = st.n.inode(ff.inode);
    const Outcome &o = st.o;
    if (o.kind == Outcome::Kind::Errno) {
      if (o.err == EISDIR)
        return {"generic_read_dir", fmt::format("{} is a directory: read(2) -> EISDIR", h)};
      if (o.err == EBADF)
        return {"vfs_read", fmt::format("{} was opened write-only (no FMODE_READ) -> EBADF", h)};
      if (o.err == ENOTCONN)
        return {"fuse_get_req",
                fmt::format("the connection was aborted: the READ for {} cannot be sent -> "
                            "ENOTCONN (passthrough files keep working, cached files fail)",
                            h)};
      return {"fuse_file_read_iter", fmt::format("the read failed with {}", err(o.err))};
    }
    if (o.kind == Outcome::Kind::Blocks)
      return wait_reason(st.a, TaskId{static_cast<std::uint32_t>(st.a.tasks.size() - 1)}, st.n,
                         Op::Read);
    if (o.kind == Outcome::Kind::Backing) {
      const std::string fbn =
          ff.opened_with_fb ? fb_name(st.n, *ff.opened_with_fb) : std::string("its fb");
      return {"fuse_passthrough_read_iter",
              fmt::format("{} is a passthrough file: served by the backing file {} under {}'s "
                          "credentials; the server sees no READ{}",
                          h,
                          ff.opened_with_fb ? source_of(t_, st.b.backing(*ff.opened_with_fb))
                                            : std::string("(its backing_file)"),
                          fbn, st.b.fc.connected ? "" : " (it works even after the abort)")};
    }
    if (ff.open_flags & fopen::DIRECT_IO)
      return {
          "fuse_direct_read_iter",
          fmt::format("FOPEN_DIRECT_IO: the READ goes straight to the server{}",
                      ff.passthrough ? " (FOPEN_DIRECT_IO overrides passthrough for reads)" : "")};
    if (ff.passthrough && st.p == KernelProfile::V15)
      return {"fuse_cache_read_iter",
              "the seed (5/9) opens passthrough files but still reads them through FUSE and the "
              "page cache"};
    if (ff.f_flags.o_direct)
      return {"fuse_cache_read_iter -> fuse_direct_IO",
              "O_DIRECT: the read bypasses the page cache and a READ goes to the server"};
    if (fi.folio_uptodate)
      return {"fuse_cache_read_iter",
              fmt::format("through the page cache: the page of {} is uptodate, so it is copied "
                          "out without a request to the server",
                          iname)};
    return {"fuse_cache_read_iter",
            fmt::format("through FUSE and the page cache: the page of {} was not cached, so a "
                        "READ goes to the server and the page is now uptodate",
                        iname)};
  }

  // How a write went, from the state after it: lock, accounting, where the data went.
  // woken: the write completes a call that slept (the step's counter change is not its own).
  Why describe_write(const Step &st, WriteId id, Route route, int e, bool woken = false) {
    const Model &a = st.a;
    const Write &w = a.writes.at(idx(id));
    const FuseFile &ff = a.file(w.file);
    const std::string h = st.n.file(w.file);
    const std::string wn = st.n.write(id);
    const std::string iname = st.n.inode(w.inode);
    const FuseInode &fib = inode_before(st.b, w.inode);
    const FuseInode &fia = a.inode(w.inode);
    const KernelProfile p = st.p;
    if (route == Route::Backing)
      return {"fuse_passthrough_write_iter",
              fmt::format(
                  "{} is a passthrough file: the write goes to the backing file under "
                  "{}'s credentials, holding the inode lock of {} exclusively for the "
                  "call; the server sees no WRITE",
                  h, ff.opened_with_fb ? fb_name(st.n, *ff.opened_with_fb) : std::string("its fb"),
                  iname)};
    const bool held = w.held && w.in_flight && !w.done;
    if (ff.open_flags & fopen::DIRECT_IO) {
      std::string rule;
      std::string lock;
      const bool pdw = ff.open_flags & fopen::PARALLEL_DIRECT_WRITES;
      if (!w.exclusive) {
        rule = "fuse_dio_lock + fuse_inode_uncached_io_start";
        lock =
            fmt::format("FOPEN_PARALLEL_DIRECT_WRITES: fuse_dio_lock takes the inode lock of "
                        "{} shared and counts the write as an uncached reference with no "
                        "backing object (fuse_inode_uncached_io_start, fb NULL){}",
                        iname,
                        !held   ? std::string(", given back when it returns")
                        : woken ? fmt::format(" (inode {} is now {})", iname, io_mode(fia, st.n))
                                : fmt::format(": {}", ctr_change(fib.iocachectr, fia.iocachectr)));
        if (fia.fb || fib.fb)
          lock += "; on a passthrough inode that is fine since 6.9: only a different backing "
                  "object conflicts";
      } else if (!pdw) {
        rule = "fuse_dio_wr_exclusive_lock";
        lock = fmt::format("no FOPEN_PARALLEL_DIRECT_WRITES: the inode lock of {} is taken "
                           "exclusively and the write takes no io-mode reference",
                           iname);
      } else if (p == KernelProfile::V6_18 && fib.cache_io_mode) {
        rule = "fuse_dio_wr_exclusive_lock";
        lock = fmt::format("FUSE_I_CACHE_IO_MODE is set on {} (cached users are there or "
                           "waiting): since 6.12 the inode lock is taken exclusively and the "
                           "write is not counted",
                           iname);
      } else {
        rule = "fuse_dio_lock + fuse_inode_uncached_io_start";
        std::string refusal;
        if (fib.iocachectr > 0)
          refusal = fmt::format("ETXTBSY: inode {} is {}", iname, io_mode(fib, st.n));
        else if (p == KernelProfile::V15 && fib.fb)
          refusal = fmt::format("EBUSY: the seed refuses a NULL backing object on passthrough "
                                "inode {}",
                                iname);
        else
          refusal = "refused";
        lock = fmt::format("fuse_dio_lock took the lock shared, but "
                           "fuse_inode_uncached_io_start refused the uncached reference ({}), so "
                           "it retook the lock exclusively and does not count the write{}",
                           refusal,
                           p != KernelProfile::V6_18 && fib.cache_io_mode
                               ? " (before 6.12 the FUSE_I_CACHE_IO_MODE test fell through to "
                                 "here)"
                               : "");
      }
      std::string req;
      if (e == ENOTCONN)
        req = "the connection was aborted, so the WRITE cannot be sent -> ENOTCONN";
      else if (held)
        req = fmt::format("the server holds the WRITE in flight until write_end {}, and the "
                          "lock{} stay{} taken until then",
                          wn, w.counted ? " and the uncached reference" : "", w.counted ? "" : "s");
      else
        req = "the WRITE went to the server and was answered, which gave the lock back";
      if (ff.passthrough)
        req += " (FOPEN_DIRECT_IO overrides passthrough for writes)";
      return {rule, lock + "; " + req};
    }
    if (e == ENOTCONN)
      return {"fuse_get_req", "the connection was aborted: the WRITE cannot be sent -> ENOTCONN"};
    if (ff.f_flags.o_direct)
      return {"fuse_cache_write_iter -> fuse_direct_IO",
              fmt::format("O_DIRECT: the write bypasses the page cache and goes to the server "
                          "under the exclusive inode lock of {}{}",
                          iname,
                          held ? fmt::format("; the server holds it until write_end {}", wn)
                               : std::string(""))};
    if (a.fc.writeback_cache)
      return {"fuse_cache_write_iter",
              "writeback cache: the write only dirties the page cache; no WRITE reaches the "
              "server now, so nothing is held"};
    std::string why = fmt::format("write-through: fuse_cache_write_iter copies the data into "
                                  "the page cache of {} and sends a WRITE under the exclusive "
                                  "inode lock",
                                  iname);
    if (ff.passthrough && p == KernelProfile::V15)
      why = "the seed (5/9) still writes passthrough files through FUSE; " + why;
    if (!held)
      why += "; the server answered it and the lock was released";
    if (held) {
      why +=
          fmt::format("; the server holds it until write_end {}, and with it the inode lock", wn);
      if (w.folio_locked)
        why += "; the page was not uptodate, so it stays locked too: page-cache reads and "
               "invalidating opens of " +
               iname + " wait for the reply";
    }
    return {"fuse_perform_write", why};
  }

  Why write(const Step &st) {
    const std::string h = handle_name(st);
    if (!st.fd)
      return ebadf_fd(h);
    const Outcome &o = st.o;
    const bool new_write = st.a.writes.size() > st.b.writes.size();
    if (o.kind == Outcome::Kind::Errno && !new_write) {
      const FuseFile &ff = st.b.file(*st.fd);
      if (ff.is_dir)
        return {"vfs_write", fmt::format("{} is a directory -> EBADF", h)};
      return {"vfs_write", fmt::format("{} was opened read-only (no FMODE_WRITE) -> EBADF", h)};
    }
    if (!new_write)
      return {"fuse_file_write_iter", fmt::format("the write returned {}", format_outcome(o))};
    const WriteId id{static_cast<std::uint32_t>(st.a.writes.size() - 1)};
    if (o.kind == Outcome::Kind::Blocks)
      return wait_reason(st.a, TaskId{static_cast<std::uint32_t>(st.a.tasks.size() - 1)}, st.n,
                         st.s.op);
    const Route route = o.kind == Outcome::Kind::Backing ? Route::Backing
                        : o.kind == Outcome::Kind::Fuse  ? Route::Fuse
                                                         : Route::None;
    return describe_write(st, id, route, o.kind == Outcome::Kind::Errno ? o.err : 0);
  }

  Why write_end(const Step &st) {
    if (!st.write)
      return {"fuse_write_reply", "no WRITE of this name is held by the server"};
    const Write &wb = st.b.writes.at(idx(*st.write));
    const std::string wn = st.n.write(*st.write);
    const std::string iname = st.n.inode(wb.inode);
    if (wb.done)
      return {"fuse_abort_conn",
              fmt::format("the connection was aborted while the server held {}: end_requests "
                          "already ended it with {} and gave back its lock and references; the "
                          "late answer changes nothing",
                          wn, err(wb.result))};
    const FuseInode &fib = st.b.inode(wb.inode);
    const FuseInode &fia = st.a.inode(wb.inode);
    std::vector<std::string> parts;
    parts.push_back(fmt::format("the server answers {} and write(2) returns", wn));
    std::string rule;
    const bool page_cache = !(st.b.file(wb.file).open_flags & fopen::DIRECT_IO);
    if (wb.counted) {
      rule = "fuse_dio_unlock + fuse_inode_uncached_io_end";
      std::string end = fmt::format("fuse_dio_unlock drops the shared inode lock of {} and "
                                    "fuse_inode_uncached_io_end gives back the write's uncached "
                                    "reference ({})",
                                    iname, ctr_change(fib.iocachectr, fib.iocachectr + 1));
      if (fib.iocachectr == -1) {
        end += "; back at 0 it wakes direct_io_waitq";
        if (fib.fb && !fia.fb)
          end += fmt::format(" and detaches {} from the inode, putting the inode's reference",
                             fb_name(st.n, *fib.fb));
      }
      parts.push_back(end);
    } else {
      rule = page_cache ? "fuse_perform_write -> inode_unlock"
                        : "fuse_direct_write_iter -> inode_unlock";
      parts.push_back(fmt::format("the exclusive inode lock of {} is released", iname));
    }
    if (wb.folio_locked)
      parts.push_back("the page it kept locked is unlocked, waking page-lock sleepers first");
    return {rule, join(parts, "; ")};
  }

  Why mmap(const Step &st) {
    const std::string h = handle_name(st);
    const std::string mn = t_.names.mappings.at(static_cast<std::size_t>(st.s.mapping));
    if (!st.fd)
      return ebadf_fd(h);
    const FuseFile &ff = st.b.file(*st.fd);
    const bool v15 = st.p == KernelProfile::V15;
    const Outcome &o = st.o;
    if (o.kind == Outcome::Kind::Errno) {
      const std::string E = err(o.err);
      if (ff.is_dir)
        return {"do_mmap", fmt::format("{} is a directory, which has no mmap -> {}", h, E)};
      const FuseInode &fi = st.b.inode(ff.inode);
      const std::string iname = st.n.inode(ff.inode);
      if (o.err == EACCES)
        return {"do_mmap", fmt::format("a PROT_READ mapping needs a file opened for reading; {} is "
                                       "write-only -> EACCES",
                                       h)};
      if (o.err == ENODEV && ff.passthrough && v15)
        return {"fuse_file_mmap",
                "the seed's patch 5/9 leaves mmap of a passthrough file as a TODO -> ENODEV "
                "(8/9 and 6.9 map the backing file)"};
      if (o.err == ENODEV && fi.fb && !ff.passthrough)
        return {"fuse_file_mmap",
                fmt::format("inode {} is in passthrough mode (it holds {}), but {} was not "
                            "opened in passthrough mode: a mapping of its page cache would go "
                            "stale behind the backing file -> ENODEV, for shared and private "
                            "mappings alike",
                            iname, fb_name(st.n, *fi.fb), h)};
      if (o.err == ENODEV && (ff.open_flags & fopen::DIRECT_IO) && st.s.shared)
        return {"fuse_file_mmap",
                fmt::format("a shared mapping of FOPEN_DIRECT_IO file {} needs the page cache, "
                            "which the server allows only with FUSE_DIRECT_IO_ALLOW_MMAP at INIT "
                            "-> ENODEV (a private mapping would be fine)",
                            h)};
      if (o.err == ETXTBSY)
        return {"fuse_file_cached_io_open",
                fmt::format("the shared mapping needs a cached io reference, but inode {} holds "
                            "a backing object -> ETXTBSY",
                            iname)};
      return {"fuse_file_mmap", fmt::format("mmap failed with {}", E)};
    }
    if (o.kind == Outcome::Kind::Blocks)
      return wait_reason(st.a, TaskId{static_cast<std::uint32_t>(st.a.tasks.size() - 1)}, st.n,
                         Op::Mmap);
    const FuseFile &fa = st.a.file(*st.fd);
    const std::string iname = st.n.inode(ff.inode);
    if (ff.passthrough)
      return {"fuse_passthrough_mmap -> backing_file_mmap",
              fmt::format("{} is a passthrough file: {} maps the backing file, and "
                          "backing_file_mmap replaces vm_file with {}'s per-file backing_file, so "
                          "{} pins that backing_file, not the FUSE file, the inode's io mode or "
                          "the backing object{}",
                          h, mn, h, mn,
                          (ff.open_flags & fopen::DIRECT_IO)
                              ? " (FOPEN_DIRECT_IO does not matter: mmap of a passthrough file "
                                "always maps the backing file)"
                              : "")};
    if (ff.open_flags & fopen::DIRECT_IO) {
      if (!st.s.shared)
        return {"fuse_file_mmap -> generic_file_mmap",
                fmt::format("{} is a FOPEN_DIRECT_IO file: a private mapping invalidates the "
                            "page cache of {} and maps it without an io-mode change; {} pins the "
                            "FUSE file {}",
                            h, iname, mn, h)};
      const FuseInode &fib = st.b.inode(ff.inode);
      const FuseInode &fia = st.a.inode(ff.inode);
      if (ff.iomode == IoMode::None && fa.iomode == IoMode::Cached)
        return {"fuse_file_mmap + fuse_file_cached_io_open",
                fmt::format("a shared mapping of FOPEN_DIRECT_IO file {} needs the page cache "
                            "(FUSE_DIRECT_IO_ALLOW_MMAP allows it): {} takes a cached io "
                            "reference that lasts until {} is released, not until munmap ({}); "
                            "{} pins the FUSE file {}",
                            h, h, h, ctr_change(fib.iocachectr, fia.iocachectr), mn, h)};
      return {"fuse_file_mmap + fuse_file_cached_io_open",
              fmt::format("a shared mapping of FOPEN_DIRECT_IO file {}: {} already holds its "
                          "cached io reference from an earlier shared mapping, nothing changes; "
                          "{} pins the FUSE file {}",
                          h, h, mn, h)};
    }
    return {"fuse_file_mmap -> generic_file_mmap",
            fmt::format("{} goes through the page cache: {} maps it; inode {} is {}, the io mode "
                        "does not change; {} pins the FUSE file {}, which stays open after "
                        "close {}",
                        h, mn, iname, io_mode(st.a.inode(ff.inode), st.n), mn, h, h)};
  }

  // ---- releases ----

  // What fuse_release did for a file that was released by this step.
  std::string release_text(const Step &st, FileId f) const {
    const FuseFile &fb = st.b.file(f);
    const std::string h = st.n.file(f);
    if (fb.is_dir)
      return fmt::format("{} is released (fuse_release): a directory holds no io mode", h);
    std::vector<std::string> parts;
    if (fb.passthrough)
      parts.emplace_back("puts its per-file backing_file and credentials (fuse_prepare_release)");
    switch (fb.iomode) {
    case IoMode::Cached:
      parts.emplace_back("gives back its cached io reference (fuse_file_cached_io_release)");
      break;
    case IoMode::Uncached:
      parts.emplace_back("gives back its uncached io reference (fuse_inode_uncached_io_end)");
      break;
    case IoMode::None:
      parts.emplace_back("it held no io-mode reference");
      break;
    }
    if (!fb.has_args || st.a.fc.no_open)
      parts.emplace_back("no RELEASE: the server does not implement OPEN");
    else if (!st.a.fc.connected)
      parts.emplace_back("no RELEASE reaches the server: the connection is aborted");
    else if (fb.iomode != IoMode::None)
      parts.emplace_back("then RELEASE goes to the server (the io mode already changed, so its "
                         "answer does not matter)");
    else
      parts.emplace_back("then RELEASE goes to the server");
    return fmt::format("{} is released (fuse_release): {}", h, join(parts, "; "));
  }

  static std::string release_rule(const FuseFile &before) {
    if (before.is_dir)
      return "fuse_release";
    switch (before.iomode) {
    case IoMode::Cached:
      return "fuse_release -> fuse_file_cached_io_release";
    case IoMode::Uncached:
      return "fuse_release -> fuse_inode_uncached_io_end";
    case IoMode::None:
      break;
    }
    return "fuse_release";
  }

  std::vector<std::string> alive_by(const Step &st, FileId f) const {
    std::vector<std::string> v;
    const Model &m = st.a;
    for (std::uint32_t i = 0; i < m.vmas.size(); ++i)
      if (m.vmas[i].mapped && m.vmas[i].target == VmaTarget::FuseFile && m.vmas[i].file == f)
        v.push_back("mapping " + st.n.vma(VmaId{i}));
    for (std::uint32_t i = 0; i < m.writes.size(); ++i)
      if (m.writes[i].file == f && !m.writes[i].done)
        v.push_back("write " + st.n.write(WriteId{i}) + " in flight");
    for (const Task &task : m.tasks)
      if (!task.done && task.file == f &&
          (task.kind == TaskKind::ReadPageWait || task.kind == TaskKind::MmapCachedIoWait ||
           task.kind == TaskKind::MmapInvalidateWait))
        v.emplace_back("a sleeping call");
    return v;
  }

  Why close(const Step &st, std::optional<FileId> *skip) {
    const std::string h = handle_name(st);
    if (!st.fd)
      return ebadf_fd(h);
    const FuseFile &fb = st.b.file(*st.fd);
    const FuseFile &fa = st.a.file(*st.fd);
    std::string flush;
    std::string rule;
    if (st.o.kind == Outcome::Kind::Errno && st.o.err == ENOTCONN) {
      rule = "fuse_flush";
      flush = "the connection is aborted, so the FLUSH that close sends fails -> ENOTCONN; the "
              "fd is closed anyway";
    } else if (fb.is_dir) {
      flush = "a directory sends no FLUSH";
    } else if ((fb.open_flags & fopen::NOFLUSH) && !st.b.fc.writeback_cache) {
      flush = "FOPEN_NOFLUSH: no FLUSH is sent";
    } else {
      flush = "fuse_flush sends FLUSH";
    }
    if (fa.released && !fb.released) {
      *skip = *st.fd;
      const std::string rel = release_rule(fb);
      return {rule.empty() ? rel : rule + " + " + rel,
              fmt::format("{}; the fd was the last reference to the FUSE file, so {}", flush,
                          release_text(st, *st.fd))};
    }
    const std::vector<std::string> pins = alive_by(st, *st.fd);
    return {rule.empty() ? "fuse_flush + fput" : rule,
            fmt::format("{}; the FUSE file {} is not released yet: it is still pinned by {}; "
                        "fuse_release runs when the last of them goes",
                        flush, h, and_list(pins))};
  }

  Why munmap(const Step &st, std::optional<FileId> *skip) {
    const std::string mn = t_.names.mappings.at(static_cast<std::size_t>(st.s.mapping));
    if (!st.vma)
      return {"vm_munmap",
              fmt::format("{} is not mapped (its mmap failed or has not returned, or it was "
                          "unmapped already): munmap of an unmapped range succeeds and changes "
                          "nothing",
                          mn)};
    const Vma &v = st.b.vmas.at(idx(*st.vma));
    const std::string h = st.n.file(v.file);
    switch (v.target) {
    case VmaTarget::BackingFile: {
      const std::int32_t rb = st.b.backing_files.at(idx(v.backing_file)).f_count.value();
      const std::int32_t ra = st.a.backing_files.at(idx(v.backing_file)).f_count.value();
      return {"vma_close -> fput(backing_file)",
              fmt::format("{} mapped the backing file through {}'s per-file backing_file: "
                          "unmapping drops that pin (backing_file refs {} -> {}{}); it never "
                          "held the FUSE file, the inode's io mode or the backing object",
                          mn, h, rb, ra, ra == 0 ? ", the backing_file is closed" : "")};
    }
    case VmaTarget::FuseFile:
      break;
    }
    const FuseFile &fb = st.b.file(v.file);
    const FuseFile &fa = st.a.file(v.file);
    if (fa.released && !fb.released) {
      *skip = v.file;
      return {"vma_close -> " + release_rule(fb),
              fmt::format("{} pinned the FUSE file {}; that was its last reference, so {}", mn, h,
                          release_text(st, v.file))};
    }
    std::vector<std::string> pins = alive_by(st, v.file);
    for (const auto &fd : *st.fds)
      if (fd == v.file)
        pins.insert(pins.begin(), "its fd");
    return {"vma_close", fmt::format("{} pinned the FUSE file {}; {} stays open, pinned by {}", mn,
                                     h, h, and_list(pins))};
  }

  // ---- await ----

  Why await(const Step &st) {
    const std::string name =
        t_.names.of(st.s.await_kind).at(static_cast<std::size_t>(st.s.await_slot));
    if (!st.awaited)
      return {"fpsim await", fmt::format("nothing is asleep on {}", name)};
    const TaskNote &note = notes_.at(idx(*st.awaited));
    if (st.o.kind == Outcome::Kind::Blocks) {
      Why w = wait_reason(st.a, *st.awaited, st.n, note.op);
      w.why = fmt::format("the {} that blocked at line {} is still asleep: {}", op_word(note.op),
                          note.line, w.why);
      return w;
    }
    return {note.rule.empty() ? std::string("fuse_run_woken_tasks") : note.rule,
            fmt::format("collects the {} {} that blocked at line {}{}: {}", op_word(note.op), name,
                        note.line,
                        note.done_line > 0
                            ? fmt::format(" and was woken at line {}", note.done_line)
                        : note.done_line == 0 ? std::string(" and was woken during teardown")
                                              : std::string(""),
                        note.why)};
  }

  // How a woken call finished; stored for its await.
  Why completion(const Step &st, TaskId id) {
    const Task &ta = st.a.tasks.at(idx(id));
    const Task *tb = idx(id) < st.b.tasks.size() ? &st.b.tasks[idx(id)] : nullptr;
    const TaskNote &note = notes_.at(idx(id));
    const std::string name = note.name;
    const std::string iname = st.n.inode(ta.inode);
    const SysResult &r = ta.result;
    const Wait was = tb ? wait_of(st.b, *tb) : wait_of(st.a, ta);
    const FuseInode &fia = st.a.inode(ta.inode);
    switch (note.op) {
    case Op::Open:
    case Op::Create: {
      if (r.err && r.internal_err)
        return {"fuse_file_cached_io_open",
                fmt::format("inode {} entered passthrough mode while the open slept (it holds "
                            "{}): fuse_file_cached_io_open clears FUSE_I_CACHE_IO_MODE and fails "
                            "with {}, which open(2) reports as EIO; {}",
                            iname, fia.fb ? fb_name(st.n, *fia.fb) : std::string("an fb"),
                            err(r.internal_err),
                            r.sync_release ? "fuse_sync_release sends the server a RELEASE"
                                           : "no RELEASE is sent")};
      if (r.err)
        return {"do_truncate",
                fmt::format("the open failed with {} after it woke (the connection was aborted "
                            "meanwhile)",
                            err(r.err))};
      switch (was) {
      case Wait::CacheIo:
        return {"fuse_file_cached_io_open",
                fmt::format("iocachectr of {} returned to 0 and direct_io_waitq woke the open: it "
                            "takes its cached io reference (inode {} is now {}) and open(2) "
                            "returns",
                            iname, iname, io_mode(fia, st.n))};
      case Wait::PageLock:
        return {"fuse_open -> invalidate_inode_pages2",
                "the page the held WRITE kept locked was unlocked: the page-cache invalidation "
                "finishes and open(2) returns"};
      case Wait::TruncateLock:
      case Wait::InodeLock:
        return {"do_truncate -> inode_lock",
                "the inode lock became free: the truncation runs and open(2) returns"};
      case Wait::Other:
        break;
      }
      return {"fuse_open", "the open completes"};
    }
    case Op::Read:
      if (r.err)
        return {"fuse_cache_read_iter -> filemap_read",
                fmt::format("the page was unlocked, but the connection was aborted meanwhile: "
                            "the READ cannot be sent -> {}",
                            err(r.err))};
      return {"fuse_cache_read_iter -> filemap_read",
              "the page was unlocked: the read goes on through FUSE and the page cache"};
    case Op::Mmap:
      if (r.err)
        return {"fuse_file_cached_io_open",
                fmt::format("inode {} entered passthrough mode while the mmap slept: the shared "
                            "mapping cannot take a cached io reference -> {} (mmap(2) returns "
                            "it as it is)",
                            iname, err(r.err))};
      if (was == Wait::PageLock && !ta.shared)
        return {"fuse_file_mmap -> invalidate_inode_pages2",
                fmt::format("the page was unlocked: the invalidation finishes and the private "
                            "mapping {} is created",
                            name)};
      return {"fuse_file_mmap + fuse_file_cached_io_open",
              fmt::format("the file takes its cached io reference (inode {} is now {}) and the "
                          "shared mapping {} is created",
                          iname, io_mode(fia, st.n), name)};
    case Op::Write:
    case Op::WriteBegin: {
      const Route route = r.route;
      Why w = describe_write(st, ta.write, route, r.err, true);
      return {"inode_lock -> " + w.rule, "it got the inode lock: " + w.why};
    }
    case Op::Init:
    case Op::BackingOpen:
    case Op::BackingClose:
    case Op::Opendir:
    case Op::Munmap:
    case Op::Close:
    case Op::WriteEnd:
    case Op::Await:
    case Op::Abort:
    case Op::Umount:
    case Op::DevClose:
    case Op::Check:
      break;
    }
    return {"fuse_run_woken_tasks", "the call completes"};
  }

  static std::string task_outcome(const Task &t, Op op) {
    const SysResult &r = t.result;
    if (r.err) {
      Outcome o = Outcome::errno_(r.err);
      o.release = r.sync_release;
      o.internal_err = r.internal_err;
      return format_outcome(o);
    }
    if (op == Op::Read || op == Op::Write || op == Op::WriteBegin)
      return r.route == Route::Backing ? "backing" : r.route == Route::Fuse ? "fuse" : "ok";
    return "ok";
  }

  // ---- abort, umount, dev_close ----

  Why abort(const Step &st) {
    if (st.o.kind == Outcome::Kind::Errno)
      return {"fuse_conn_abort_write",
              fmt::format("fusectl's abort file exists only while the superblock does, and it "
                          "is gone -> {}",
                          err(st.o.err))};
    if (!st.b.fc.connected)
      return {"fuse_abort_conn", "the connection is aborted already: nothing changes"};
    return {"fuse_abort_conn",
            "writing 1 to fusectl's abort file disconnects the connection (fc->connected = 0): "
            "new opens get ENOTCONN and requests in flight end with ECONNABORTED; passthrough "
            "files keep reading, writing and mapping their backing files; io-mode accounting "
            "still runs when files are closed"};
  }

  std::vector<std::string> busy_files(const Model &m, const ObjectNames &n) const {
    std::vector<std::string> v;
    for (std::uint32_t f = 0; f < m.files.size(); ++f)
      if (!m.files[f].released)
        v.push_back(n.file(FileId{f}));
    return v;
  }

  Why umount(const Step &st) {
    const Model &b = st.b;
    if (st.o.kind == Outcome::Kind::Errno) {
      if (st.o.err == EINVAL)
        return {"path_umount", "nothing is mounted there any more -> EINVAL"};
      return {"path_umount",
              fmt::format("files of the mount are still open ({}) -> EBUSY; umount detach would "
                          "hide the mount and let the superblock die with its last file",
                          and_list(busy_files(b, st.n)))};
    }
    if (st.a.fc.sb_alive)
      return {"path_umount (MNT_DETACH)",
              fmt::format("the mount disappears from the namespace, but the superblock lives on "
                          "while {} {} open; it dies with the last of them",
                          and_list(busy_files(b, st.n)),
                          busy_files(b, st.n).size() == 1 ? "is" : "are")};
    return {"path_umount -> fuse_kill_sb_anon",
            fmt::format("no file is open: the superblock goes now, every inode is evicted "
                        "(fuse_evict_inode), and the superblock's connection reference is "
                        "dropped; {}",
                        st.a.fc.freed ? "that was the last one"
                                      : "backing ids outlive the mount while /dev/fuse is open")};
  }

  Why dev_close(const Step &st) {
    if (st.o.kind == Outcome::Kind::Errno)
      return {"fuse_dev_release", "the /dev/fuse fd is closed already -> EBADF"};
    std::vector<std::string> parts;
    parts.emplace_back("the server's last /dev/fuse fd closes");
    if (st.b.fc.initialized && st.b.fc.connected)
      parts.emplace_back("that aborts the connection (fuse_abort_conn)");
    if (st.a.fc.freed && !st.b.fc.freed)
      parts.emplace_back("it held the last connection reference, so fuse_conn_put frees the "
                         "connection and fuse_backing_files_free frees every backing object "
                         "still registered");
    else if (!st.a.fc.freed)
      parts.emplace_back("the superblock still holds the connection, so registered ids live on "
                         "until it goes");
    return {"fuse_dev_release", join(parts, "; ")};
  }

  // ---- side effects ----

  // primary: the step's own explanation; an inode change it already states is not repeated.
  std::vector<std::string> effects(const Step &st, unsigned mask, std::optional<FileId> skip,
                                   const std::string &primary) {
    std::vector<std::string> out;
    const Model &b = st.b;
    const Model &a = st.a;
    if (mask & kReleases)
      for (std::uint32_t f = 0; f < b.files.size(); ++f)
        if (!b.files[f].released && a.files[f].released && skip != FileId{f})
          out.push_back(release_text(st, FileId{f}));
    if (mask & kWritesEnded)
      for (std::uint32_t w = 0; w < b.writes.size(); ++w)
        if (!b.writes[w].done && a.writes[w].done && b.writes[w].in_flight &&
            a.writes[w].result == ECONNABORTED)
          out.push_back(fmt::format("{} ends with ECONNABORTED (end_requests) and gives back "
                                    "its inode lock{}",
                                    st.n.write(WriteId{w}),
                                    b.writes[w].counted ? " and uncached reference" : ""));
    if (mask & kInodes)
      for (std::uint32_t i = 0; i < b.inodes.size(); ++i) {
        const FuseInode &x = b.inodes[i];
        const FuseInode &y = a.inodes[i];
        const std::string iname = st.n.inode(InodeId{i});
        if (!x.evicted && y.evicted) {
          if (st.s.op == Op::Umount && !x.fb)
            continue; // the umount explanation says every inode is evicted
          out.push_back(
              fmt::format("inode {} is evicted (fuse_evict_inode){}", iname,
                          x.fb ? fmt::format("; fuse_free_inode puts its {}", fb_name(st.n, *x.fb))
                               : std::string("")));
          continue;
        }
        if (x.iocachectr == y.iocachectr && x.fb == y.fb && x.cache_io_mode == y.cache_io_mode)
          continue;
        if (x.fb == y.fb && x.cache_io_mode == y.cache_io_mode &&
            primary.find(ctr_change(x.iocachectr, y.iocachectr)) != std::string::npos)
          continue;
        std::string s = fmt::format("inode {}: {} -> {} ({}", iname, io_mode(x, st.n),
                                    io_mode(y, st.n), ctr_change(x.iocachectr, y.iocachectr));
        if (x.cache_io_mode != y.cache_io_mode)
          s += y.cache_io_mode ? ", FUSE_I_CACHE_IO_MODE set" : ", FUSE_I_CACHE_IO_MODE cleared";
        s += ")";
        if (x.fb && !y.fb)
          s += fmt::format("; back at 0, fuse_inode_uncached_io_end detaches {} and puts the "
                           "inode's reference",
                           fb_name(st.n, *x.fb));
        out.push_back(s);
      }
    if (mask & kFbRefs)
      for (std::uint32_t i = 0; i < b.backings.size(); ++i) {
        const FuseBacking &x = b.backings[i];
        const FuseBacking &y = a.backings[i];
        if (x.freed)
          continue;
        const std::string bn = fb_name(st.n, FbId{i});
        if (y.freed)
          out.push_back(fmt::format("{} {}: its last reference is gone, fuse_backing_free "
                                    "puts its file and credentials",
                                    bn, refs_change(x.count.value(), 0)));
        else if (x.count.value() != y.count.value())
          out.push_back(fmt::format("{} {}", bn, refs_change(x.count.value(), y.count.value())));
      }
    if (mask & kWakeups)
      for (std::uint32_t i = 0; i < a.tasks.size(); ++i) {
        const Task &y = a.tasks[i];
        const bool was_done = i < b.tasks.size() && b.tasks[i].done;
        if (i >= b.tasks.size())
          continue; // created by this step
        const TaskNote &note = notes_.at(i);
        if (!was_done && y.done) {
          const Why w = completion(st, TaskId{i});
          TaskNote &nt = notes_.at(i);
          nt.done_line = st.s.line;
          nt.rule = w.rule;
          nt.why = w.why;
          nt.outcome = task_outcome(y, note.op);
          out.push_back(fmt::format("woke the {} {} (line {}): {}; await {} returns {}",
                                    op_word(note.op), note.name, note.line, w.why, note.name,
                                    nt.outcome));
        } else if (!y.done && b.tasks[i].kind != y.kind) {
          const Why w = wait_reason(a, TaskId{i}, st.n, note.op);
          out.push_back(fmt::format("the {} {} (line {}) got past its first wait and now "
                                    "sleeps again: {}",
                                    op_word(note.op), note.name, note.line, w.why));
        }
      }
    if (mask & kConn) {
      if (b.fc.connected && !a.fc.connected && st.s.op != Op::Abort && st.s.op != Op::DevClose)
        out.emplace_back("the connection is aborted (fuse_abort_conn)");
      if (b.fc.sb_alive && !a.fc.sb_alive && st.s.op != Op::Umount)
        out.emplace_back("that was the last file of a detached mount: the superblock goes "
                         "(fuse_kill_sb_anon), its inodes are evicted");
      if (!b.fc.freed && a.fc.freed && st.s.op != Op::DevClose)
        out.emplace_back("the last connection reference is gone (fuse_conn_put): "
                         "fuse_backing_files_free frees every backing object still registered");
    }
    return out;
  }

  const Trace &t_;
  std::vector<TaskNote> notes_;
  std::string last_open_rule_;
  int last_open_line_ = 0;
};

// ---- state tables ----------------------------------------------------------------------------

StateTables build_state(const Trace &t, const Model &m, const Model &before, const ObjectNames &n,
                        const std::vector<std::optional<FileId>> &fds,
                        const std::vector<TaskNote> &notes) {
  StateTables s;
  s.conn.initialized = m.fc.initialized;
  s.conn.passthrough = m.fc.passthrough;
  s.conn.max_stack_depth = m.fc.max_stack_depth;
  s.conn.connected = m.fc.connected;
  s.conn.mounted = m.fc.mounted;
  s.conn.sb_alive = m.fc.sb_alive;
  s.conn.dev_open = m.fc.dev_open;
  s.conn.freed = m.fc.freed;
  s.conn.no_open = m.fc.no_open;
  for (std::uint32_t i = 0; i < m.inodes.size(); ++i) {
    const FuseInode &fi = m.inodes[i];
    if (fi.name == kRootInodeName || fi.evicted)
      continue;
    StateTables::Inode row;
    row.name = n.inode(InodeId{i});
    row.ctr = fi.iocachectr;
    row.mode = io_mode(fi, n);
    row.fb = fi.fb ? fb_name(n, *fi.fb) : "-";
    row.cache_io_mode = fi.cache_io_mode;
    const std::vector<std::string> holders = lock_holders(m, InodeId{i}, n);
    if (fi.i_rwsem.writer)
      row.lock = fmt::format("excl ({})", join(holders));
    else if (fi.i_rwsem.readers > 0)
      row.lock = fmt::format("shared x{} ({})", fi.i_rwsem.readers, join(holders));
    else
      row.lock = "-";
    s.inodes.push_back(row);
  }
  for (std::uint32_t i = 0; i < m.backings.size(); ++i) {
    const FuseBacking &b = m.backings[i];
    const bool freed_now = b.freed && i < before.backings.size() && !before.backings[i].freed;
    if (b.freed && !freed_now)
      continue;
    StateTables::Backing row;
    row.name = fb_name(n, FbId{i});
    row.id = b.id;
    row.refs = b.count.value();
    row.freed = b.freed;
    row.source = source_of(t, b);
    for (const auto &[id, fb] : m.fc.backing_files_map)
      if (fb == FbId{i})
        row.holders.push_back(fmt::format("id map (id {})", id));
    for (std::uint32_t k = 0; k < m.inodes.size(); ++k)
      if (!m.inodes[k].evicted && m.inodes[k].fb == FbId{i})
        row.holders.push_back("inode " + n.inode(InodeId{k}));
    s.backings.push_back(row);
  }
  for (std::uint32_t f = 0; f < m.files.size(); ++f) {
    const FuseFile &ff = m.files[f];
    if (ff.released)
      continue;
    StateTables::File row;
    row.handle = n.file(FileId{f});
    row.dir = ff.is_dir;
    row.inode = ff.is_dir ? "(root)" : n.inode(ff.inode);
    switch (ff.iomode) {
    case IoMode::None:
      row.iomode = "none";
      break;
    case IoMode::Cached:
      row.iomode = "cached";
      break;
    case IoMode::Uncached:
      row.iomode = "uncached";
      break;
    }
    if (ff.passthrough) {
      row.passthrough = ff.opened_with_fb ? fb_name(n, *ff.opened_with_fb) : "yes";
      row.backing_file_pins.emplace_back("file");
      for (std::uint32_t v = 0; v < m.vmas.size(); ++v)
        if (m.vmas[v].mapped && m.vmas[v].target == VmaTarget::BackingFile &&
            m.vmas[v].backing_file == *ff.passthrough)
          row.backing_file_pins.push_back(n.vma(VmaId{v}));
    } else {
      row.passthrough = "-";
    }
    for (const auto &fd : fds)
      if (fd == FileId{f})
        row.alive_by.emplace_back("fd");
    for (std::uint32_t v = 0; v < m.vmas.size(); ++v)
      if (m.vmas[v].mapped && m.vmas[v].target == VmaTarget::FuseFile &&
          m.vmas[v].file == FileId{f})
        row.alive_by.push_back("mapping " + n.vma(VmaId{v}));
    for (std::uint32_t w = 0; w < m.writes.size(); ++w)
      if (m.writes[w].file == FileId{f} && !m.writes[w].done)
        row.alive_by.push_back(
            fmt::format("write {} {}", n.write(WriteId{w}),
                        m.writes[w].in_flight ? "in flight" : "waiting for the lock"));
    for (std::uint32_t k = 0; k < m.tasks.size(); ++k) {
      const Task &task = m.tasks[k];
      if (task.file != FileId{f} || task.kind == TaskKind::WriteLockWait)
        continue;
      const std::string what = k < notes.size() ? op_word(notes[k].op) : std::string("call");
      if (!task.done)
        row.alive_by.push_back(what + " asleep");
      else if (row.alive_by.empty() && k < notes.size() &&
               (notes[k].op == Op::Open || notes[k].op == Op::Create) && !task.result.err)
        row.alive_by.push_back(
            fmt::format("the returned open (await {} collects its fd)", notes[k].name));
    }
    s.files.push_back(row);
  }
  for (const auto &[id, fb] : m.fc.backing_files_map)
    s.ids.push_back({id, fb_name(n, fb)});
  std::sort(s.ids.begin(), s.ids.end(),
            [](const StateTables::Id &x, const StateTables::Id &y) { return x.id < y.id; });
  s.next_id = m.fc.idr_next;
  for (std::uint32_t k = 0; k < m.tasks.size(); ++k) {
    const Task &task = m.tasks[k];
    if (task.done)
      continue;
    const std::string name = k < notes.size() ? notes[k].name : fmt::format("task#{}", k);
    const std::string what = k < notes.size() ? op_word(notes[k].op) : std::string("call");
    s.asleep.push_back(fmt::format("{} ({}, line {}): {}", name, what,
                                   k < notes.size() ? notes[k].line : 0, wait_short(m, task, n)));
  }
  return s;
}

// ---- the recording executor ------------------------------------------------------------------

// Wraps the simulator so that replay() drives it exactly as `fpsim replay` does, and explains
// each step as it goes.
class ExplainingExecutor final : public Executor {
public:
  explicit ExplainingExecutor(const Trace &t) : t_(t), explainer_(t) {}

  void begin(const Trace &tr, KernelProfile p) override {
    inner_.begin(tr, p);
    p_ = p;
    names_ = ObjectNames{};
    fbs_.assign(tr.names.backings.size(), std::nullopt);
    steps_.clear();
    rows_ = 0;
    state_omitted_ = false;
  }

  Outcome step(const Statement &s, const Bindings &bindings) override {
    const Model before = inner_.model();
    Step st{t_, s, o_, bindings, before, inner_.model(), names_, p_, {}, {}, {}, {}, &fds_};
    if (s.handle >= 0 && static_cast<std::size_t>(s.handle) < t_.names.handles.size())
      st.fd = inner_.fd(s.handle);
    if (s.op == Op::Munmap && s.mapping >= 0)
      st.vma = inner_.mapping(s.mapping);
    if (s.op == Op::WriteEnd && s.write >= 0)
      st.write = inner_.held_write(s.write);
    if (s.op == Op::Await)
      inner_.for_each_pending([&](NameKind kind, int slot, TaskId task) {
        if (kind == s.await_kind && slot == s.await_slot)
          st.awaited = task;
      });
    o_ = inner_.step(s, bindings);
    const Model &after = inner_.model();
    name_new_objects(s, before, after);
    fds_.assign(t_.names.handles.size(), std::nullopt);
    for (std::size_t h = 0; h < fds_.size(); ++h)
      fds_[h] = inner_.fd(static_cast<int>(h));
    const Explained e = explainer_.explain(st);

    ExplainedStep out;
    out.line = s.line;
    out.teardown = s.line == 0;
    out.statement = format_statement(s, t_.names);
    out.outcome = format_outcome_detailed(o_);
    out.kind = o_.kind;
    out.err = o_.err;
    if (s.expect) {
      out.expected = format_outcome(*s.expect);
      out.mismatch = !same_outcome(*s.expect, o_);
    }
    out.mismatch = out.mismatch || o_.kind == Outcome::Kind::Invalid;
    out.rule = e.rule;
    out.why = e.why;
    out.effects = e.effects;
    if (keep_state(after))
      out.state = build_state(t_, after, before, names_, fds_, explainer_.notes());
    else
      out.state_omitted = true;
    steps_.push_back(std::move(out));
    return o_;
  }

  CheckResult check(const Statement &s, const Bindings &bindings) override {
    const CheckResult r = inner_.check(s, bindings);
    const Explained e = explainer_.explain_check(s, r, inner_.model(), names_, fbs_);
    ExplainedStep out;
    out.line = s.line;
    out.check = true;
    out.statement = format_statement(s, t_.names);
    switch (r.kind) {
    case CheckResult::Kind::Pass:
      out.outcome = "pass";
      break;
    case CheckResult::Kind::Fail:
      out.outcome = "fail";
      out.mismatch = true;
      break;
    case CheckResult::Kind::NotObservable:
      out.outcome = "not observable";
      break;
    }
    out.rule = e.rule;
    out.why = e.why;
    if (!keep_state(inner_.model()))
      out.state_omitted = true;
    else if (steps_.empty())
      out.state = build_state(t_, inner_.model(), inner_.model(), names_, fds_, explainer_.notes());
    else
      out.state = steps_.back().state;
    steps_.push_back(std::move(out));
    return r;
  }

  std::vector<Violation> after_step() override {
    std::vector<Violation> v = inner_.after_step();
    if (!steps_.empty())
      for (const Violation &x : v)
        steps_.back().violations.push_back(fmt::format("[{}] {}", x.rule, x.message));
    return v;
  }

  std::vector<Violation> drain() override { return inner_.drain(); }
  void end() override { inner_.end(); }

  std::vector<ExplainedStep> take_steps() { return std::move(steps_); }

private:
  // Whether this step's tables still fit kExplainMaxStateRows, counting every object the model
  // has (more than the tables show) so that a step past the budget costs no table at all.
  bool keep_state(const Model &m) {
    const std::size_t rows = m.inodes.size() + m.backings.size() + m.files.size() +
                             m.fc.backing_files_map.size() + m.unfinished_tasks.size();
    if (state_omitted_ || rows_ + rows > kExplainMaxStateRows) {
      state_omitted_ = true;
      return false;
    }
    rows_ += rows;
    return true;
  }

  // Names every object the step created, as SimExecutor does for its reports, and the calls
  // that went to sleep.
  void name_new_objects(const Statement &s, const Model &before, const Model &after) {
    const auto grow = [](std::vector<std::string> &v, std::size_t size) {
      if (v.size() < size)
        v.resize(size);
    };
    auto declared = [&]() -> std::string {
      switch (s.op) {
      case Op::Open:
      case Op::Create:
      case Op::Opendir:
      case Op::Read:
      case Op::Write:
        return t_.names.handles.at(static_cast<std::size_t>(s.handle));
      case Op::Mmap:
        return t_.names.mappings.at(static_cast<std::size_t>(s.mapping));
      case Op::WriteBegin:
        return t_.names.writes.at(static_cast<std::size_t>(s.write));
      case Op::Init:
      case Op::BackingOpen:
      case Op::BackingClose:
      case Op::Munmap:
      case Op::Close:
      case Op::WriteEnd:
      case Op::Await:
      case Op::Abort:
      case Op::Umount:
      case Op::DevClose:
      case Op::Check:
        break;
      }
      return "(unnamed)";
    };
    grow(names_.inodes, after.inodes.size());
    for (std::size_t i = 0; i < after.inodes.size(); ++i)
      names_.inodes[i] = inode_name(after.inodes[i], t_.names);
    grow(names_.files, after.files.size());
    for (std::size_t i = before.files.size(); i < after.files.size(); ++i)
      names_.files[i] = declared();
    grow(names_.fbs, after.backings.size());
    if (s.op == Op::BackingOpen && o_.kind == Outcome::Kind::Id && !after.backings.empty()) {
      const std::size_t fb = after.backings.size() - 1;
      names_.fbs[fb] = t_.names.backings.at(static_cast<std::size_t>(s.backing));
      fbs_.at(static_cast<std::size_t>(s.backing)) = FbId{static_cast<std::uint32_t>(fb)};
    }
    grow(names_.writes, after.writes.size());
    for (std::size_t i = before.writes.size(); i < after.writes.size(); ++i)
      names_.writes[i] = s.op == Op::WriteBegin
                             ? t_.names.writes.at(static_cast<std::size_t>(s.write))
                             : "write " + t_.names.handles.at(static_cast<std::size_t>(s.handle));
    auto &notes = explainer_.notes();
    for (std::size_t i = before.tasks.size(); i < after.tasks.size(); ++i) {
      TaskNote note;
      note.name = declared();
      note.op = s.op;
      note.line = s.line;
      notes.push_back(note);
    }
    grow(names_.vmas, after.vmas.size());
    for (std::size_t i = before.vmas.size(); i < after.vmas.size(); ++i) {
      std::string name = s.op == Op::Mmap
                             ? t_.names.mappings.at(static_cast<std::size_t>(s.mapping))
                             : std::string("(unnamed)");
      for (std::size_t k = 0; k < after.tasks.size(); ++k)
        if (after.tasks[k].result.vma == VmaId{static_cast<std::uint32_t>(i)} && k < notes.size())
          name = notes[k].name;
      names_.vmas[i] = name;
    }
  }

  const Trace &t_;
  SimExecutor inner_;
  Explainer explainer_;
  KernelProfile p_ = model::kDefaultProfile;
  ObjectNames names_;
  std::vector<std::optional<FbId>> fbs_;
  std::vector<std::optional<FileId>> fds_;
  std::vector<ExplainedStep> steps_;
  std::size_t rows_ = 0;
  bool state_omitted_ = false;
  Outcome o_;
};

} // namespace

Explanation explain_trace(const Trace &t, KernelProfile p) {
  ExplainingExecutor rec(t);
  ReplayResult r = replay(t, rec, p);
  Explanation e;
  e.path = t.path;
  e.title = t.title;
  e.profile = p;
  e.steps = rec.take_steps();
  e.failures = std::move(r.failures);
  return e;
}

} // namespace fpsim::sim
