#include "sim/statement.h"

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

std::optional<model::OpenReply> open_reply(const ReplySpec &r,
                                           const std::vector<std::optional<std::int32_t>> &ids,
                                           const Names &names, KernelProfile p, std::string *why) {
  model::OpenReply o;
  switch (r.kind) {
  case ReplySpec::Kind::Error:
    o.kind = model::OpenReply::Kind::Error;
    o.error = r.error;
    return o;
  case ReplySpec::Kind::Enosys:
    o.kind = model::OpenReply::Kind::Enosys;
    return o;
  case ReplySpec::Kind::Flags:
    break;
  }
  o.open_flags = wire_open_flags(r, p);
  switch (r.id_kind) {
  case ReplySpec::IdKind::None:
    break;
  case ReplySpec::IdKind::Literal:
    o.backing_id = r.literal_id;
    break;
  case ReplySpec::IdKind::Name: {
    const auto slot = static_cast<std::size_t>(r.backing);
    if (!ids.at(slot)) {
      *why = fmt::format("{} has no id: its backing_open did not succeed", names.backings.at(slot));
      return std::nullopt;
    }
    o.backing_id = *ids.at(slot);
    break;
  }
  }
  return o;
}

bool Outcome::matches(const Outcome &actual) const {
  if (kind != actual.kind || release != actual.release)
    return false;
  switch (kind) {
  case Kind::Errno:
    return err == actual.err;
  case Kind::Id:
    return id == actual.id;
  case Kind::Invalid:
    return false;
  case Kind::Ok:
  case Kind::Backing:
  case Kind::Fuse:
  case Kind::Blocks:
    return true;
  }
  return false;
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
  return handles;
}

} // namespace fpsim::sim
