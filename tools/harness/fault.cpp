#include "fault.h"

#include "fuse_proto.h"

#include <array>
#include <charconv>
#include <fmt/format.h>
#include <utility>
#include <vector>

namespace fpsim::harness {
namespace {

namespace p = proto;

// The requests the test server answers. INIT is not among them: it is answered inside mount(2),
// before the harness knows the connection's fusectl name, so nothing could unstick a mount waiting
// for it. FORGET, BATCH_FORGET and INTERRUPT have no reply to withhold or garble.
constexpr std::array<std::uint32_t, 14> kFaultableOpcodes{
    p::LOOKUP, p::GETATTR, p::SETATTR, p::OPEN,    p::CREATE,     p::OPENDIR, p::READ,
    p::WRITE,  p::FLUSH,   p::RELEASE, p::RELEASEDIR, p::READDIR, p::STATFS,  p::FSYNC,
};

constexpr std::uint64_t kMaxNth = 1000000;

std::vector<std::string> split(const std::string &text, char sep) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  for (;;) {
    const std::size_t at = text.find(sep, start);
    parts.push_back(text.substr(start, at == std::string::npos ? std::string::npos : at - start));
    if (at == std::string::npos)
      return parts;
    start = at + 1;
  }
}

std::optional<std::uint64_t> parse_count(const std::string &text, const char *what, std::string &err) {
  std::uint64_t value = 0;
  const char *end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end || value < 1 || value > kMaxNth) {
    err = fmt::format("{} \"{}\" is not a number from 1 to {}", what, text, kMaxNth);
    return std::nullopt;
  }
  return value;
}

std::optional<std::uint32_t> parse_opcode(const std::string &name, std::string &err) {
  for (std::uint32_t opcode : kFaultableOpcodes)
    if (name == p::opcode_name(opcode))
      return opcode;
  if (name == "INIT")
    err = "INIT cannot be faulted: it is answered inside mount(2), before the connection has a fusectl "
          "entry the harness could abort";
  else if (name == "FORGET" || name == "BATCH_FORGET" || name == "INTERRUPT")
    err = name + " has no reply to withhold or garble";
  else
    err = fmt::format("unknown opcode \"{}\"", name);
  return std::nullopt;
}

} // namespace

std::string fault_forms() {
  std::string ops;
  for (std::uint32_t opcode : kFaultableOpcodes)
    ops += (ops.empty() ? "" : " ") + std::string(p::opcode_name(opcode));
  return "silent-at:OP:N, garbage-at:OP:N:(unique|short|errno|oversized), kill-server-at:OP:N, "
         "kill-server-at-step:N, kill-child-at:OP:N (N from 1; OP one of " +
         ops + ")";
}

std::optional<Fault> parse_fault(const std::string &text, std::string &err) {
  const std::vector<std::string> parts = split(text, ':');
  Fault f;
  f.spec = text;
  const std::string &kind = parts[0];
  std::size_t want = 3;
  if (kind == "silent-at") {
    f.kind = Fault::Kind::Silent;
  } else if (kind == "garbage-at") {
    f.kind = Fault::Kind::Garbage;
    want = 4;
  } else if (kind == "kill-server-at") {
    f.kind = Fault::Kind::KillServer;
  } else if (kind == "kill-server-at-step") {
    f.kind = Fault::Kind::KillServerAtStep;
    want = 2;
  } else if (kind == "kill-child-at") {
    f.kind = Fault::Kind::KillChild;
  } else {
    err = fmt::format("unknown fault \"{}\"", kind);
    return std::nullopt;
  }
  if (parts.size() != want) {
    err = fmt::format("{} takes {} field(s) after it, got {}", kind, want - 1, parts.size() - 1);
    return std::nullopt;
  }
  if (f.kind == Fault::Kind::KillServerAtStep) {
    std::optional<std::uint64_t> step = parse_count(parts[1], "the step", err);
    if (!step)
      return std::nullopt;
    f.nth = *step;
    return f;
  }
  std::optional<std::uint32_t> opcode = parse_opcode(parts[1], err);
  if (!opcode)
    return std::nullopt;
  f.opcode = *opcode;
  std::optional<std::uint64_t> nth = parse_count(parts[2], "the request number", err);
  if (!nth)
    return std::nullopt;
  f.nth = *nth;
  if (f.kind == Fault::Kind::Garbage) {
    const std::string &how = parts[3];
    if (how == "unique")
      f.garbage = Fault::Garbage::Unique;
    else if (how == "short")
      f.garbage = Fault::Garbage::Short;
    else if (how == "errno")
      f.garbage = Fault::Garbage::Errno;
    else if (how == "oversized")
      f.garbage = Fault::Garbage::Oversized;
    else {
      err = fmt::format("unknown garbage \"{}\" (unique, short, errno or oversized)", how);
      return std::nullopt;
    }
  }
  return f;
}

} // namespace fpsim::harness
