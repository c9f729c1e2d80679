#include "sim/trace/statement.h"

#include "base/assert.h"
#include <fmt/format.h>

namespace fpsim::sim {

std::string_view op_name(Op op) {
  switch (op) {
  case Op::Init:
    return "init";
  case Op::BackingOpen:
    return "backing_open";
  case Op::BackingClose:
    return "backing_close";
  case Op::Open:
    return "open";
  case Op::Create:
    return "create";
  case Op::Opendir:
    return "opendir";
  case Op::Read:
    return "read";
  case Op::Write:
    return "write";
  case Op::Mmap:
    return "mmap";
  case Op::Munmap:
    return "munmap";
  case Op::Close:
    return "close";
  case Op::WriteBegin:
    return "write_begin";
  case Op::WriteEnd:
    return "write_end";
  case Op::Await:
    return "await";
  case Op::Abort:
    return "abort";
  case Op::Umount:
    return "umount";
  case Op::DevClose:
    return "dev_close";
  case Op::Check:
    return "check";
  }
  FPSIM_UNREACHABLE("an Op outside the enum");
}

std::string_view name_kind_noun(NameKind k) {
  switch (k) {
  case NameKind::Backing:
    return "backing name";
  case NameKind::Handle:
    return "handle";
  case NameKind::Mapping:
    return "mapping";
  case NameKind::Write:
    return "write";
  }
  FPSIM_UNREACHABLE("a NameKind outside the enum");
}

std::uint32_t wire_open_flags(const ReplySpec &r, KernelProfile p) {
  std::uint32_t wire = r.raw_bits | (r.flags & ~reply_flag::PASSTHROUGH);
  if (r.flags & reply_flag::PASSTHROUGH)
    wire |= model::fopen_passthrough(p);
  return wire;
}

ReplySpec reply_spec_of_wire(std::uint32_t open_flags, KernelProfile p) {
  static constexpr std::uint32_t kNamed =
      reply_flag::DIRECT_IO | reply_flag::KEEP_CACHE | reply_flag::NONSEEKABLE | reply_flag::CACHE_DIR |
      reply_flag::STREAM | reply_flag::NOFLUSH | reply_flag::PARALLEL_DIRECT_WRITES;
  const std::uint32_t pt = model::fopen_passthrough(p);
  ReplySpec r;
  r.flags = (open_flags & kNamed) | ((open_flags & pt) ? reply_flag::PASSTHROUGH : 0);
  r.raw_bits = open_flags & ~(kNamed | pt);
  return r;
}

model::InitReply init_reply(const InitSpec &i) {
  model::InitReply r;
  r.passthrough = i.passthrough;
  r.max_stack_depth = i.max_stack_depth;
  r.writeback_cache = i.writeback_cache;
  r.direct_io_allow_mmap = i.direct_io_allow_mmap;
  r.init_ext = !i.no_init_ext;
  return r;
}

bool same_outcome(const Outcome &a, const Outcome &b, Agreement how) {
  if (a.kind != b.kind || a.release != b.release)
    return false;
  if (how == Agreement::Exact && a.internal_err != b.internal_err)
    return false;
  switch (a.kind) {
  case Outcome::Kind::Errno:
    return a.err == b.err;
  case Outcome::Kind::Id:
    return a.id == b.id;
  case Outcome::Kind::Invalid:
    return how == Agreement::Exact && a.message == b.message;
  case Outcome::Kind::Ok:
  case Outcome::Kind::Backing:
  case Outcome::Kind::Fuse:
  case Outcome::Kind::Blocks:
    return true;
  }
  FPSIM_UNREACHABLE("an outcome kind outside the enum");
}

std::optional<BlockingOp> blocking_op(Op op) {
  switch (op) {
  case Op::Open:
    return BlockingOp::Open;
  case Op::Create:
    return BlockingOp::Create;
  case Op::Read:
    return BlockingOp::Read;
  case Op::Write:
    return BlockingOp::Write;
  case Op::Mmap:
    return BlockingOp::Mmap;
  case Op::WriteBegin:
    return BlockingOp::WriteBegin;
  case Op::Close:
    return BlockingOp::Close;
  case Op::Init:
  case Op::BackingOpen:
  case Op::BackingClose:
  case Op::Opendir:
  case Op::Munmap:
  case Op::WriteEnd:
  case Op::Await:
  case Op::Abort:
  case Op::Umount:
  case Op::DevClose:
  case Op::Check:
    return std::nullopt;
  }
  FPSIM_UNREACHABLE("an op outside the enum");
}

int s_stack_depth(SourceFs fs) {
  switch (fs) {
  case SourceFs::BackingDir:
    return 0;
  case SourceFs::Overlay:
    return 1;
  }
  FPSIM_UNREACHABLE("a source filesystem outside the enum");
}

// An if-chain: the other ops declare nothing, and a switch would have to list them all.
std::optional<NameRef> declared_name(const Statement &s) {
  if (s.op == Op::BackingOpen)
    return NameRef{NameKind::Backing, s.backing};
  if (s.op == Op::Open || s.op == Op::Create || s.op == Op::Opendir || s.op == Op::Mmap ||
      s.op == Op::WriteBegin)
    return blocked_name(s);
  return std::nullopt;
}

NameRef blocked_name(const Statement &s) {
  if (s.op == Op::Mmap)
    return {NameKind::Mapping, s.mapping};
  if (s.op == Op::WriteBegin)
    return {NameKind::Write, s.write};
  return {NameKind::Handle, s.handle};
}

void Names::number(int n) {
  for (int i = 1; i <= n; ++i) {
    backings.push_back("B" + std::to_string(i));
    handles.push_back("H" + std::to_string(i));
    mappings.push_back("M" + std::to_string(i));
    writes.push_back("W" + std::to_string(i));
  }
}

const std::vector<std::string> &Names::of(NameKind k) const {
  switch (k) {
  case NameKind::Backing:
    return backings;
  case NameKind::Handle:
    return handles;
  case NameKind::Mapping:
    return mappings;
  case NameKind::Write:
    return writes;
  }
  FPSIM_UNREACHABLE("a name kind outside the enum");
}

} // namespace fpsim::sim
