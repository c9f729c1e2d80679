#include "sim/exec/executor.h"

namespace fpsim::sim {

std::optional<model::OpenReply> open_reply(const ReplySpec &r, const Bindings &bindings,
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
    const std::optional<std::int32_t> id = bindings.id(r.backing, names, why);
    if (!id)
      return std::nullopt;
    o.backing_id = *id;
    break;
  }
  }
  return o;
}

} // namespace fpsim::sim
