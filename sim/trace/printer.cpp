#include "sim/trace/printer.h"

#include "base/assert.h"
#include <cstring>
#include <fmt/format.h>

namespace fpsim::sim {

std::string errno_name(int e) {
  if (e == 0)
    return "0";
  if (const char *n = strerrorname_np(e))
    return n;
  return fmt::format("errno{}", e);
}

std::optional<int> parse_errno(std::string_view name) {
  // Aliases glibc defines to the same value; strerrorname_np names only the canonical one.
  if (name == "EWOULDBLOCK")
    return EAGAIN;
  if (name == "EDEADLOCK")
    return EDEADLK;
  if (name == "ENOTSUP")
    return EOPNOTSUPP;
  for (int e = 1; e < 256; ++e)
    if (const char *n = strerrorname_np(e); n && name == n)
      return e;
  return std::nullopt;
}

std::string format_outcome(const Outcome &o) {
  std::string s;
  switch (o.kind) {
  case Outcome::Kind::Ok:
    s = "ok";
    break;
  case Outcome::Kind::Errno:
    s = errno_name(o.err);
    break;
  case Outcome::Kind::Id:
    s = fmt::format("id={}", o.id);
    break;
  case Outcome::Kind::Backing:
    s = "backing";
    break;
  case Outcome::Kind::Fuse:
    s = "fuse";
    break;
  case Outcome::Kind::Blocks:
    s = "blocks";
    break;
  case Outcome::Kind::Invalid:
    s = fmt::format("invalid ({})", o.message);
    break;
  }
  if (o.release)
    s += " +release";
  return s;
}

std::string format_outcome_detailed(const Outcome &o) {
  std::string s = format_outcome(o);
  if (o.internal_err)
    s += fmt::format(" (internal {})", errno_name(o.internal_err));
  return s;
}

std::string format_reply(const ReplySpec &r, const Names &names) {
  switch (r.kind) {
  case ReplySpec::Kind::Error:
    return "error:" + errno_name(r.error);
  case ReplySpec::Kind::Enosys:
    return "enosys";
  case ReplySpec::Kind::Flags:
    break;
  }
  static constexpr std::pair<std::uint32_t, const char *> kFlags[] = {
      {reply_flag::PASSTHROUGH, "passthrough"},
      {reply_flag::DIRECT_IO, "direct_io"},
      {reply_flag::KEEP_CACHE, "keep_cache"},
      {reply_flag::NOFLUSH, "noflush"},
      {reply_flag::PARALLEL_DIRECT_WRITES, "parallel_direct_writes"},
      {reply_flag::NONSEEKABLE, "nonseekable"},
      {reply_flag::STREAM, "stream"},
      {reply_flag::CACHE_DIR, "cache_dir"},
  };
  std::string s;
  auto add = [&s](std::string_view part) {
    if (!s.empty())
      s += '|';
    s += part;
  };
  for (const auto &[bit, name] : kFlags)
    if (r.flags & bit)
      add(name);
  for (int b = 0; b < 32; ++b)
    if (r.raw_bits & (1u << b))
      add(fmt::format("bit:{}", b));
  if (s.empty())
    s = "cached";
  switch (r.id_kind) {
  case ReplySpec::IdKind::None:
    break;
  case ReplySpec::IdKind::Name:
    s += "@" + names.backings.at(static_cast<std::size_t>(r.backing));
    break;
  case ReplySpec::IdKind::Literal:
    s += fmt::format("@id={}", r.literal_id);
    break;
  }
  return s;
}

namespace {

std::string source_text(const Statement &s, const Names &n) {
  switch (s.source) {
  case SourceKind::File:
    return n.backing_files.at(static_cast<std::size_t>(s.backing_file));
  case SourceKind::OPath:
    return "opath:" + n.backing_files.at(static_cast<std::size_t>(s.backing_file));
  case SourceKind::Dir:
    return "dir";
  case SourceKind::Pipe:
    return "pipe";
  case SourceKind::Socket:
    return "socket";
  case SourceKind::DevNull:
    return "devnull";
  case SourceKind::BadFd:
    return "badfd";
  }
  FPSIM_UNREACHABLE("a SourceKind outside the enum");
}

std::string access_text(AccessMode a) {
  switch (a) {
  case AccessMode::ReadOnly:
    return "rdonly";
  case AccessMode::WriteOnly:
    return "wronly";
  case AccessMode::ReadWrite:
    return "rdwr";
  }
  FPSIM_UNREACHABLE("an AccessMode outside the enum");
}

std::string check_text(const Statement &s, const Names &n) {
  const CheckSpec &c = s.check;
  std::string t = "check ";
  const auto slot = static_cast<std::size_t>(c.slot);
  switch (c.kind) {
  case CheckKind::Inode:
    t += "inode " + n.mount_files.at(slot);
    break;
  case CheckKind::Backing:
    t += "backing " + n.backings.at(slot);
    break;
  case CheckKind::File:
    t += "file " + n.handles.at(slot);
    break;
  case CheckKind::Conn:
    t += "conn";
    break;
  case CheckKind::Last:
    t += "last";
    break;
  case CheckKind::Drained:
    t += "drained";
    break;
  }
  for (const CheckProp &p : c.props) {
    switch (p.key) {
    case CheckKey::Ctr:
      t += fmt::format(" ctr={}", p.value);
      break;
    case CheckKey::Fb:
      t += p.value < 0 ? std::string(" fb=none")
                       : " fb=" + n.backings.at(static_cast<std::size_t>(p.value));
      break;
    case CheckKey::CacheIoMode:
      t += fmt::format(" cache_io_mode={}", p.value);
      break;
    case CheckKey::Refs:
      t += fmt::format(" refs={}", p.value);
      break;
    case CheckKey::Freed:
      t += " freed";
      break;
    case CheckKey::Iomode:
      t += fmt::format(" iomode={}", iomode_name(static_cast<model::IoMode>(p.value)));
      break;
    case CheckKey::Passthrough:
      t += fmt::format(" passthrough={}", p.value);
      break;
    case CheckKey::Released:
      t += fmt::format(" released={}", p.value);
      break;
    case CheckKey::Connected:
      t += fmt::format(" connected={}", p.value);
      break;
    case CheckKey::NoOpen:
      t += fmt::format(" no_open={}", p.value);
      break;
    case CheckKey::Internal:
      t += " internal=" + errno_name(static_cast<int>(p.value));
      break;
    }
  }
  return t;
}

} // namespace

std::string format_statement(const Statement &s, const Names &n) {
  auto name = [](const std::vector<std::string> &v, int slot) {
    return v.at(static_cast<std::size_t>(slot));
  };
  std::string t(op_name(s.op));
  switch (s.op) {
  case Op::Init:
    if (s.init.passthrough)
      t += " passthrough";
    t += fmt::format(" max_stack_depth={}", s.init.max_stack_depth);
    if (s.init.writeback_cache)
      t += " writeback_cache";
    if (s.init.direct_io_allow_mmap)
      t += " direct_io_allow_mmap";
    if (s.init.no_init_ext)
      t += " no_init_ext";
    break;
  case Op::BackingOpen:
    t += " " + name(n.backings, s.backing) + " " + source_text(s, n);
    switch (s.source_fs) {
    case SourceFs::BackingDir:
      break;
    case SourceFs::Overlay:
      t += " on=overlay";
      break;
    }
    if (s.map_flags)
      t += fmt::format(" flags={}", s.map_flags);
    if (s.map_padding)
      t += fmt::format(" padding={}", s.map_padding);
    if (s.unprivileged)
      t += " unprivileged";
    break;
  case Op::BackingClose:
    t += s.literal_id ? fmt::format(" id={}", *s.literal_id) : " " + name(n.backings, s.backing);
    if (s.unprivileged)
      t += " unprivileged";
    break;
  case Op::Open:
    t += " " + name(n.handles, s.handle) + " " + name(n.mount_files, s.file) + " " +
         access_text(s.access);
    if (s.o_direct)
      t += " o_direct";
    if (s.o_trunc)
      t += " o_trunc";
    t += " reply=" + format_reply(s.reply, n);
    break;
  case Op::Create:
    t += " " + name(n.handles, s.handle) + " " + name(n.mount_files, s.file) +
         " reply=" + format_reply(s.reply, n);
    break;
  case Op::Opendir:
    t += " " + name(n.handles, s.handle) + " reply=" + format_reply(s.reply, n);
    break;
  case Op::Read:
  case Op::Write:
  case Op::Close:
    t += " " + name(n.handles, s.handle);
    break;
  case Op::Mmap:
    t += " " + name(n.mappings, s.mapping) + " " + name(n.handles, s.handle) +
         (s.shared ? " shared" : " private");
    break;
  case Op::Munmap:
    t += " " + name(n.mappings, s.mapping);
    break;
  case Op::WriteBegin:
    t += " " + name(n.writes, s.write) + " " + name(n.handles, s.handle);
    break;
  case Op::WriteEnd:
    t += " " + name(n.writes, s.write);
    break;
  case Op::Await:
    t += " " + name(n.of(s.await_kind), s.await_slot);
    break;
  case Op::Umount:
    if (s.detach)
      t += " detach";
    break;
  case Op::Abort:
  case Op::DevClose:
    break;
  case Op::Check:
    return check_text(s, n);
  }
  return t;
}

std::string print_trace(const Trace &t) {
  std::string out = "fpsim-trace 1\n";
  out += fmt::format("kernel {}\n", model::profile_name(t.profile));
  if (!t.title.empty())
    out += fmt::format("title \"{}\"\n", t.title);
  for (const Statement &s : t.statements) {
    out += format_statement(s, t.names);
    if (s.expect)
      out += " => " + format_outcome(*s.expect);
    out += '\n';
  }
  return out;
}

} // namespace fpsim::sim
