#include "sim/exec/sim_executor.h"

#include "base/assert.h"
#include "sim/trace/printer.h"

#include <cerrno>
#include <fmt/format.h>

namespace fpsim::sim {

using namespace model;

namespace {

Outcome from_errno_or(const SysResult &r, Outcome ok) {
  if (r.err) {
    Outcome o = Outcome::errno_(r.err);
    o.release = r.sync_release;
    o.internal_err = r.internal_err;
    return o;
  }
  return ok;
}

Outcome of_kind(Outcome::Kind k) {
  Outcome o;
  o.kind = k;
  return o;
}

Outcome route_outcome(const SysResult &r) {
  switch (r.route) {
  case Route::Backing:
    return from_errno_or(r, of_kind(Outcome::Kind::Backing));
  case Route::Fuse:
    return from_errno_or(r, of_kind(Outcome::Kind::Fuse));
  case Route::None:
    return from_errno_or(r, Outcome::ok());
  }
  FPSIM_UNREACHABLE("a route outside the enum");
}

BackingFdKind fd_kind(SourceKind k) {
  switch (k) {
  case SourceKind::File:
    return BackingFdKind::Regular;
  case SourceKind::OPath:
    return BackingFdKind::OPath;
  case SourceKind::Dir:
    return BackingFdKind::Dir;
  case SourceKind::Pipe:
    return BackingFdKind::Pipe;
  case SourceKind::Socket:
    return BackingFdKind::Socket;
  case SourceKind::DevNull:
    return BackingFdKind::DevNull;
  case SourceKind::BadFd:
    return BackingFdKind::BadFd;
  }
  FPSIM_UNREACHABLE("a backing source outside the enum");
}

template <typename T> void grow(std::vector<T> &v, std::size_t n) {
  if (v.size() < n)
    v.resize(n);
}

} // namespace

void SimExecutor::begin(const Trace &t, KernelProfile p) {
  trace_ = &t;
  m_.emplace(p);
  m_->mutant = mutant_;
  checker_ = InvariantChecker{};
  names_ = ObjectNames{};
  fds_.assign(t.names.handles.size(), std::nullopt);
  last_file_.assign(t.names.handles.size(), std::nullopt);
  vmas_.assign(t.names.mappings.size(), std::nullopt);
  writes_.assign(t.names.writes.size(), std::nullopt);
  fbs_.assign(t.names.backings.size(), std::nullopt);
  exists_.assign(t.names.mount_files.size(), false);
  for (std::size_t i = 0; i < exists_.size(); ++i)
    exists_[i] = !t.names.mount_file_created[i];
  pending_.clear();
  last_internal_ = 0;
  step_violations_.clear();
}

void SimExecutor::name_new_objects(const std::string &file_name) {
  const Model &m = *m_;
  const std::size_t before = names_.files.size();
  grow(names_.files, m.files.size());
  for (std::size_t i = before; i < m.files.size(); ++i)
    names_.files[i] = file_name;
  // An inode's name never changes, so only new ones need one: renaming all of them on every
  // open made a trace with many files quadratic.
  const std::size_t inodes_before = names_.inodes.size();
  grow(names_.inodes, m.inodes.size());
  for (std::size_t i = inodes_before; i < m.inodes.size(); ++i)
    names_.inodes[i] = inode_name(m.inodes[i], trace_->names);
}

std::optional<InodeId> SimExecutor::find_inode(int mount_slot) const {
  return m_->find_inode(static_cast<std::uint32_t>(mount_slot));
}

Outcome SimExecutor::open_like(const Statement &s, const Bindings &bindings) {
  Model &m = *m_;
  const auto h = static_cast<std::size_t>(s.handle);
  const std::string &hname = trace_->names.handles.at(h);
  std::string why;
  std::optional<OpenReply> reply = open_reply(s.reply, bindings, trace_->names, m_->profile, &why);
  if (!reply)
    return Outcome::invalid(why);
  const std::uint64_t sync_before = m.sync_releases_sent;
  SysResult r;
  if (s.op == Op::Opendir) {
    r = fuse_dir_open(m, *reply);
  } else {
    const auto f = static_cast<std::size_t>(s.file);
    OpenFlags flags;
    flags.access = s.access;
    flags.o_direct = s.o_direct;
    flags.o_trunc = s.o_trunc;
    flags.o_creat_excl = s.op == Op::Create;
    r = path_openat(m, static_cast<std::uint32_t>(f), exists_[f], flags, *reply);
    if (r.created)
      exists_[f] = true;
  }
  name_new_objects(hname);
  last_internal_ = r.internal_err;
  if (!r.blocked && s.op != Op::Opendir) {
    auto v = InvariantChecker::check_open_release(m, r, m.sync_releases_sent - sync_before);
    step_violations_.insert(step_violations_.end(), v.begin(), v.end());
  }
  if (r.blocked) {
    pending_[blocked_name(s)] = Pending{*r.task, s.op, s.handle};
    last_file_[h] = m.tasks.at(idx(*r.task)).file;
    return of_kind(Outcome::Kind::Blocks);
  }
  if (r.file) {
    fds_[h] = *r.file;
    last_file_[h] = *r.file;
  }
  return from_errno_or(r, Outcome::ok());
}

Outcome SimExecutor::await(const Statement &s) {
  Model &m = *m_;
  auto it = pending_.find(awaited_name(s));
  const std::string &name = trace_->names.of(s.await_kind).at(static_cast<std::size_t>(s.await_slot));
  if (it == pending_.end())
    return Outcome::invalid(fmt::format("nothing is blocked on {}", name));
  const Pending p = it->second;
  const Task &t = m.tasks.at(idx(p.task));
  if (!t.done)
    return of_kind(Outcome::Kind::Blocks);
  pending_.erase(it);
  const SysResult &r = t.result;
  const std::optional<BlockingOp> op = blocking_op(p.op);
  FPSIM_ASSERT(op.has_value(), "only a call that may block is pending");
  switch (*op) {
  case BlockingOp::Open:
  case BlockingOp::Create: {
    const auto h = static_cast<std::size_t>(p.handle);
    last_internal_ = r.internal_err;
    if (r.file)
      fds_[h] = *r.file;
    return from_errno_or(r, Outcome::ok());
  }
  case BlockingOp::Read:
  case BlockingOp::Write:
    return route_outcome(r);
  case BlockingOp::Mmap:
    if (r.vma) {
      vmas_[static_cast<std::size_t>(s.await_slot)] = *r.vma;
      grow(names_.vmas, m.vmas.size());
      names_.vmas[idx(*r.vma)] = name;
    }
    return from_errno_or(r, Outcome::ok());
  case BlockingOp::WriteBegin: {
    // Held by the server when the lock came (outcome ok): write_end answers it, or returns the
    // ECONNABORTED it got if the connection was aborted since, as for an unblocked write_begin.
    if (r.write && !r.err && r.route == Route::None)
      writes_[static_cast<std::size_t>(s.await_slot)] = *r.write;
    return route_outcome(r);
  }
  case BlockingOp::Close:
    return from_errno_or(r, Outcome::ok());
  }
  FPSIM_UNREACHABLE("a BlockingOp outside the enum");
}

std::optional<std::string> SimExecutor::sleeping_call_limit() const {
  std::size_t asleep = 0;
  for (std::uint32_t k : m_->unfinished_tasks)
    asleep += !m_->tasks[k].done;
  if (asleep < kMaxCallsAsleep)
    return std::nullopt;
  return fmt::format("{} calls are asleep: at most {} at once (the sleeping-call limit)", asleep,
                     kMaxCallsAsleep);
}

std::optional<std::string> SimExecutor::unrunnable(const Statement &s,
                                                   const Bindings &bindings) const {
  std::string why;
  if (s.op == Op::BackingClose && !bindings.close_target(s, trace_->names, &why))
    return why;
  if (s.op != Op::WriteEnd)
    return std::nullopt;
  const auto w = static_cast<std::size_t>(s.write);
  const std::string &wname = trace_->names.writes.at(w);
  if (pending_.count(NameRef{NameKind::Write, s.write}))
    return fmt::format("{} is still waiting for the inode lock: the server never received it",
                       wname);
  if (!writes_[w])
    return fmt::format("{} is not in flight: its write_begin was not held by the server", wname);
  return std::nullopt;
}

Outcome SimExecutor::step(const Statement &s, const Bindings &bindings) {
  step_violations_.clear();
  if (may_block(s.op))
    if (std::optional<std::string> why = sleeping_call_limit())
      return Outcome::invalid(*why);
  m_->step++;
  if (std::optional<std::string> why = unrunnable(s, bindings))
    return Outcome::invalid(*why);
  const Outcome out = run(s, bindings);
  fuse_run_woken_tasks(*m_);
  name_new_objects("(unnamed)");
  return out;
}

Outcome SimExecutor::run(const Statement &s, const Bindings &bindings) {
  Model &m = *m_;
  switch (s.op) {
  case Op::Init: {
    fuse_mount(m, init_reply(s.init));
    return Outcome::ok();
  }
  case Op::BackingOpen:
    return backing_open(s);
  case Op::BackingClose: {
    std::string why;
    const std::uint32_t id = *bindings.close_target(s, trace_->names, &why);
    return from_errno_or(fuse_dev_ioctl_backing_close(m, id, !s.unprivileged), Outcome::ok());
  }
  case Op::Open:
  case Op::Create:
  case Op::Opendir:
    return open_like(s, bindings);
  case Op::Read:
  case Op::Write:
  case Op::WriteBegin:
  case Op::Mmap:
  case Op::Close:
    return on_fd(s);
  case Op::WriteEnd: {
    auto &w = writes_[static_cast<std::size_t>(s.write)];
    const Outcome out = route_outcome(fuse_write_reply(m, *w));
    w.reset();
    return out;
  }
  case Op::Munmap: {
    // munmap of a range that is not mapped succeeds and does nothing.
    auto &v = vmas_[static_cast<std::size_t>(s.mapping)];
    if (v)
      vma_close(m, *v);
    v.reset();
    return Outcome::ok();
  }
  case Op::Await:
    return await(s);
  case Op::Abort:
    return from_errno_or(fuse_conn_abort_write(m), Outcome::ok());
  case Op::Umount:
    return from_errno_or(fuse_umount(m, s.detach), Outcome::ok());
  case Op::DevClose:
    return from_errno_or(fuse_dev_release(m), Outcome::ok());
  case Op::Check:
    break;
  }
  FPSIM_UNREACHABLE("a check statement reached step(); checks go through check()");
}

Outcome SimExecutor::backing_open(const Statement &s) {
  Model &m = *m_;
  BackingMapArg a;
  a.kind = fd_kind(s.source);
  a.source = s.backing_file < 0 ? 0 : static_cast<std::uint32_t>(s.backing_file);
  a.source_stack_depth = s_stack_depth(s.source_fs);
  a.flags = s.map_flags;
  a.padding = s.map_padding;
  a.capable = !s.unprivileged;
  const SysResult r = fuse_dev_ioctl_backing_open(m, a);
  if (r.err)
    return Outcome::errno_(r.err);
  const FbId fb{static_cast<std::uint32_t>(m.backings.size() - 1)};
  fbs_[static_cast<std::size_t>(s.backing)] = fb;
  grow(names_.fbs, m.backings.size());
  names_.fbs[idx(fb)] = trace_->names.backings.at(static_cast<std::size_t>(s.backing));
  Outcome out = of_kind(Outcome::Kind::Id);
  out.id = r.value;
  return out;
}

// A call on the handle's fd (EBADF without one): read, write, write_begin, mmap or close. One
// that sleeps waits for an await.
Outcome SimExecutor::on_fd(const Statement &s) {
  Model &m = *m_;
  std::optional<FileId> &fd = fds_[static_cast<std::size_t>(s.handle)];
  if (!fd)
    return Outcome::errno_(EBADF);
  const bool held = s.op == Op::WriteBegin;
  SysResult r;
  if (s.op == Op::Read) {
    r = fuse_file_read_iter(m, *fd);
  } else if (s.op == Op::Mmap) {
    r = fuse_file_mmap(m, *fd, s.shared);
  } else if (s.op == Op::Close) {
    r = fuse_close_fd(m, *fd);
    fd.reset(); // the fd is gone whatever close(2) returns, and while it sleeps
  } else {
    FPSIM_ASSERT(s.op == Op::Write || held, "on_fd() is for calls on a handle's fd");
    r = fuse_file_write_iter(m, *fd, held);
    if (r.write) {
      grow(names_.writes, m.writes.size());
      names_.writes[idx(*r.write)] =
          held ? trace_->names.writes.at(static_cast<std::size_t>(s.write)) : "write";
    }
  }
  if (r.blocked) {
    pending_[blocked_name(s)] = Pending{*r.task, s.op, s.handle};
    return of_kind(Outcome::Kind::Blocks);
  }
  if (held && r.write)
    writes_[static_cast<std::size_t>(s.write)] = *r.write;
  if (s.op == Op::Close)
    return from_errno_or(r, Outcome::ok());
  if (s.op != Op::Mmap)
    return route_outcome(r);
  if (r.vma) {
    vmas_[static_cast<std::size_t>(s.mapping)] = *r.vma;
    grow(names_.vmas, m.vmas.size());
    names_.vmas[idx(*r.vma)] = trace_->names.mappings.at(static_cast<std::size_t>(s.mapping));
  }
  return from_errno_or(r, Outcome::ok());
}

namespace {

// What a check found to differ, joined with "; ".
struct Diffs {
  std::string text;
  void add(const std::string &d) { text += (text.empty() ? "" : "; ") + d; }
  void expect(std::string_view what, std::int64_t want, std::int64_t got) {
    if (want != got)
      add(fmt::format("{}: expected {}, got {}", what, want, got));
  }
};

} // namespace

CheckResult SimExecutor::check(const Statement &s, const Bindings &) {
  const CheckSpec &c = s.check;
  std::string diffs;
  switch (c.kind) {
  case CheckKind::Inode:
    diffs = check_inode(c);
    break;
  case CheckKind::Backing:
    diffs = check_backing(c);
    break;
  case CheckKind::File:
    diffs = check_file(c);
    break;
  case CheckKind::Conn:
  case CheckKind::Last:
  case CheckKind::Drained:
    diffs = check_conn(c);
    break;
  }
  if (diffs.empty())
    return CheckResult{};
  return CheckResult{CheckResult::Kind::Fail, diffs};
}

std::string SimExecutor::check_inode(const CheckSpec &c) const {
  const Model &m = *m_;
  const std::optional<InodeId> id = find_inode(c.slot);
  const FuseInode blank;
  const FuseInode &fi = id ? m.inode(*id) : blank;
  auto fb_label = [&](std::optional<FbId> fb) {
    return fb ? names_.fb(m, *fb) : std::string("none");
  };
  Diffs d;
  for (const CheckProp &p : c.props) {
    if (p.key == CheckKey::Ctr)
      d.expect("ctr", p.value, fi.iocachectr);
    if (p.key == CheckKey::CacheIoMode)
      d.expect("cache_io_mode", p.value, fi.cache_io_mode);
    if (p.key != CheckKey::Fb)
      continue;
    const std::optional<FbId> want =
        p.value < 0 ? std::nullopt : fbs_.at(static_cast<std::size_t>(p.value));
    if (p.value >= 0 && !want)
      d.add(fmt::format("fb: {} was never registered",
                        trace_->names.backings.at(static_cast<std::size_t>(p.value))));
    else if (want != fi.fb)
      d.add(fmt::format("fb: expected {}, got {}", fb_label(want), fb_label(fi.fb)));
  }
  return d.text;
}

std::string SimExecutor::check_backing(const CheckSpec &c) const {
  const auto &fb = fbs_.at(static_cast<std::size_t>(c.slot));
  if (!fb)
    return fmt::format("{} was never registered",
                       trace_->names.backings.at(static_cast<std::size_t>(c.slot)));
  const FuseBacking &backing = m_->backing(*fb);
  Diffs d;
  for (const CheckProp &p : c.props) {
    if (p.key == CheckKey::Refs)
      d.expect("refs", p.value, backing.count.value());
    if (p.key == CheckKey::Freed && !backing.freed)
      d.add(fmt::format("expected freed, but refcount is {}", backing.count.value()));
  }
  return d.text;
}

std::string SimExecutor::check_file(const CheckSpec &c) const {
  const auto &f = last_file_.at(static_cast<std::size_t>(c.slot));
  if (!f)
    return fmt::format("{} was never opened",
                       trace_->names.handles.at(static_cast<std::size_t>(c.slot)));
  const FuseFile &ff = m_->file(*f);
  Diffs d;
  for (const CheckProp &p : c.props) {
    if (p.key == CheckKey::Iomode)
      d.expect("iomode (0 none, 1 cached, 2 uncached)", p.value, static_cast<int>(ff.iomode));
    if (p.key == CheckKey::Passthrough)
      d.expect("passthrough", p.value, ff.passthrough.has_value());
    if (p.key == CheckKey::Released)
      d.expect("released", p.value, ff.released);
  }
  return d.text;
}

// The connection, the last open's internal errno, what has drained.
std::string SimExecutor::check_conn(const CheckSpec &c) const {
  const Model &m = *m_;
  Diffs d;
  for (const CheckProp &p : c.props) {
    if (c.kind == CheckKind::Conn && p.key == CheckKey::Passthrough)
      d.expect("passthrough", p.value, m.fc.passthrough);
    if (c.kind == CheckKind::Conn && p.key == CheckKey::Connected)
      d.expect("connected", p.value, m.fc.connected);
    if (c.kind == CheckKind::Conn && p.key == CheckKey::NoOpen)
      d.expect("no_open", p.value, m.fc.no_open);
    if (c.kind == CheckKind::Last && p.key == CheckKey::Internal && p.value != last_internal_)
      d.add(fmt::format("internal: expected {}, got {}", errno_name(static_cast<int>(p.value)),
                        errno_name(last_internal_)));
  }
  if (c.kind == CheckKind::Drained)
    for (const Violation &v : InvariantChecker::check_drained(m, names_, DrainScope::References))
      d.add(v.message);
  return d.text;
}

std::vector<Violation> SimExecutor::after_step() {
  std::vector<Violation> v = std::move(step_violations_);
  step_violations_.clear();
  if (checks_) {
    auto more = checker_.check(*m_, names_, check_mode_);
    v.insert(v.end(), more.begin(), more.end());
  } else {
    checker_.lose_track();
  }
  m_->clear_touched();
  return v;
}

std::vector<Violation> SimExecutor::drain() {
  return InvariantChecker::check_drained(*m_, names_, DrainScope::Everything);
}

} // namespace fpsim::sim
