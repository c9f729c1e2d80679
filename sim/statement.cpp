#include "sim/statement.h"

#include "base/assert.h"
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
