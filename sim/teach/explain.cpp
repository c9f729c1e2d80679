// `fpsim explain`: see sim/teach/explain.h. The model records which rule decided each errno, wait,
// wake-up and route (model/decision.h); this file only renders those decisions, one text per
// Rule in Explainer::render, with names and numbers read from the states before and after.
#include "sim/teach/explain.h"

#include "base/assert.h"
#include "base/join.h"
#include "sim/exec/sim_executor.h"
#include "sim/trace/printer.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <fmt/format.h>
#include <map>

namespace fpsim::sim {

using namespace model;

namespace {

// ---- words -----------------------------------------------------------------------------------

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

// A rule's text, said by the kernel function that decides it.
struct Why {
  std::string rule;
  std::string why;
};

Why said(Rule r, std::string why) { return {std::string(rule_function(r)), std::move(why)}; }

// The rules whose text is the same in every state.
constexpr std::pair<Rule, std::string_view> kFixedTexts[] = {
    {Rule::InitNoPassthrough, "the INIT reply does not offer FUSE_PASSTHROUGH: passthrough stays "
                              "off, so BACKING_OPEN will be refused with EPERM"},
    {Rule::InitNoInitExt, "FUSE_PASSTHROUGH sits in flags2, which the kernel ignores without "
                          "FUSE_INIT_EXT in flags: passthrough stays off (no error: INIT is never "
                          "rejected)"},
    {Rule::InitWritebackCache, "since 6.11 passthrough and the writeback cache exclude each other: "
                               "with writeback_cache in the reply passthrough is silently left "
                               "off"},
    {Rule::InitFlags2Ignored, "FUSE_DIRECT_IO_ALLOW_MMAP is in flags2 too and is ignored"},
    {Rule::BackingOpenDevClosed, "the server's /dev/fuse fd is closed (dev_close): there is no "
                                 "device to issue the ioctl on"},
    {Rule::BackingOpenNoPassthrough, "passthrough was not negotiated at INIT (fc->passthrough is "
                                     "0), so backing files cannot be registered"},
    {Rule::BackingOpenNotCapable, "the caller lacks CAP_SYS_ADMIN in the initial user namespace; "
                                  "registering a backing file needs it"},
    {Rule::InitSync, "mount(2) with FUSE_DEV_IOC_SYNC_INIT: the INIT reply is processed before "
                     "mount returns"},
    {Rule::InitAfterMount, "no FUSE_DEV_IOC_SYNC_INIT on this kernel: mount(2) returns before "
                           "the server answers INIT, and fpsim waits for the answer to be "
                           "processed before the next statement"},
    {Rule::BackingOpenBadFd, "fd -1 does not resolve to a file (fget_raw fails)"},
    {Rule::BackingOpenOPath, "an O_PATH fd does not resolve with fget before 6.12 (6.12+ uses "
                             "fget_raw and accepts it)"},
    {Rule::BackingOpenDirectory, "since 6.17 only regular files may back a FUSE file; a directory "
                                 "gives EISDIR"},
    {Rule::BackingOpenNotRegular, "since 6.17 only regular files may back a FUSE file (a pipe, "
                                  "socket or device gives EINVAL)"},
    {Rule::BackingOpenIdrFull, "no free id is left in [1, INT_MAX]; the new fb is freed again"},
    {Rule::BackingCloseDevClosed, "the server's /dev/fuse fd is closed (dev_close)"},
    {Rule::BackingCloseNotInstalled, "the /dev/fuse fd is not installed on a mounted connection "
                                     "yet (no init)"},
    {Rule::BackingCloseNoPassthrough, "passthrough was not negotiated at INIT (fc->passthrough is "
                                      "0)"},
    {Rule::BackingCloseNotCapable, "the caller lacks CAP_SYS_ADMIN in the initial user namespace"},
    {Rule::CreateEnosys, "the server does not implement CREATE (ENOSYS); the kernel's MKNOD+OPEN "
                         "fallback is not modelled"},
    {Rule::OpenNoOpen, "the server does not implement OPEN (fc->no_open, set by an earlier "
                       "ENOSYS): no OPEN is sent and the file gets FOPEN_KEEP_CACHE, whatever the "
                       "reply says"},
    {Rule::OpenEnosys, "the server answered OPEN with ENOSYS: fuse_file_open sets fc->no_open "
                       "(later opens never reach the server) and gives the file "
                       "FOPEN_KEEP_CACHE"},
    {Rule::FileIoOpenCacheIoBit, "the seed keeps bit 7 as the kernel-internal FOPEN_CACHE_IO, and "
                                 "a server must not send it (its passthrough bit is 1<<8)"},
    {Rule::FileIoOpenParallelWritesDropped, "FOPEN_PARALLEL_DIRECT_WRITES is dropped without "
                                            "FOPEN_DIRECT_IO"},
    {Rule::PassthroughOpenNotNegotiated, "the reply asks for passthrough, but passthrough was not "
                                         "negotiated at INIT (fc->passthrough is 0)"},
    {Rule::DoTruncate, "O_TRUNC: the file is truncated (SETATTR) under the inode lock"},
    {Rule::DoTruncateDisconnected, "O_TRUNC: the SETATTR that truncates the file cannot be sent on "
                                   "an aborted connection -> ENOTCONN; the new file is dropped"},
    {Rule::DirOpen, "OPENDIR never enters io modes: FOPEN_PASSTHROUGH and a backing id in its "
                    "reply are ignored, even an unknown id"},
    {Rule::DirOpenNoOpendir, "the server does not implement OPENDIR (an earlier ENOSYS): no "
                             "request is sent"},
    {Rule::DirOpenEnosys, "the server answered OPENDIR with ENOSYS: fc->no_opendir is set and the "
                          "directory opens without it"},
    {Rule::ReadSeedPassthrough, "the seed (5/9) opens passthrough files but still reads them "
                                "through FUSE and the page cache"},
    {Rule::CacheReadODirect, "O_DIRECT: the read bypasses the page cache and a READ goes to the "
                             "server"},
    {Rule::CacheWriteWriteback, "writeback cache: the write only dirties the page cache; no WRITE "
                                "reaches the server now, so nothing is held"},
    {Rule::MmapSeedPassthrough, "the seed's patch 5/9 leaves mmap of a passthrough file as a TODO "
                                "-> ENODEV (8/9 and 6.9 map the backing file)"},
    {Rule::FlushDisconnected, "the connection is aborted, so the FLUSH that close sends fails -> "
                              "ENOTCONN; the fd is closed anyway"},
    {Rule::FlushDirectory, "a directory sends no FLUSH"},
    {Rule::FlushNoflush, "FOPEN_NOFLUSH: no FLUSH is sent"},
    {Rule::Flush, "fuse_flush sends FLUSH"},
    {Rule::ReleaseNoOpen, "no RELEASE: the server does not implement OPEN"},
    {Rule::ReleaseDisconnected, "no RELEASE reaches the server: the connection is aborted"},
    {Rule::ReleaseSent, "then RELEASE goes to the server"},
    {Rule::KillSbLastFile, "that was the last file of a detached mount: the superblock goes "
                           "(fuse_kill_sb_anon), its inodes are evicted"},
    {Rule::AbortAlready, "the connection is aborted already: nothing changes"},
    {Rule::Abort, "writing 1 to fusectl's abort file disconnects the connection (fc->connected = "
                  "0): new opens get ENOTCONN and requests in flight end with ECONNABORTED; "
                  "passthrough files keep reading, writing and mapping their backing files; "
                  "io-mode accounting still runs when files are closed"},
    {Rule::UmountNotMounted, "nothing is mounted there any more -> EINVAL"},
    {Rule::DevReleaseClosed, "the /dev/fuse fd is closed already -> EBADF"},
    {Rule::ConnFree, "the last connection reference is gone (fuse_conn_put): "
                     "fuse_backing_files_free frees every backing object still registered"},
};

std::string fixed_text(Rule r) {
  for (const auto &[rule, text] : kFixedTexts)
    if (rule == r)
      return std::string(text);
  FPSIM_UNREACHABLE("a rule without a fixed text");
}

Why fixed(Rule r) { return said(r, fixed_text(r)); }

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
    return fmt::format("PT({},{})", n.fb(*fi.fb), -fi.iocachectr);
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
  // A file through an overlayfs is another inode than the same name below it: say which.
  const std::string stacked =
      b.source_stack_depth == 0 ? "" : fmt::format(" (s_stack_depth {})", b.source_stack_depth);
  auto file = [&](std::string prefix) {
    return (b.source < t.names.backing_files.size() ? prefix + t.names.backing_files[b.source]
                                                    : std::string("a backing file")) +
           stacked;
  };
  switch (b.kind) {
  case BackingFdKind::Regular:
    return file("");
  case BackingFdKind::OPath:
    return file("opath:");
  case BackingFdKind::Dir:
    return "a directory" + stacked;
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
    else if (fopen_cache_io_forbidden(p, m))
      w.emplace_back("bit:7 (the seed's internal FOPEN_CACHE_IO)");
    else
      w.push_back(fmt::format("bit:{}", bit));
  }
  return w.empty() ? std::string("cached (no flags)") : join(w, "|");
}

// ---- who holds what --------------------------------------------------------------------------

// The open files of inode i in io mode `mode`, in creation order.
std::vector<std::string> files_in_mode(const Model &m, InodeId i, const ObjectNames &n,
                                       IoMode mode) {
  std::vector<std::string> v;
  for (std::uint32_t f = 0; f < m.files.size(); ++f)
    if (m.files[f].inode == i && !m.files[f].released && m.files[f].iomode == mode)
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
  std::vector<std::string> v = files_in_mode(m, i, n, IoMode::Uncached);
  for (std::string &w : counted_writes(m, i, n))
    v.push_back(std::move(w));
  return v;
}

// The references on fb: the id map's (map: how to call it) and those of the inodes it is attached
// to. The id map holds none once its id is closed.
std::vector<std::string> fb_holders(const Model &m, FbId fb, const ObjectNames &n,
                                    std::string_view map) {
  std::vector<std::string> v;
  for (const auto &[id, f] : m.fc.backing_files_map)
    if (f == fb)
      v.push_back(fmt::format("{} (id {})", map, id));
  for (std::uint32_t i = 0; i < m.inodes.size(); ++i)
    if (!m.inodes[i].evicted && m.inodes[i].fb == fb)
      v.push_back("inode " + n.inode(InodeId{i}));
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

enum class Wait : std::uint8_t { CacheIo, PageLock, InodeLock, TruncateLock, DirectReadLock, FlushLock };

// The wait a rule puts a call in, if it is one of the model's waits. An if-chain: every other
// rule is no wait, and a switch would have to list them all.
std::optional<Wait> wait_of(Rule r) {
  if (r == Rule::IoCacheWait || r == Rule::IoCacheWaitOnBacking)
    return Wait::CacheIo;
  if (r == Rule::OpenInvalidateWait || r == Rule::ReadPageWait || r == Rule::MmapInvalidateWait)
    return Wait::PageLock;
  if (r == Rule::WriteLockWait)
    return Wait::InodeLock;
  if (r == Rule::TruncateLockWait)
    return Wait::TruncateLock;
  if (r == Rule::DirectReadLockWait)
    return Wait::DirectReadLock;
  if (r == Rule::FlushLockWait)
    return Wait::FlushLock;
  return std::nullopt;
}

struct TaskNote {
  std::string name; // the H, M or W of the statement that blocked
  Op op = Op::Open;
  Rule wait = Rule::IoCacheWait; // the rule it sleeps by now, as the model recorded it
  Rule wait_before_step = Rule::IoCacheWait;
  int line = 0;
  int done_line = -1;
  std::string rule; // of its completion
  std::string why;
  std::string outcome;
};

std::string op_word(Op op) {
  const std::optional<BlockingOp> call = blocking_op(op);
  if (!call)
    return std::string(op_name(op));
  switch (*call) {
  case BlockingOp::Open:
  case BlockingOp::Create:
    return "open";
  case BlockingOp::Read:
    return "read";
  case BlockingOp::Write:
  case BlockingOp::WriteBegin:
    return "write";
  case BlockingOp::Mmap:
    return "mmap";
  case BlockingOp::Close:
    return "close";
  }
  FPSIM_UNREACHABLE("a BlockingOp outside the enum");
}

// Why a sleeping call sleeps (by the rule the model recorded), and what will wake it.
Why cache_io_wait(const Model &m, const Task &task, const ObjectNames &n, Rule rule) {
  const std::string iname = n.inode(task.inode);
  const FuseInode &fi = m.inode(task.inode);
  const std::string fname = n.file(task.file);
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
  std::string wake =
      fmt::format("it wakes when {} ({})", writes.size() == 1 ? "it ends" : "the last of them ends",
                  write_end_list(writes));
  if (rule == Rule::IoCacheWaitOnBacking) {
    who = fmt::format("{} {} ({}); the seed waits for every uncached reference, passthrough "
                      "files included",
                      and_list(all),
                      all.size() == 1 ? "holds an uncached reference" : "hold uncached references",
                      io_mode(fi, n));
    wake = fmt::format("it wakes when all of them are gone (close, write_end)");
  }
  return said(rule,
              fmt::format("{} needs a cached io reference on inode {}, but {}: a cached user must "
                          "not appear while uncached io bypasses the page cache, so the {} sleeps "
                          "on direct_io_waitq (uninterruptibly) until iocachectr returns to 0; "
                          "FUSE_I_CACHE_IO_MODE is set meanwhile so that new parallel writes take "
                          "the inode lock exclusively and cannot starve it; {}",
                          mmap ? fmt::format("a shared mapping of direct_io file {}", fname)
                               : fmt::format("the cached open {}", fname),
                          iname, who, mmap ? "mmap" : "open", wake));
}

Why page_lock_wait(const Model &m, const Task &task, const ObjectNames &n, Rule rule) {
  const std::string iname = n.inode(task.inode);
  const std::string fname = n.file(task.file);
  const std::vector<std::string> lockers = folio_lockers(m, task.inode, n);
  const std::string locked = fmt::format(
      "the page at offset 0 of {} is locked by {}, a write-through WRITE the server holds (the "
      "page was not uptodate, so fuse_perform_write keeps it locked until the reply)",
      iname, and_list(lockers));
  if (rule == Rule::ReadPageWait)
    return said(rule,
                fmt::format("{} reads through the page cache, and {}; the read sleeps on the page "
                            "lock until the server answers ({})",
                            fname, locked, write_end_list(lockers)));
  if (rule == Rule::MmapInvalidateWait)
    return said(rule,
                fmt::format("mmap of direct_io file {} first invalidates the page cache of {}, and "
                            "{}; mmap sleeps on the page lock until the server answers ({})",
                            fname, iname, locked, write_end_list(lockers)));
  return said(rule,
              fmt::format("the reply lacks FOPEN_KEEP_CACHE, so open invalidates the page cache of "
                          "{} after its io mode is settled, and {}; open sleeps on the page lock "
                          "until the server answers ({})",
                          iname, locked, write_end_list(lockers)));
}

Why inode_lock_wait(const Model &m, const Task &task, const ObjectNames &n, Wait wait) {
  const std::string iname = n.inode(task.inode);
  const FuseInode &fi = m.inode(task.inode);
  const std::string fname = n.file(task.file);
  const bool trunc = wait == Wait::TruncateLock;
  const bool direct_read = wait == Wait::DirectReadLock;
  const bool flush = wait == Wait::FlushLock;
  const bool exclusive = trunc || direct_read || flush || m.writes.at(idx(task.write)).exclusive;
  const std::vector<std::string> holders = lock_holders(m, task.inode, n);
  std::vector<std::string> before;
  if (wait == Wait::InodeLock)
    for (std::uint32_t w = 0; w < idx(task.write); ++w)
      if (m.writes[w].inode == task.inode && !m.writes[w].locked && !m.writes[w].done)
        before.push_back(n.write(WriteId{w}));
  std::string held =
      holders.empty()
          ? std::string("is free, but")
          : fmt::format("is held {} by {}{}", fi.i_rwsem.writer ? "exclusively" : "shared",
                        and_list(holders), before.empty() ? "" : ", and");
  std::string queue =
      before.empty()
          ? ""
          : fmt::format(" {} queued for it earlier (i_rwsem is served in order)", and_list(before));
  std::string what;
  std::string rule;
  if (trunc) {
    rule = "do_truncate -> inode_lock";
    what = fmt::format("O_TRUNC: open {} truncates {} (SETATTR) under its inode lock "
                       "(do_truncate)",
                       fname, iname);
  } else if (direct_read) {
    rule = "fuse_direct_io -> inode_lock";
    what = fmt::format("the direct read on {} covers the page of {} that {} keeps locked, so "
                       "fuse_direct_io first takes the inode lock (i_rwsem) to wait for the "
                       "write (fuse_sync_writes)",
                       fname, iname, and_list(folio_lockers(m, task.inode, n)));
  } else if (flush) {
    rule = "fuse_flush -> inode_lock";
    what = fmt::format("close(2) of {} sends FLUSH, and this kernel's fuse_flush first takes the "
                       "inode lock (i_rwsem) of {} exclusively to wait for pending writes "
                       "(flush_takes_inode_lock)",
                       fname, iname);
  } else {
    rule = exclusive ? "fuse_file_write_iter -> inode_lock" : "fuse_dio_lock -> inode_lock_shared";
    what = fmt::format("the write on {} needs the inode lock (i_rwsem) of {} {}", fname, iname,
                       exclusive ? "exclusively" : "shared");
  }
  return {rule, fmt::format("{}; the lock {}{}; it sleeps until the lock is free ({})", what, held,
                            queue, holders.empty() ? "its turn" : write_end_list(holders))};
}

// rule: the wait the model recorded for the call (TaskNote::wait).
Why wait_reason(const Model &m, TaskId id, const ObjectNames &n, Rule rule) {
  const Task &task = m.tasks.at(idx(id));
  const std::optional<Wait> wait = wait_of(rule);
  FPSIM_ASSERT(wait.has_value(), "a sleeping call's rule is a wait");
  switch (*wait) {
  case Wait::CacheIo:
    return cache_io_wait(m, task, n, rule);
  case Wait::PageLock:
    return page_lock_wait(m, task, n, rule);
  case Wait::InodeLock:
  case Wait::TruncateLock:
  case Wait::DirectReadLock:
  case Wait::FlushLock:
    return inode_lock_wait(m, task, n, *wait);
  }
  FPSIM_UNREACHABLE("a Wait outside the enum");
}

std::string wait_short(const Task &task, const ObjectNames &n, Rule rule) {
  const std::string iname = n.inode(task.inode);
  const std::optional<Wait> wait = wait_of(rule);
  FPSIM_ASSERT(wait.has_value(), "a sleeping call's rule is a wait");
  switch (*wait) {
  case Wait::CacheIo:
    return fmt::format("direct_io_waitq of {} (iocachectr < 0)", iname);
  case Wait::PageLock:
    return fmt::format("the page lock of {} (held write)", iname);
  case Wait::InodeLock:
  case Wait::TruncateLock:
  case Wait::DirectReadLock:
  case Wait::FlushLock:
    return fmt::format("the inode lock of {}", iname);
  }
  FPSIM_UNREACHABLE("a Wait outside the enum");
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
  const std::vector<Decision> *decisions = nullptr;        // what the model decided, in order

  // The first decision the statement itself made (not a call it woke) by one of `rules`.
  const Decision *own(std::initializer_list<Rule> rules) const {
    for (const Decision &d : *decisions)
      if (!d.task && std::find(rules.begin(), rules.end(), d.rule) != rules.end())
        return &d;
    return nullptr;
  }
  // The first decision that satisfies pred.
  template <typename Pred> const Decision *find(Pred pred) const {
    for (const Decision &d : *decisions)
      if (pred(d))
        return &d;
    return nullptr;
  }
  const Decision *any(Rule r) const {
    return find([r](const Decision &d) { return d.rule == r; });
  }
  bool has(Rule r) const { return any(r) != nullptr; }
  // The first decision the statement itself made whose errno is e.
  const Decision *own_err(int e) const {
    return find([e](const Decision &d) { return !d.task && d.err == e; });
  }
  // The first decision about a sleeping call (its wait, or its completion) by rule r.
  const Decision *for_task(TaskId id, Rule r) const {
    return find([id, r](const Decision &d) { return d.task == id && d.rule == r; });
  }
  // The first decision the statement made, whatever it was.
  const Decision &first() const {
    const Decision *d = find([](const Decision &x) { return !x.task; });
    FPSIM_ASSERT(d != nullptr, "every statement the model runs decides something");
    return *d;
  }
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

  // The step's decisions for --json, each with its own text.
  std::vector<ExplainedDecision> records(const Step &st) {
    std::vector<ExplainedDecision> out;
    for (const Decision &d : *st.decisions) {
      ExplainedDecision x;
      x.rule = std::string(rule_name(d.rule));
      x.function = std::string(rule_function(d.rule));
      x.err = d.err;
      if (d.inode)
        x.objects.emplace_back("inode", st.n.inode(*d.inode));
      if (d.file)
        x.objects.emplace_back("file", st.n.file(*d.file));
      if (d.fb)
        x.objects.emplace_back("fb", st.n.fb(*d.fb));
      if (d.other_fb)
        x.objects.emplace_back("other_fb", st.n.fb(*d.other_fb));
      if (d.write)
        x.objects.emplace_back("write", st.n.write(*d.write));
      if (d.task)
        x.objects.emplace_back("task", notes_.at(idx(*d.task)).name);
      x.why = render(st, d).why;
      out.push_back(std::move(x));
    }
    return out;
  }

  Explained explain(const Step &st) {
    Explained e;
    if (st.o.kind == Outcome::Kind::Invalid) {
      e.rule = "fpsim: statement cannot run";
      e.why = st.o.message;
      return e;
    }
    note_waits(st);
    unsigned mask = kAll;
    std::optional<FileId> skip_release;
    Why w = explain_op(st, &mask, &skip_release);
    e.rule = std::move(w.rule);
    e.why = std::move(w.why);
    e.effects = effects(st, mask, skip_release, e.why);
    return e;
  }

  // The statement's own explanation; mask: the effects worth adding, skip: a release it states.
  Why explain_op(const Step &st, unsigned *mask, std::optional<FileId> *skip_release) {
    switch (st.s.op) {
    case Op::Init:
      return init(st);
    case Op::BackingOpen:
    case Op::BackingClose:
    case Op::Opendir:
      *mask = kWakeups;
      return render(st, st.first());
    case Op::Open:
    case Op::Create:
      *mask = kReleases | kWakeups | kConn;
      return noted_open(st, open(st));
    case Op::Read:
      *mask = kWakeups;
      return read(st);
    case Op::Write:
    case Op::WriteBegin:
      *mask = kReleases | kWakeups | kFbRefs;
      return write(st);
    case Op::Mmap:
      *mask = kWakeups;
      return mmap(st);
    case Op::Munmap:
      return munmap(st, skip_release);
    case Op::Close:
      return close(st, skip_release);
    case Op::WriteEnd:
      return write_end(st);
    case Op::Await:
      if (st.awaited && st.o.kind != Outcome::Kind::Blocks) {
        const Op op = notes_.at(idx(*st.awaited)).op;
        if (op == Op::Open || op == Op::Create)
          return noted_open(st, await(st));
      }
      return await(st);
    case Op::Abort:
      return abort(st);
    case Op::Umount:
      return umount(st);
    case Op::DevClose:
      return dev_close(st);
    case Op::Check:
      return {"fpsim check", "checks go through explain_check"};
    }
    FPSIM_UNREACHABLE("an Op outside the enum");
  }

  // An open that returned: check last reads which rule refused it, if one did.
  Why noted_open(const Step &st, Why w) {
    last_open_rule_ = st.o.internal_err ? w.rule : "";
    last_open_line_ = st.s.line;
    return w;
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
                          fi.fb ? n.fb(*fi.fb) : std::string("none"), fi.cache_io_mode ? 1 : 0,
                          id ? "" : " (never looked up)", verdict);
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
      e.why = b.freed ? fmt::format("{} is freed (refcount 0): the assertion {}", name, verdict)
                      : fmt::format("{} has refcount {}, one reference per holder: {}; the "
                                    "assertion {}",
                                    name, b.count.value(),
                                    and_list(fb_holders(m, *fb, n, "the id map")), verdict);
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
      e.why = fmt::format("the FUSE file opened as {} has ff->iomode {}, {}, and is {}: the "
                          "assertion {}",
                          h, iomode_name(ff.iomode),
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
  // The calls that went to sleep in this step, or that sleep again in another wait, take the
  // rule the model recorded; resleeps_ are the ones that slept before the step.
  void note_waits(const Step &st) {
    resleeps_.clear();
    for (TaskNote &n : notes_)
      n.wait_before_step = n.wait;
    for (const Decision &d : *st.decisions) {
      if (d.write &&
          (d.rule == Rule::DioWrExclusive || d.rule == Rule::DioWrExclusiveCacheIoMode ||
           d.rule == Rule::DioWrShared || d.rule == Rule::DioWrSharedCacheIoModeMissed)) {
        if (write_lock_.size() <= idx(*d.write))
          write_lock_.resize(idx(*d.write) + 1);
        write_lock_[idx(*d.write)] = d.rule;
      }
      if (d.task && wait_of(d.rule)) {
        notes_.at(idx(*d.task)).wait = d.rule;
        if (idx(*d.task) < st.b.tasks.size())
          resleeps_.push_back(*d.task);
      }
    }
  }

  // ---- init and the ioctls ----

  Why init(const Step &st) {
    const Model &a = st.a;
    const Decision *d = st.own({Rule::InitNoPassthrough, Rule::InitNoInitExt, Rule::InitStackDepth,
                                Rule::InitWritebackCache, Rule::InitPassthrough});
    FPSIM_ASSERT(d != nullptr, "process_init_reply decides passthrough");
    std::string why = render(st, *d).why;
    std::vector<std::string> more;
    if (a.fc.writeback_cache)
      more.emplace_back("writeback cache on: buffered writes only dirty the page cache");
    if (a.fc.direct_io_allow_mmap)
      more.emplace_back("FUSE_DIRECT_IO_ALLOW_MMAP: direct_io files may be mapped shared");
    else if (st.has(Rule::InitFlags2Ignored))
      more.emplace_back(render(st, *st.own({Rule::InitFlags2Ignored})).why);
    if (!more.empty())
      why += "; " + join(more, "; ");
    const Decision *how = st.own({Rule::InitSync, Rule::InitAfterMount});
    FPSIM_ASSERT(how != nullptr, "fuse_mount decides how INIT is answered");
    return {"process_init_reply", fixed_text(how->rule) + "; " + why};
  }

  // Every rule's text. The statement's explanation picks the decision that settled it and
  // renders it here; the rules that only add to another's text (a note, a wake-up) have a
  // fragment of their own, which --json shows beside the decision. Each function below renders
  // the rules listed with it, and every rule is listed once (the static_assert).
  Why render(const Step &st, const Decision &d) {
    using Text = Why (Explainer::*)(const Step &, const Decision &);
    // `times` counts the listings of each rule: comparing member pointers is not a constant
    // expression under GCC's sanitizers, so the assertion counts instead.
    struct Texts {
      std::array<Text, kRuleCount> of{};
      std::array<std::uint8_t, kRuleCount> times{};
    };
    static constexpr Texts kTexts = [] {
      Texts t;
      const auto set = [&t](Text f, std::initializer_list<Rule> rules) {
        for (Rule r : rules) {
          t.of[static_cast<std::size_t>(r)] = f;
          ++t.times[static_cast<std::size_t>(r)];
        }
      };
      set(&Explainer::fixed_why,
          {Rule::InitSync, Rule::InitAfterMount, Rule::InitNoPassthrough, Rule::InitNoInitExt,
           Rule::InitWritebackCache,
           Rule::InitFlags2Ignored, Rule::CreateEnosys, Rule::OpenNoOpen, Rule::OpenEnosys,
           Rule::FileIoOpenParallelWritesDropped, Rule::DoTruncate, Rule::DirOpen,
           Rule::MmapSeedPassthrough});
      set(&Explainer::fixed_why,
          {Rule::FlushDisconnected, Rule::FlushDirectory, Rule::FlushNoflush, Rule::Flush,
           Rule::ReleaseNoOpen, Rule::ReleaseDisconnected, Rule::ReleaseSent, Rule::KillSbLastFile,
           Rule::AbortAlready, Rule::Abort, Rule::UmountNotMounted, Rule::DevReleaseClosed,
           Rule::ConnFree});
      set(&Explainer::init_text, {Rule::InitStackDepth, Rule::InitPassthrough});
      set(&Explainer::backing_open_refused,
          {Rule::BackingOpenDevClosed, Rule::BackingOpenNotInstalled,
           Rule::BackingOpenNoPassthrough, Rule::BackingOpenNotCapable, Rule::BackingOpenFlags,
           Rule::BackingOpenPadding, Rule::BackingOpenBadFd, Rule::BackingOpenOPath,
           Rule::BackingOpenNoRwIter, Rule::BackingOpenDirectory, Rule::BackingOpenNotRegular,
           Rule::BackingOpenStackDepth, Rule::BackingOpenIdrFull});
      set(&Explainer::backing_opened, {Rule::BackingOpenRegistered});
      set(&Explainer::fixed_errno, {Rule::BackingCloseDevClosed, Rule::BackingCloseNotInstalled,
                                    Rule::BackingCloseNoPassthrough, Rule::BackingCloseNotCapable});
      set(&Explainer::backing_close_text,
          {Rule::BackingCloseInvalidId, Rule::BackingCloseNoEntry, Rule::BackingCloseRemoved});
      set(&Explainer::walk_text,
          {Rule::PathWalkNoMount, Rule::LookupDisconnected, Rule::LookupNoEntry, Rule::LookupExists,
           Rule::OpenDisconnected, Rule::OpenReplyError});
      set(&Explainer::refusal, {Rule::FileIoOpenCacheIoBit, Rule::FileIoOpenNotPassthrough,
                                Rule::PassthroughOpenNotNegotiated, Rule::PassthroughOpenFlagsMask,
                                Rule::PassthroughOpenInvalidId, Rule::PassthroughOpenNoId,
                                Rule::PassthroughOpenSocket, Rule::UncachedIoStartOtherFb,
                                Rule::UncachedIoStartOtherBackingInode, Rule::UncachedIoStartNullFb,
                                Rule::UncachedIoStartCachedInode, Rule::CachedIoOpenBackingInode});
      set(&Explainer::admitted,
          {Rule::FileIoOpenNoArgs, Rule::FileIoOpenDirectIo, Rule::UncachedIoStartAttach,
           Rule::UncachedIoStartSameFb, Rule::UncachedIoStartSameBackingInode, Rule::CachedIoOpen});
      set(&Explainer::open_note_text,
          {Rule::PassthroughOpenBackingFile, Rule::PassthroughOpenSeedIo,
           Rule::UncachedIoStartCounted, Rule::UncachedIoEndDetach, Rule::OpenInvalidate,
           Rule::DoTruncateDisconnected});
      set(&Explainer::wait_text,
          {Rule::IoCacheWait, Rule::IoCacheWaitOnBacking, Rule::OpenInvalidateWait,
           Rule::TruncateLockWait, Rule::ReadPageWait, Rule::DirectReadLockWait,
           Rule::WriteLockWait, Rule::MmapInvalidateWait, Rule::FlushLockWait});
      set(&Explainer::dir_open_text, {Rule::DirOpenDisconnected, Rule::DirOpenReplyError,
                                      Rule::DirOpenNoOpendir, Rule::DirOpenEnosys});
      set(&Explainer::io_error_text,
          {Rule::ReadIsDir, Rule::ReadNotReadable, Rule::ReadDisconnected,
           Rule::ReadDisconnectedBufferedEio, Rule::WriteIsDir, Rule::WriteNotWritable});
      set(&Explainer::read_route,
          {Rule::PassthroughRead, Rule::ReadSeedPassthrough, Rule::CacheReadUptodate,
           Rule::DirectRead, Rule::CacheReadODirect, Rule::CacheReadMiss});
      set(&Explainer::write_text,
          {Rule::DioWrExclusive, Rule::DioWrExclusiveCacheIoMode,
           Rule::DioWrSharedCacheIoModeMissed, Rule::DioWrShared, Rule::PassthroughWrite,
           Rule::DirectWrite, Rule::CacheWriteODirect, Rule::CacheWriteWriteback,
           Rule::CacheWriteThrough, Rule::WriteSeedPassthrough, Rule::WriteDisconnected,
           Rule::WriteHeld});
      set(&Explainer::write_end_text, {Rule::WriteReplyAfterAbort, Rule::WriteReply});
      set(&Explainer::mmap_error_text, {Rule::MmapIsDir, Rule::MmapNotReadable,
                                        Rule::MmapBackingInode, Rule::MmapDirectIoSharedRefused});
      set(&Explainer::mmap_route, {Rule::MmapPassthrough, Rule::MmapDirectIoPrivate,
                                   Rule::MmapDirectIoShared, Rule::MmapPageCache});
      set(&Explainer::abort_text, {Rule::AbortNoSuperblock, Rule::AbortEndsWrite});
      set(&Explainer::umount_text, {Rule::UmountBusy, Rule::UmountDetached, Rule::UmountKillSb});
      set(&Explainer::dev_close_text, {Rule::DevRelease});
      set(&Explainer::wake_text, {Rule::WakeDirectIoWaitq, Rule::WakePage, Rule::WakeInodeLock});
      return t;
    }();
    static_assert(std::ranges::count(kTexts.times, 1) == kRuleCount,
                  "every rule has exactly one text");
    return (this->*kTexts.of[static_cast<std::size_t>(d.rule)])(st, d);
  }

  Why fixed_why(const Step &, const Decision &d) { return fixed(d.rule); }

  Why fixed_errno(const Step &, const Decision &d) {
    return said(d.rule, fmt::format("{} -> {}", fixed_text(d.rule), err(d.err)));
  }

  Why wait_text(const Step &st, const Decision &d) {
    return wait_reason(st.a, *d.task, st.n, d.rule);
  }

  Why dir_open_text(const Step &, const Decision &d) {
    if (d.rule == Rule::DirOpenDisconnected)
      return said(d.rule, fmt::format("the connection was aborted: OPENDIR cannot be sent -> {}",
                                      err(d.err)));
    if (d.rule == Rule::DirOpenReplyError)
      return said(d.rule, fmt::format("the server answered OPENDIR with {}: opendir(3) returns it",
                                      err(d.err)));
    return said(d.rule, fixed_text(d.rule) + "; " + fixed_text(Rule::DirOpen));
  }

  Why write_text(const Step &st, const Decision &d) {
    return describe_write(st, *d.write, d.task.has_value());
  }

  Why write_end_text(const Step &st, const Decision &) { return write_end(st); }

  Why abort_text(const Step &st, const Decision &d) {
    if (d.rule == Rule::AbortNoSuperblock)
      return said(d.rule, fmt::format("fusectl's abort file exists only while the superblock "
                                      "does, and it is gone -> {}",
                                      err(d.err)));
    return said(
        d.rule,
        fmt::format("{} ends with ECONNABORTED (end_requests) and gives back its inode lock{}",
                    st.n.write(*d.write),
                    st.b.writes.at(idx(*d.write)).counted ? " and uncached reference" : ""));
  }

  Why dev_close_text(const Step &st, const Decision &) { return dev_close(st); }

  Why init_text(const Step &st, const Decision &d) {
    const int depth = st.s.init.max_stack_depth;
    if (d.rule == Rule::InitStackDepth)
      return said(d.rule, fmt::format("max_stack_depth {} is outside 1..FILESYSTEM_MAX_STACK_DEPTH "
                                      "(2): passthrough is silently left off",
                                      depth));
    return said(d.rule,
                fmt::format("the reply offers FUSE_PASSTHROUGH with max_stack_depth {}: "
                            "passthrough is enabled ({})",
                            depth,
                            depth == 1 ? "backing files must sit on a plain, unstacked filesystem"
                                       : "backing files may sit on a filesystem stacked one level "
                                         "deep, such as another FUSE mount"));
  }

  Why walk_text(const Step &st, const Decision &d) {
    const std::string E = err(d.err);
    const char *request = st.s.op == Op::Create ? "CREATE" : "OPEN";
    if (d.rule == Rule::PathWalkNoMount && st.s.op == Op::Opendir)
      return said(d.rule, fmt::format("the FUSE mount is gone (umount) -> {}", E));
    if (d.rule == Rule::PathWalkNoMount)
      return said(d.rule, fmt::format("the FUSE mount is gone (umount): {} no longer resolves "
                                      "inside it -> {}",
                                      mount_file(st), E));
    if (d.rule == Rule::LookupDisconnected)
      return said(d.rule,
                  fmt::format("the connection was aborted (fc->connected is 0): the LOOKUP of "
                              "{} cannot be sent -> {}; only files opened before the abort keep "
                              "working",
                              mount_file(st), E));
    if (d.rule == Rule::LookupNoEntry)
      return said(d.rule, fmt::format("{} does not exist in the mount yet (a later create makes "
                                      "it): LOOKUP answers ENOENT",
                                      mount_file(st)));
    if (d.rule == Rule::LookupExists)
      return said(d.rule, fmt::format("{} exists already and create uses O_CREAT|O_EXCL -> "
                                      "EEXIST; the server never sees CREATE",
                                      mount_file(st)));
    if (d.rule == Rule::OpenDisconnected)
      return said(d.rule,
                  fmt::format("the connection was aborted (fc->connected is 0): the dentry of {} "
                              "is cached, so the walk needs no LOOKUP, but the {} cannot be sent "
                              "-> {}; only files opened before the abort keep working",
                              mount_file(st), request, E));
    return {st.s.op == Op::Create ? "fuse_create_open" : "fuse_file_open",
            fmt::format("the server answered {} with {}: open(2) returns it as it is; the "
                        "server handed out no file handle, so no RELEASE follows",
                        request, E)};
  }

  Why open_note_text(const Step &st, const Decision &d) {
    if (d.rule == Rule::PassthroughOpenBackingFile || d.rule == Rule::PassthroughOpenSeedIo)
      return said(d.rule, passthrough_route_words(st, d));
    if (d.rule == Rule::UncachedIoStartCounted)
      return {"fuse_dio_lock + fuse_inode_uncached_io_start",
              "the write counts as an uncached reference with no backing object"};
    if (d.rule == Rule::UncachedIoEndDetach)
      return said(d.rule, fmt::format("back at 0, fuse_inode_uncached_io_end detaches {} and puts "
                                      "the inode's reference",
                                      st.n.fb(*d.fb)));
    if (d.rule == Rule::OpenInvalidate)
      return said(d.rule, fmt::format("no FOPEN_KEEP_CACHE: the page cache of {} is invalidated",
                                      st.n.inode(*d.inode)));
    FPSIM_ASSERT(d.rule == Rule::DoTruncateDisconnected, "open_note_text renders its own rules");
    if (d.task)
      return completion(st, *d.task);
    return fixed(d.rule);
  }

  // A read or write that the VFS or a lost connection refused.
  Why io_error_text(const Step &st, const Decision &d) {
    const std::string h = fd_name(st, d);
    if (d.rule == Rule::ReadIsDir)
      return said(d.rule, fmt::format("{} is a directory: read(2) -> EISDIR", h));
    if (d.rule == Rule::ReadNotReadable)
      return said(d.rule, fmt::format("{} was opened write-only (no FMODE_READ) -> EBADF", h));
    if (d.rule == Rule::WriteIsDir)
      return said(d.rule, fmt::format("{} is a directory -> EBADF", h));
    if (d.rule == Rule::WriteNotWritable)
      return said(d.rule, fmt::format("{} was opened read-only (no FMODE_WRITE) -> EBADF", h));
    FPSIM_ASSERT(d.rule == Rule::ReadDisconnected || d.rule == Rule::ReadDisconnectedBufferedEio,
                 "io_error_text renders its own rules");
    if (d.task)
      return completion(st, *d.task);
    if (d.rule == Rule::ReadDisconnectedBufferedEio)
      return said(d.rule, fmt::format("the connection was aborted: the READ for {} fails with "
                                      "ENOTCONN, and a buffered read, which reads its folio "
                                      "through iomap, reports it as EIO (buffered_read_error_eio)",
                                      h));
    return said(d.rule, fmt::format("the connection was aborted: the READ for {} cannot be sent "
                                    "-> ENOTCONN (passthrough files keep working, cached files "
                                    "fail)",
                                    h));
  }

  Why mmap_error_text(const Step &st, const Decision &d) {
    const std::string h = fd_name(st, d);
    if (d.rule == Rule::MmapIsDir)
      return said(d.rule, fmt::format("{} is a directory, which has no mmap -> {}", h, err(d.err)));
    if (d.rule == Rule::MmapNotReadable)
      return said(d.rule, fmt::format("a PROT_READ mapping needs a file opened for reading; {} is "
                                      "write-only -> EACCES",
                                      h));
    if (d.rule == Rule::MmapBackingInode)
      return said(d.rule,
                  fmt::format("inode {} is in passthrough mode (it holds {}), but {} was not "
                              "opened in passthrough mode: a mapping of its page cache would go "
                              "stale behind the backing file -> ENODEV, for shared and private "
                              "mappings alike",
                              st.n.inode(*d.inode), st.n.fb(*d.other_fb), h));
    FPSIM_ASSERT(d.rule == Rule::MmapDirectIoSharedRefused, "mmap_error_text renders its own");
    return said(d.rule,
                fmt::format("a shared mapping of FOPEN_DIRECT_IO file {} needs the page cache, "
                            "which the server allows only with FUSE_DIRECT_IO_ALLOW_MMAP at INIT "
                            "-> ENODEV (a private mapping would be fine)",
                            h));
  }

  Why wake_text(const Step &st, const Decision &d) {
    const std::string iname = st.n.inode(*d.inode);
    const std::string &task = notes_.at(idx(*d.task)).name;
    if (d.rule == Rule::WakeDirectIoWaitq)
      return said(d.rule, fmt::format("iocachectr of {} returned to 0: direct_io_waitq wakes {}",
                                      iname, task));
    if (d.rule == Rule::WakePage)
      return said(d.rule, fmt::format("the page of {} is unlocked: {} wakes", iname, task));
    return said(d.rule, fmt::format("the inode lock of {} is released: {} wakes", iname, task));
  }

  std::string mount_file(const Step &st) const {
    return t_.names.mount_files.at(static_cast<std::size_t>(st.s.file));
  }

  // The handle of the file a decision is about.
  std::string fd_name(const Step &st, const Decision &d) const {
    return d.file ? st.n.file(*d.file) : handle_name(st);
  }

  Why backing_opened(const Step &st, const Decision &d) {
    const Model &b = st.b;
    const std::string &name = t_.names.backings.at(static_cast<std::size_t>(st.s.backing));
    const FuseBacking &nb = st.a.backing(*d.fb);
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
    return said(d.rule,
                fmt::format("{} becomes a new backing object for {} with the caller's credentials; "
                            "idr_alloc_cyclic registered it as id {}{}; its refcount is 1: the id "
                            "map's reference",
                            name, source_of(t_, nb), nb.id, cyclic));
  }

  Why backing_open_refused(const Step &st, const Decision &d) {
    const Statement &s = st.s;
    const std::string &name = t_.names.backings.at(static_cast<std::size_t>(s.backing));
    return said(d.rule, fmt::format("{} -> {}; {} is not registered", backing_refusal_words(st, d),
                                    err(d.err), name));
  }

  static std::string backing_refusal_words(const Step &st, const Decision &d) {
    const Statement &s = st.s;
    if (d.rule == Rule::BackingOpenNotInstalled)
      return fmt::format("the /dev/fuse fd is not installed on a mounted connection yet (no "
                         "init): {}",
                         d.err == EPERM ? "6.9+ answers EPERM" : "the seed answers EINVAL");
    if (d.rule == Rule::BackingOpenFlags || d.rule == Rule::BackingOpenPadding)
      return fmt::format("struct fuse_backing_map must have flags 0{}; this one has {}",
                         d.rule == Rule::BackingOpenPadding ? " and padding 0" : "",
                         s.map_flags ? fmt::format("flags={}", s.map_flags)
                                     : fmt::format("padding={}", s.map_padding));
    if (d.rule == Rule::BackingOpenNoRwIter)
      return fmt::format("a backing file needs f_op->read_iter and write_iter, which {} lacks",
                         s.source == SourceKind::OPath ? "an O_PATH fd" : "a directory");
    if (d.rule == Rule::BackingOpenStackDepth)
      return fmt::format("the backing file's superblock has s_stack_depth {} (it is on a stacked "
                         "filesystem), not below fc->max_stack_depth {}: the FUSE mount counts as "
                         "that deep itself, so whatever backs it must be shallower",
                         s_stack_depth(s.source_fs), st.b.fc.max_stack_depth);
    return fixed_text(d.rule);
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

  Why backing_close_text(const Step &st, const Decision &d) {
    const Statement &s = st.s;
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
    const std::string E = err(d.err);
    if (d.rule == Rule::BackingCloseInvalidId)
      return said(d.rule,
                  fmt::format("the u32 argument is read into an int: {} is not a valid id (ids are "
                              "1..INT_MAX) -> {}",
                              s.literal_id && static_cast<std::int32_t>(*s.literal_id) < 0
                                  ? fmt::format("{} reads as {}, which", *s.literal_id, id)
                                  : fmt::format("{}", id),
                              E));
    if (d.rule == Rule::BackingCloseNoEntry) {
      const auto old = fb_ever_with_id(st.a, id);
      return said(d.rule,
                  fmt::format("{} is not in the id map ({}) -> {}", what,
                              old ? fmt::format("{} was registered under it, but it was closed "
                                                "already or freed with the connection",
                                                st.n.fb(*old))
                                  : std::string("no backing_open returned it"),
                              E));
    }
    const FbId fb = *d.fb;
    const std::int32_t before = st.b.backing(fb).count.value();
    const FuseBacking &after = st.a.backing(fb);
    std::string rest;
    if (after.freed)
      rest = fmt::format("that was its last reference, so fuse_backing_free frees {} (its file "
                         "and credentials are put)",
                         st.n.fb(fb));
    else
      rest = fmt::format("{} still holds it: an id in use is closed anyway (never EBUSY); open "
                         "passthrough files keep working, but new opens quoting id {} fail",
                         and_list(fb_holders(st.a, fb, st.n, "id map")), id);
    return said(
        d.rule,
        fmt::format("removes {} from the id map and puts the map's reference on {} ({}); {}", what,
                    st.n.fb(fb), refs_change(before, after.count.value()), rest));
  }

  // ---- open, create, opendir ----

  std::string reply_text(const Step &st) const { return format_reply(st.s.reply, t_.names); }

  // What the open said before its io mode: the server's part (CREATE, no OPEN, ENOSYS).
  std::vector<std::string> open_preamble(const Step &st, const FuseFile &ff) {
    std::vector<std::string> pre;
    if (st.s.op == Op::Create)
      pre.push_back(fmt::format("the server created {} and answered CREATE with {}", mount_file(st),
                                reply_text(st)));
    const Decision *no_open = st.own({Rule::OpenNoOpen, Rule::OpenEnosys});
    if (no_open)
      pre.push_back(render(st, *no_open).why);
    if (no_open && ff.has_args)
      pre.emplace_back("6.18 keeps ff->args for such a file, so it is an ordinary cached open");
    return pre;
  }

  Why open(const Step &st) {
    const Outcome &o = st.o;
    const Model &b = st.b;
    const Model &a = st.a;
    const std::string rule_open = st.s.op == Op::Create ? "fuse_create_open" : "fuse_file_open";
    if (a.files.size() == b.files.size()) {
      if (const Decision *d =
              st.own({Rule::PathWalkNoMount, Rule::LookupDisconnected, Rule::LookupNoEntry,
                      Rule::LookupExists, Rule::OpenDisconnected, Rule::OpenReplyError,
                      Rule::CreateEnosys}))
        return render(st, *d);
      return {rule_open, fmt::format("{} returned {}", rule_open, format_outcome_detailed(o))};
    }
    const FileId f{static_cast<std::uint32_t>(a.files.size() - 1)};
    const FuseFile &ff = a.file(f);
    const FuseInode &before = inode_before(b, ff.inode);
    const FuseInode &after = a.inode(ff.inode);
    const std::vector<std::string> pre = open_preamble(st, ff);
    auto with_pre = [&pre](Why w) {
      if (!pre.empty())
        w.why = join(pre, "; ") + "; " + w.why;
      return w;
    };
    if (o.kind == Outcome::Kind::Blocks) {
      const TaskId task{static_cast<std::uint32_t>(a.tasks.size() - 1)};
      Why w = wait_reason(a, task, st.n, notes_.at(idx(task)).wait);
      if (after.iocachectr != before.iocachectr)
        w.why = fmt::format("fuse_file_cached_io_open already counted it ({}); then {}",
                            ctr_change(before.iocachectr, after.iocachectr), w.why);
      return with_pre(std::move(w));
    }
    if (o.kind == Outcome::Kind::Errno && o.internal_err)
      if (const Decision *d = st.own_err(o.internal_err))
        return with_pre(render(st, *d));
    if (o.kind == Outcome::Kind::Errno) {
      if (const Decision *d = st.own({Rule::DoTruncateDisconnected}))
        return with_pre(render(st, *d));
      return with_pre({rule_open, fmt::format("{} returned {}", rule_open, err(o.err))});
    }
    const Decision *d = st.own({Rule::FileIoOpenNoArgs, Rule::FileIoOpenDirectIo,
                                Rule::UncachedIoStartAttach, Rule::UncachedIoStartSameFb,
                                Rule::UncachedIoStartSameBackingInode, Rule::CachedIoOpen});
    FPSIM_ASSERT(d != nullptr, "an admitted open settled its io mode");
    return with_pre(render(st, *d));
  }

  Why refusal_rule(const Step &st, const Decision &d, bool *looked_up) {
    const FuseFile &ff = st.a.file(*d.file);
    const std::uint32_t flags = ff.open_flags;
    const std::string iname = st.n.inode(*d.inode);
    const std::string mode = io_mode(inode_before(st.b, *d.inode), st.n);
    const KernelProfile p = st.p;
    *looked_up = false;
    if (d.rule == Rule::FileIoOpenCacheIoBit || d.rule == Rule::PassthroughOpenNotNegotiated)
      return fixed(d.rule);
    if (d.rule == Rule::FileIoOpenNotPassthrough)
      return said(
          d.rule,
          fmt::format("inode {} is in passthrough mode ({}): it holds backing object {}, and "
                      "every open of it must be passthrough too, or its page cache would go "
                      "stale behind the backing file's back; this reply ({}) lacks "
                      "FOPEN_PASSTHROUGH",
                      iname, mode, st.n.fb(*d.other_fb),
                      st.s.reply.kind == ReplySpec::Kind::Flags &&
                              !st.own({Rule::OpenNoOpen, Rule::OpenEnosys})
                          ? reply_text(st)
                          : flag_words(flags, p)));
    if (d.rule == Rule::PassthroughOpenFlagsMask)
      return said(
          d.rule,
          fmt::format("FOPEN_PASSTHROUGH may only come with direct_io, "
                      "parallel_direct_writes and noflush (FOPEN_PASSTHROUGH_MASK); this reply "
                      "also has {}",
                      flag_words(flags & ~fopen_passthrough_mask(p), p)));
    if (d.rule == Rule::PassthroughOpenInvalidId)
      return said(d.rule,
                  fmt::format("the reply's backing_id {} is not a valid id (ids start at 1)",
                              ff.backing_id));
    if (d.rule == Rule::PassthroughOpenNoId) {
      const auto old = fb_ever_with_id(st.a, ff.backing_id);
      return said(
          d.rule,
          fmt::format("fuse_backing_lookup finds no backing object under id {}: {}", ff.backing_id,
                      old ? fmt::format("{} was registered under it, but that id was closed "
                                        "(backing_close)",
                                        st.n.fb(*old))
                          : std::string("no backing_open returned it")));
    }
    if (d.rule == Rule::PassthroughOpenSocket)
      return said(
          d.rule,
          fmt::format("{} wraps a socket, and a socket cannot be opened by path (sock_no_open); "
                      "the lookup reference is put back",
                      st.n.fb(*d.fb)));
    if (d.rule == Rule::CachedIoOpenBackingInode)
      return said(d.rule,
                  fmt::format("inode {} holds backing object {} (it entered passthrough mode): a "
                              "cached open is refused",
                              iname, d.other_fb ? st.n.fb(*d.other_fb) : std::string("?")));
    *looked_up = true;
    if (d.rule == Rule::UncachedIoStartCachedInode) {
      const std::vector<std::string> users = files_in_mode(st.b, *d.inode, st.n, IoMode::Cached);
      return said(d.rule,
                  fmt::format("inode {} is in cached io mode ({}): {} use{} its page cache, which "
                              "reads and writes through the backing file would bypass",
                              iname, mode, and_list(users), users.size() == 1 ? "s" : ""));
    }
    return said(d.rule, other_fb_words(st, d, ff.backing_id));
  }

  // EBUSY: the reply's backing object is not the one the inode holds.
  std::string other_fb_words(const Step &st, const Decision &d, std::int32_t backing_id) {
    const Model &b = st.b;
    std::string same;
    if (d.other_fb && d.fb && b.backing(*d.other_fb).kind == b.backing(*d.fb).kind &&
        b.backing(*d.other_fb).source == b.backing(*d.fb).source)
      same = fmt::format(" (both wrap {}, but backing objects are compared, not files)",
                         source_of(t_, b.backing(*d.fb)));
    return fmt::format("inode {} already holds backing object {}; the reply names {}, another "
                       "object{}{}",
                       st.n.inode(*d.inode), d.other_fb ? st.n.fb(*d.other_fb) : std::string("?"),
                       d.fb ? fmt::format("{} (id {})", st.n.fb(*d.fb), backing_id)
                            : fmt::format("id {}", backing_id),
                       d.rule == Rule::UncachedIoStartOtherBackingInode
                           ? " on another backing inode (the proposed rule compares inodes)"
                           : "",
                       same);
  }

  // An io-mode refusal: of an open, of a parallel write's uncached reference, or of a call that
  // slept (its completion).
  Why refusal(const Step &st, const Decision &d) {
    if (d.write)
      return {"fuse_inode_uncached_io_start", uncached_refusal_words(st, d)};
    if (d.task && st.s.op != Op::Open && st.s.op != Op::Create)
      return completion(st, *d.task);
    bool looked_up = false;
    Why w = refusal_rule(st, d, &looked_up);
    std::string tail = fmt::format(" -> {}, which open(2) reports as EIO", err(d.err));
    if (looked_up)
      tail += fmt::format("; the refused open puts back what it took (the lookup reference on "
                          "{} and its per-file backing_file)",
                          d.fb ? st.n.fb(*d.fb) : std::string("the fb"));
    if (st.o.release)
      tail += "; the kernel then sends the server a synchronous RELEASE for the file handle it "
              "had just handed out (fuse_sync_release), before open(2) returns";
    else
      tail += "; no RELEASE reaches the server: it does not implement OPEN";
    w.why += tail;
    return w;
  }

  // A parallel write refused an uncached reference (it retakes the lock exclusively).
  std::string uncached_refusal_words(const Step &st, const Decision &d) {
    const FuseInode &fib = inode_before(st.b, *d.inode);
    const std::string iname = st.n.inode(*d.inode);
    if (d.rule == Rule::UncachedIoStartCachedInode)
      return fmt::format("ETXTBSY: inode {} is {}", iname, io_mode(fib, st.n));
    if (d.rule == Rule::UncachedIoStartNullFb)
      return fmt::format("EBUSY: the seed refuses a NULL backing object on passthrough inode {}",
                         iname);
    return "refused";
  }

  // Where a passthrough file's reads and writes go, as its open decided.
  std::string passthrough_route_words(const Step &st, const Decision &d) {
    const FuseFile &ff = st.a.file(*d.file);
    if (ff.open_flags & fopen::DIRECT_IO)
      return "FOPEN_DIRECT_IO overrides passthrough for read and write, which still go to "
             "the server; mmap uses the backing file";
    if (d.rule == Rule::PassthroughOpenSeedIo)
      return "the seed (5/9) opens in passthrough mode but still reads and writes through FUSE";
    return fmt::format("reads and writes of {} now go to the backing file, not the server",
                       st.n.file(*d.file));
  }

  std::vector<std::string> admitted_notes(const Step &st, const FuseInode &before,
                                          const FuseInode &after) {
    std::vector<std::string> notes;
    if (const Decision *d = st.own({Rule::FileIoOpenParallelWritesDropped}))
      notes.push_back(render(st, *d).why);
    if (const Decision *d = st.own({Rule::OpenInvalidate});
        d && before.folio_uptodate && !after.folio_uptodate)
      notes.push_back(render(st, *d).why);
    if (const Decision *d = st.own({Rule::DoTruncate}))
      notes.push_back(render(st, *d).why);
    return notes;
  }

  // An io mode settled: an open's is told in full, any other's (a write's, a woken call's) briefly.
  Why admitted(const Step &st, const Decision &d) {
    if (d.write || !d.file || (st.s.op != Op::Open && st.s.op != Op::Create) || d.task)
      return said(d.rule, "the io mode is settled");
    const FuseFile &ff = st.a.file(*d.file);
    const InodeId ino = ff.inode;
    const FuseInode &before = inode_before(st.b, ino);
    const FuseInode &after = st.a.inode(ino);
    const std::uint32_t flags = ff.open_flags;
    const std::string iname = st.n.inode(ino);
    const std::string h = st.n.file(*d.file);
    const std::vector<std::string> notes = admitted_notes(st, before, after);
    auto with_notes = [&notes](Why w) {
      if (!notes.empty())
        w.why += "; " + join(notes, "; ");
      return w;
    };
    if (d.rule == Rule::FileIoOpenNoArgs)
      return with_notes({"fuse_file_io_open",
                         fmt::format("ff->args is NULL, so fuse_file_io_open returns at once: {} "
                                     "takes no io-mode reference and reply flags are ignored "
                                     "(inode {} stays {})",
                                     h, iname, io_mode(after, st.n))});
    if (d.rule == Rule::FileIoOpenDirectIo)
      return with_notes(
          {"fuse_file_io_open",
           fmt::format("FOPEN_DIRECT_IO without FOPEN_PASSTHROUGH: reads and writes of {} go "
                       "straight to the server, past the page cache, so {} takes no io-mode "
                       "reference; inode {} stays {}{}",
                       h, h, iname, io_mode(after, st.n),
                       (flags & fopen::PARALLEL_DIRECT_WRITES)
                           ? "; FOPEN_PARALLEL_DIRECT_WRITES lets its writes share the inode lock"
                           : "")});
    if (d.rule == Rule::CachedIoOpen)
      return with_notes({"fuse_file_cached_io_open", cached_open_words(st, ff, before, after)});
    return with_notes({"fuse_passthrough_open + fuse_inode_uncached_io_start",
                       passthrough_open_words(st, d, before, after)});
  }

  std::string cached_open_words(const Step &st, const FuseFile &ff, const FuseInode &before,
                                const FuseInode &after) {
    const std::string iname = st.n.inode(ff.inode);
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
    return what;
  }

  // d: the uncached start of a passthrough open that was admitted.
  std::string passthrough_open_words(const Step &st, const Decision &d, const FuseInode &before,
                                     const FuseInode &after) {
    const FuseFile &ff = st.a.file(*d.file);
    const std::string iname = st.n.inode(*d.inode);
    const std::string h = st.n.file(*d.file);
    const std::optional<FbId> fb = d.fb;
    const std::string fbn = fb ? st.n.fb(*fb) : std::string("the fb");
    const std::int32_t rb =
        fb && idx(*fb) < st.b.backings.size() ? st.b.backing(*fb).count.value() : 0;
    const std::int32_t ra = fb ? st.a.backing(*fb).count.value() : 0;
    std::string first = fmt::format(
        "fuse_passthrough_open looks up id {} ({}, +1 for the lookup) and opens a per-file "
        "backing_file on {} with {}'s open flags under {}'s credentials",
        ff.backing_id, fbn, fb ? source_of(t_, st.a.backing(*fb)) : std::string("its file"), h,
        fbn);
    std::string second;
    if (d.rule == Rule::UncachedIoStartAttach) {
      second = fmt::format("fuse_inode_uncached_io_start: inode {} attaches {} and keeps the "
                           "lookup reference as its own ({}, {} {})",
                           iname, fbn, ctr_change(before.iocachectr, after.iocachectr), fbn,
                           refs_change(rb, ra));
      if (before.iocachectr < 0)
        second += fmt::format("; {} in flight do{} not conflict: only a different backing "
                              "object would",
                              before.iocachectr == -1 ? std::string("the parallel direct write")
                                                      : fmt::format("the {} parallel direct writes",
                                                                    -before.iocachectr),
                              before.iocachectr == -1 ? "es" : "");
    } else if (d.rule == Rule::UncachedIoStartSameBackingInode) {
      second = fmt::format("fuse_inode_uncached_io_start: inode {} holds {}, another backing "
                           "object of the same backing inode, which is all the proposed rule "
                           "compares; the inode keeps {} and the lookup reference of {} is put "
                           "back ({} {}); {}",
                           iname, st.n.fb(*d.other_fb), st.n.fb(*d.other_fb), fbn, fbn,
                           refs_change(rb, ra), ctr_change(before.iocachectr, after.iocachectr));
    } else {
      second = fmt::format("fuse_inode_uncached_io_start: inode {} already holds {}, so the "
                           "lookup reference is put back ({} {}); {}",
                           iname, fbn, fbn, refs_change(rb, ra),
                           ctr_change(before.iocachectr, after.iocachectr));
    }
    const Decision *opened =
        st.own({Rule::PassthroughOpenBackingFile, Rule::PassthroughOpenSeedIo});
    FPSIM_ASSERT(opened != nullptr, "an admitted passthrough open opened its backing_file");
    return first + "; " + second + "; " + passthrough_route_words(st, *opened);
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

  // The call this statement put to sleep: the newest task.
  Why new_wait(const Step &st) {
    const TaskId task{static_cast<std::uint32_t>(st.a.tasks.size() - 1)};
    return wait_reason(st.a, task, st.n, notes_.at(idx(task)).wait);
  }

  Why read(const Step &st) {
    const std::string h = handle_name(st);
    if (!st.fd)
      return ebadf_fd(h);
    const Outcome &o = st.o;
    if (o.kind == Outcome::Kind::Errno) {
      if (const Decision *d = st.own_err(o.err))
        return render(st, *d);
      return {"fuse_file_read_iter", fmt::format("the read failed with {}", err(o.err))};
    }
    if (o.kind == Outcome::Kind::Blocks)
      return new_wait(st);
    // In the order the model decided: the seed's refusal of the backing file comes first.
    const Decision *d =
        st.own({Rule::PassthroughRead, Rule::DirectRead, Rule::ReadSeedPassthrough,
                Rule::CacheReadODirect, Rule::CacheReadUptodate, Rule::CacheReadMiss});
    FPSIM_ASSERT(d != nullptr, "a read that returned chose its route");
    return render(st, *d);
  }

  Why read_route(const Step &st, const Decision &d) {
    const FuseFile &ff = st.b.file(*d.file);
    const std::string h = st.n.file(*d.file);
    const std::string iname = st.n.inode(*d.inode);
    if (d.rule == Rule::PassthroughRead)
      return said(d.rule,
                  fmt::format("{} is a passthrough file: served by the backing file {} under {}'s "
                              "credentials; the server sees no READ{}",
                              h, d.fb ? source_of(t_, st.b.backing(*d.fb)) : "(its backing_file)",
                              d.fb ? st.n.fb(*d.fb) : std::string("its fb"),
                              st.b.fc.connected ? "" : " (it works even after the abort)"));
    if (d.rule == Rule::DirectRead)
      return said(
          d.rule,
          fmt::format("FOPEN_DIRECT_IO: the READ goes straight to the server{}",
                      ff.passthrough ? " (FOPEN_DIRECT_IO overrides passthrough for reads)" : ""));
    if (d.rule == Rule::ReadSeedPassthrough || d.rule == Rule::CacheReadODirect)
      return fixed(d.rule);
    if (d.rule == Rule::CacheReadUptodate)
      return said(d.rule,
                  fmt::format("through the page cache: the page of {} is uptodate, so it is copied "
                              "out without a request to the server",
                              iname));
    return said(d.rule,
                fmt::format("through FUSE and the page cache: the page of {} was not cached, so a "
                            "READ goes to the server and the page is now uptodate",
                            iname));
  }

  // The decision of this step about write id by rule r.
  const Decision *of_write(const Step &st, WriteId id, std::initializer_list<Rule> rules) const {
    return st.find([&](const Decision &d) {
      return d.write == id && std::find(rules.begin(), rules.end(), d.rule) != rules.end();
    });
  }

  // How a direct_io write took the inode lock, as fuse_dio_wr_exclusive_lock and fuse_dio_lock
  // decided.
  Why dio_lock(const Step &st, WriteId id, bool held, bool woken) {
    const Write &w = st.a.writes.at(idx(id));
    const std::string iname = st.n.inode(w.inode);
    const FuseInode &fib = inode_before(st.b, w.inode);
    const FuseInode &fia = st.a.inode(w.inode);
    const Rule lock = write_lock_.at(idx(id)).value_or(Rule::DioWrExclusive);
    if (!w.exclusive) {
      std::string text =
          fmt::format("FOPEN_PARALLEL_DIRECT_WRITES: fuse_dio_lock takes the inode lock of "
                      "{} shared and counts the write as an uncached reference with no "
                      "backing object (fuse_inode_uncached_io_start, fb NULL){}",
                      iname,
                      !held   ? std::string(", given back when it returns")
                      : woken ? fmt::format(" (inode {} is now {})", iname, io_mode(fia, st.n))
                              : fmt::format(": {}", ctr_change(fib.iocachectr, fia.iocachectr)));
      if (fia.fb || fib.fb)
        text += "; on a passthrough inode that is fine since 6.9: only a different backing "
                "object conflicts";
      return {"fuse_dio_lock + fuse_inode_uncached_io_start", text};
    }
    if (lock == Rule::DioWrExclusive)
      return said(lock,
                  fmt::format("no FOPEN_PARALLEL_DIRECT_WRITES: the inode lock of {} is taken "
                              "exclusively and the write takes no io-mode reference",
                              iname));
    if (lock == Rule::DioWrExclusiveCacheIoMode)
      return said(lock,
                  fmt::format("FUSE_I_CACHE_IO_MODE is set on {} (cached users are there or "
                              "waiting): since 6.12 the inode lock is taken exclusively and the "
                              "write is not counted",
                              iname));
    const Decision *no =
        of_write(st, id,
                 {Rule::UncachedIoStartCachedInode, Rule::UncachedIoStartNullFb,
                  Rule::UncachedIoStartOtherFb, Rule::UncachedIoStartOtherBackingInode});
    return {"fuse_dio_lock + fuse_inode_uncached_io_start",
            fmt::format("fuse_dio_lock took the lock shared, but "
                        "fuse_inode_uncached_io_start refused the uncached reference ({}), so "
                        "it retook the lock exclusively and does not count the write{}",
                        no ? uncached_refusal_words(st, *no) : std::string("refused"),
                        lock == Rule::DioWrSharedCacheIoModeMissed
                            ? " (before 6.12 the FUSE_I_CACHE_IO_MODE test fell through to "
                              "here)"
                            : "")};
  }

  // How a write went, from the decisions the model made for it and the state after it.
  // woken: the write completes a call that slept (the step's counter change is not its own).
  Why describe_write(const Step &st, WriteId id, bool woken = false) {
    const Write &w = st.a.writes.at(idx(id));
    const FuseFile &ff = st.a.file(w.file);
    const std::string h = st.n.file(w.file);
    const std::string wn = st.n.write(id);
    const std::string iname = st.n.inode(w.inode);
    if (const Decision *pt = of_write(st, id, {Rule::PassthroughWrite}))
      return said(Rule::PassthroughWrite,
                  fmt::format("{} is a passthrough file: the write goes to the backing file under "
                              "{}'s credentials, holding the inode lock of {} exclusively for the "
                              "call; the server sees no WRITE",
                              h, pt->fb ? st.n.fb(*pt->fb) : std::string("its fb"), iname));
    const bool held = w.held && w.in_flight && !w.done;
    const bool disconnected = of_write(st, id, {Rule::WriteDisconnected}) != nullptr;
    if (of_write(st, id, {Rule::DirectWrite})) {
      Why lock = dio_lock(st, id, held, woken);
      std::string req;
      if (disconnected)
        req = "the connection was aborted, so the WRITE cannot be sent -> ENOTCONN";
      else if (held)
        req = fmt::format("the server holds the WRITE in flight until write_end {}, and the "
                          "lock{} stay{} taken until then",
                          wn, w.counted ? " and the uncached reference" : "", w.counted ? "" : "s");
      else
        req = "the WRITE went to the server and was answered, which gave the lock back";
      if (ff.passthrough)
        req += " (FOPEN_DIRECT_IO overrides passthrough for writes)";
      return {lock.rule, lock.why + "; " + req};
    }
    if (disconnected)
      return said(Rule::WriteDisconnected,
                  "the connection was aborted: the WRITE cannot be sent -> ENOTCONN");
    if (of_write(st, id, {Rule::CacheWriteODirect}))
      return said(Rule::CacheWriteODirect,
                  fmt::format("O_DIRECT: the write bypasses the page cache and goes to the server "
                              "under the exclusive inode lock of {}{}",
                              iname,
                              held ? fmt::format("; the server holds it until write_end {}", wn)
                                   : std::string("")));
    if (of_write(st, id, {Rule::CacheWriteWriteback}))
      return fixed(Rule::CacheWriteWriteback);
    std::string why = fmt::format("write-through: fuse_cache_write_iter copies the data into "
                                  "the page cache of {} and sends a WRITE under the exclusive "
                                  "inode lock",
                                  iname);
    if (of_write(st, id, {Rule::WriteSeedPassthrough}))
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
    return said(Rule::CacheWriteThrough, why);
  }

  Why write(const Step &st) {
    const std::string h = handle_name(st);
    if (!st.fd)
      return ebadf_fd(h);
    const Outcome &o = st.o;
    const bool new_write = st.a.writes.size() > st.b.writes.size();
    if (!new_write) {
      if (const Decision *d = st.own({Rule::WriteIsDir, Rule::WriteNotWritable}))
        return render(st, *d);
      return {"fuse_file_write_iter", fmt::format("the write returned {}", format_outcome(o))};
    }
    if (o.kind == Outcome::Kind::Blocks)
      return new_wait(st);
    return describe_write(st, WriteId{static_cast<std::uint32_t>(st.a.writes.size() - 1)});
  }

  Why write_end(const Step &st) {
    if (!st.write)
      return {"fuse_write_reply", "no WRITE of this name is held by the server"};
    const Write &wb = st.b.writes.at(idx(*st.write));
    const std::string wn = st.n.write(*st.write);
    const std::string iname = st.n.inode(wb.inode);
    if (st.own({Rule::WriteReplyAfterAbort}))
      return said(Rule::WriteReplyAfterAbort,
                  fmt::format("the connection was aborted while the server held {}: end_requests "
                              "already ended it with {} and gave back its lock and references; the "
                              "late answer changes nothing",
                              wn, err(wb.result)));
    const FuseInode &fib = st.b.inode(wb.inode);
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
        if (const Decision *d = st.own({Rule::UncachedIoEndDetach}))
          end += fmt::format(" and detaches {} from the inode, putting the inode's reference",
                             st.n.fb(*d->fb));
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
    if (!st.fd)
      return ebadf_fd(h);
    const Outcome &o = st.o;
    if (o.kind == Outcome::Kind::Errno) {
      if (const Decision *d = st.own({Rule::CachedIoOpenBackingInode}))
        return said(
            d->rule,
            fmt::format("the shared mapping needs a cached io reference, but inode {} holds "
                        "a backing object -> ETXTBSY",
                        st.n.inode(*d->inode)));
      if (const Decision *d = st.own_err(o.err))
        return render(st, *d);
      return {"fuse_file_mmap", fmt::format("mmap failed with {}", err(o.err))};
    }
    if (o.kind == Outcome::Kind::Blocks)
      return new_wait(st);
    const Decision *d = st.own({Rule::MmapPassthrough, Rule::MmapDirectIoPrivate,
                                Rule::MmapDirectIoShared, Rule::MmapPageCache});
    FPSIM_ASSERT(d != nullptr, "a mapping that was made chose its route");
    return render(st, *d);
  }

  Why mmap_route(const Step &st, const Decision &d) {
    if (d.task)
      return completion(st, *d.task);
    const std::string h = handle_name(st);
    const std::string mn = t_.names.mappings.at(static_cast<std::size_t>(st.s.mapping));
    const FuseFile &ff = st.b.file(*d.file);
    const FuseFile &fa = st.a.file(*d.file);
    const std::string iname = st.n.inode(ff.inode);
    if (d.rule == Rule::MmapPassthrough)
      return said(
          d.rule,
          fmt::format("{} is a passthrough file: {} maps the backing file, and "
                      "backing_file_mmap replaces vm_file with {}'s per-file backing_file, so "
                      "{} pins that backing_file, not the FUSE file, the inode's io mode or "
                      "the backing object{}",
                      h, mn, h, mn,
                      (ff.open_flags & fopen::DIRECT_IO)
                          ? " (FOPEN_DIRECT_IO does not matter: mmap of a passthrough file "
                            "always maps the backing file)"
                          : ""));
    if (d.rule == Rule::MmapDirectIoPrivate)
      return said(d.rule,
                  fmt::format("{} is a FOPEN_DIRECT_IO file: a private mapping invalidates the "
                              "page cache of {} and maps it without an io-mode change; {} pins the "
                              "FUSE file {}",
                              h, iname, mn, h));
    if (d.rule == Rule::MmapDirectIoShared) {
      const FuseInode &fib = st.b.inode(ff.inode);
      const FuseInode &fia = st.a.inode(ff.inode);
      if (ff.iomode == IoMode::None && fa.iomode == IoMode::Cached)
        return said(d.rule,
                    fmt::format("a shared mapping of FOPEN_DIRECT_IO file {} needs the page cache "
                                "(FUSE_DIRECT_IO_ALLOW_MMAP allows it): {} takes a cached io "
                                "reference that lasts until {} is released, not until munmap ({}); "
                                "{} pins the FUSE file {}",
                                h, h, h, ctr_change(fib.iocachectr, fia.iocachectr), mn, h));
      return said(
          d.rule,
          fmt::format("a shared mapping of FOPEN_DIRECT_IO file {}: {} already holds its "
                      "cached io reference from an earlier shared mapping, nothing changes; "
                      "{} pins the FUSE file {}",
                      h, h, mn, h));
    }
    return said(
        d.rule,
        fmt::format("{} goes through the page cache: {} maps it; inode {} is {}, the io mode "
                    "does not change; {} pins the FUSE file {}, which stays open after "
                    "close {}",
                    h, mn, iname, io_mode(st.a.inode(ff.inode), st.n), mn, h, h));
  }

  // ---- releases ----

  // What fuse_release did for a file that was released by this step.
  std::string release_text(const Step &st, FileId f) {
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
    const Decision *rel = st.find([f](const Decision &d) {
      return d.file == f && (d.rule == Rule::ReleaseNoOpen || d.rule == Rule::ReleaseDisconnected ||
                             d.rule == Rule::ReleaseSent);
    });
    FPSIM_ASSERT(rel != nullptr, "fuse_release decides whether RELEASE goes out");
    std::string sent = render(st, *rel).why;
    if (rel->rule == Rule::ReleaseSent && fb.iomode != IoMode::None)
      sent += " (the io mode already changed, so its answer does not matter)";
    parts.push_back(sent);
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
    if (st.o.kind == Outcome::Kind::Blocks)
      return new_wait(st);
    const FuseFile &fb = st.b.file(*st.fd);
    const FuseFile &fa = st.a.file(*st.fd);
    const Decision *flushed =
        st.own({Rule::FlushDisconnected, Rule::FlushDirectory, Rule::FlushNoflush, Rule::Flush});
    FPSIM_ASSERT(flushed != nullptr, "close(2) decides its FLUSH");
    const std::string flush = render(st, *flushed).why;
    const std::string rule = flushed->rule == Rule::FlushDisconnected ? "fuse_flush" : "";
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
      Why w = wait_reason(st.a, *st.awaited, st.n, note.wait);
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

  Why open_completion(const Step &st, TaskId id, Wait was) {
    const Task &ta = st.a.tasks.at(idx(id));
    const std::string iname = st.n.inode(ta.inode);
    const SysResult &r = ta.result;
    if (const Decision *d = st.for_task(id, Rule::CachedIoOpenBackingInode))
      return said(d->rule,
                  fmt::format("inode {} entered passthrough mode while the open slept (it holds "
                              "{}): fuse_file_cached_io_open clears FUSE_I_CACHE_IO_MODE and fails "
                              "with {}, which open(2) reports as EIO; {}",
                              iname, d->other_fb ? st.n.fb(*d->other_fb) : std::string("an fb"),
                              err(d->err),
                              r.sync_release ? "fuse_sync_release sends the server a RELEASE"
                                             : "no RELEASE is sent"));
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
                          iname, iname, io_mode(st.a.inode(ta.inode), st.n))};
    case Wait::PageLock:
      return {"fuse_open -> invalidate_inode_pages2",
              "the page the held WRITE kept locked was unlocked: the page-cache invalidation "
              "finishes and open(2) returns"};
    case Wait::TruncateLock:
    case Wait::InodeLock:
    case Wait::DirectReadLock:
    case Wait::FlushLock:
      break;
    }
    return {"do_truncate -> inode_lock",
            "the inode lock became free: the truncation runs and open(2) returns"};
  }

  Why read_completion(const Step &st, TaskId id, Wait was) {
    const SysResult &r = st.a.tasks.at(idx(id)).result;
    if (was == Wait::DirectReadLock) {
      if (r.err)
        return {"fuse_direct_io -> inode_lock",
                fmt::format("the inode lock became free, but the connection was aborted "
                            "meanwhile: the READ cannot be sent -> {}",
                            err(r.err))};
      return {"fuse_direct_io -> inode_lock",
              "the inode lock became free: the direct read goes to the server"};
    }
    if (r.err)
      return {"fuse_cache_read_iter -> filemap_read",
              fmt::format("the page was unlocked, but the connection was aborted meanwhile: "
                          "the READ cannot be sent -> {}",
                          err(r.err))};
    return {"fuse_cache_read_iter -> filemap_read",
            "the page was unlocked: the read goes on through FUSE and the page cache"};
  }

  Why mmap_completion(const Step &st, TaskId id, Wait was) {
    const Task &ta = st.a.tasks.at(idx(id));
    const std::string iname = st.n.inode(ta.inode);
    const std::string name = notes_.at(idx(id)).name;
    if (ta.result.err)
      return {"fuse_file_cached_io_open",
              fmt::format("inode {} entered passthrough mode while the mmap slept: the shared "
                          "mapping cannot take a cached io reference -> {} (mmap(2) returns "
                          "it as it is)",
                          iname, err(ta.result.err))};
    if (was == Wait::PageLock && !ta.shared)
      return {"fuse_file_mmap -> invalidate_inode_pages2",
              fmt::format("the page was unlocked: the invalidation finishes and the private "
                          "mapping {} is created",
                          name)};
    return {"fuse_file_mmap + fuse_file_cached_io_open",
            fmt::format("the file takes its cached io reference (inode {} is now {}) and the "
                        "shared mapping {} is created",
                        iname, io_mode(st.a.inode(ta.inode), st.n), name)};
  }

  // How a woken call finished; stored for its await. It slept in the wait it had when the step
  // began.
  Why completion(const Step &st, TaskId id) {
    const TaskNote &note = notes_.at(idx(id));
    const std::optional<Wait> was = wait_of(note.wait_before_step);
    FPSIM_ASSERT(was.has_value(), "a sleeping call's rule is a wait");
    const std::optional<BlockingOp> call = blocking_op(note.op);
    FPSIM_ASSERT(call.has_value(), "only a call that may block sleeps");
    switch (*call) {
    case BlockingOp::Open:
    case BlockingOp::Create:
      return open_completion(st, id, *was);
    case BlockingOp::Read:
      return read_completion(st, id, *was);
    case BlockingOp::Mmap:
      return mmap_completion(st, id, *was);
    case BlockingOp::Write:
    case BlockingOp::WriteBegin: {
      Why w = describe_write(st, st.a.tasks.at(idx(id)).write, true);
      return {"inode_lock -> " + w.rule, "it got the inode lock: " + w.why};
    }
    case BlockingOp::Close:
      if (st.a.tasks.at(idx(id)).result.err)
        return {"fuse_flush -> inode_lock",
                fmt::format("the inode lock became free, but the connection was aborted "
                            "meanwhile: the FLUSH fails -> {}; the fd is closed all the same",
                            err(st.a.tasks.at(idx(id)).result.err))};
      return {"fuse_flush -> inode_lock",
              "the inode lock became free: fuse_flush sends FLUSH and close(2) returns"};
    }
    FPSIM_UNREACHABLE("a BlockingOp outside the enum");
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
    const Decision *d = st.own({Rule::AbortNoSuperblock, Rule::AbortAlready, Rule::Abort});
    FPSIM_ASSERT(d != nullptr, "the abort file decides");
    return render(st, *d);
  }

  std::vector<std::string> busy_files(const Model &m, const ObjectNames &n) const {
    std::vector<std::string> v;
    for (std::uint32_t f = 0; f < m.files.size(); ++f)
      if (!m.files[f].released)
        v.push_back(n.file(FileId{f}));
    return v;
  }

  Why umount(const Step &st) {
    const Decision *d = st.own(
        {Rule::UmountNotMounted, Rule::UmountBusy, Rule::UmountDetached, Rule::UmountKillSb});
    FPSIM_ASSERT(d != nullptr, "umount decides");
    return render(st, *d);
  }

  Why umount_text(const Step &st, const Decision &d) {
    const Rule rule = d.rule;
    const Model &b = st.b;
    if (rule == Rule::UmountBusy)
      return said(
          rule, fmt::format("files of the mount are still open ({}) -> EBUSY; umount detach would "
                            "hide the mount and let the superblock die with its last file",
                            and_list(busy_files(b, st.n))));
    if (rule == Rule::UmountDetached)
      return said(
          rule, fmt::format("the mount disappears from the namespace, but the superblock lives on "
                            "while {} {} open; it dies with the last of them",
                            and_list(busy_files(b, st.n)),
                            busy_files(b, st.n).size() == 1 ? "is" : "are"));
    return said(rule,
                fmt::format("no file is open: the superblock goes now, every inode is evicted "
                            "(fuse_evict_inode), and the superblock's connection reference is "
                            "dropped; {}",
                            st.has(Rule::ConnFree)
                                ? "that was the last one"
                                : "backing ids outlive the mount while /dev/fuse is open"));
  }

  Why dev_close(const Step &st) {
    if (const Decision *d = st.own({Rule::DevReleaseClosed}))
      return render(st, *d);
    std::vector<std::string> parts;
    parts.emplace_back("the server's last /dev/fuse fd closes");
    if (st.own({Rule::Abort}))
      parts.emplace_back("that aborts the connection (fuse_abort_conn)");
    if (st.own({Rule::ConnFree}))
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
      for (const Decision &d : *st.decisions)
        if (d.rule == Rule::AbortEndsWrite)
          out.push_back(render(st, d).why);
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
                          x.fb ? fmt::format("; fuse_free_inode puts its {}", st.n.fb(*x.fb))
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
        if (const Decision *d = st.find([i](const Decision &e) {
              return e.rule == Rule::UncachedIoEndDetach && e.inode == InodeId{i};
            }))
          s += "; " + render(st, *d).why;
        out.push_back(s);
      }
    if (mask & kFbRefs)
      for (std::uint32_t i = 0; i < b.backings.size(); ++i) {
        const FuseBacking &x = b.backings[i];
        const FuseBacking &y = a.backings[i];
        if (x.freed)
          continue;
        const std::string bn = st.n.fb(FbId{i});
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
        } else if (!y.done &&
                   std::find(resleeps_.begin(), resleeps_.end(), TaskId{i}) != resleeps_.end()) {
          const Why w = wait_reason(a, TaskId{i}, st.n, note.wait);
          out.push_back(fmt::format("the {} {} (line {}) got past its first wait and now "
                                    "sleeps again: {}",
                                    op_word(note.op), note.name, note.line, w.why));
        }
      }
    if (mask & kConn) {
      if (st.has(Rule::Abort) && st.s.op != Op::Abort && st.s.op != Op::DevClose)
        out.emplace_back("the connection is aborted (fuse_abort_conn)");
      if (const Decision *d = st.any(Rule::KillSbLastFile); d && st.s.op != Op::Umount)
        out.push_back(render(st, *d).why);
      if (const Decision *d = st.any(Rule::ConnFree); d && st.s.op != Op::DevClose)
        out.push_back(render(st, *d).why);
    }
    return out;
  }

  const Trace &t_;
  std::vector<TaskNote> notes_;
  std::vector<TaskId> resleeps_;                // calls that slept again in this step
  std::vector<std::optional<Rule>> write_lock_; // per write: how fuse_dio_wr_exclusive_lock chose
  std::string last_open_rule_;
  int last_open_line_ = 0;
};

// ---- state tables ----------------------------------------------------------------------------

StateTables build_state(const Trace &t, const Model &m, const Model &before, const ObjectNames &n,
                        const std::vector<std::optional<FileId>> &fds,
                        const std::vector<TaskNote> &notes) {
  StateTables s;
  const FuseConn &c = m.fc;
  s.conn = {c.initialized, c.passthrough, c.max_stack_depth, c.connected, c.mounted,
            c.sb_alive,    c.dev_open,    c.freed,           c.no_open}; // in Conn's order
  for (std::uint32_t i = 0; i < m.inodes.size(); ++i) {
    const FuseInode &fi = m.inodes[i];
    if (fi.name == kRootInodeName || fi.evicted)
      continue;
    StateTables::Inode row;
    row.name = n.inode(InodeId{i});
    row.ctr = fi.iocachectr;
    row.mode = io_mode(fi, n);
    row.fb = fi.fb ? n.fb(*fi.fb) : "-";
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
    row.name = n.fb(FbId{i});
    row.id = b.id;
    row.refs = b.count.value();
    row.freed = b.freed;
    row.source = source_of(t, b);
    row.holders = fb_holders(m, FbId{i}, n, "id map");
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
    row.iomode = iomode_name(ff.iomode);
    if (ff.passthrough) {
      row.passthrough = ff.opened_with_fb ? n.fb(*ff.opened_with_fb) : "yes";
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
    s.ids.push_back({id, n.fb(fb)});
  std::sort(s.ids.begin(), s.ids.end(),
            [](const StateTables::Id &x, const StateTables::Id &y) { return x.id < y.id; });
  s.next_id = m.fc.idr_next;
  for (std::uint32_t k = 0; k < m.tasks.size(); ++k) {
    const Task &task = m.tasks[k];
    if (task.done)
      continue;
    const std::string name = k < notes.size() ? notes[k].name : fmt::format("task#{}", k);
    const std::string what = k < notes.size() ? op_word(notes[k].op) : std::string("call");
    s.asleep.push_back(fmt::format(
        "{} ({}, line {}): {}", name, what, k < notes.size() ? notes[k].line : 0,
        k < notes.size() ? wait_short(task, n, notes[k].wait) : std::string("a wait queue")));
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
    Step st{t_, s, o_, bindings, before, inner_.model(), names_, p_, {}, {}, {}, {}, &fds_, &decisions_};
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
    decisions_.assign(after.decisions.begin(), after.decisions.end());
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
    out.decisions = explainer_.records(st);
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
    // Only opens make files, and only calls that may block make tasks: both are named by the
    // handle, mapping or write an await of them would give.
    auto declared = [&]() -> std::string {
      if (!may_block(s.op) && s.op != Op::Opendir)
        return "(unnamed)";
      const NameRef name = blocked_name(s);
      return t_.names.of(name.kind).at(static_cast<std::size_t>(name.slot));
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
  std::vector<Decision> decisions_; // the step's, as the model recorded them
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
