#include "server_policy.h"

#include "base/assert.h"

#include <cerrno>

namespace fpsim::policy {

model::OpenReply reply_open(std::uint32_t open_flags, std::int32_t backing_id) {
  return {model::OpenReply::Kind::Flags, 0, open_flags, backing_id};
}

model::OpenReply reply_error(int error) { return {model::OpenReply::Kind::Error, error, 0, 0}; }

model::OpenReply reply_enosys() { return {model::OpenReply::Kind::Enosys, 0, 0, 0}; }

void ScriptedPolicy::script(OpenKind kind, const std::string &name, const model::OpenReply &reply) {
  std::lock_guard lock(mutex_);
  script_[{kind, name}] = reply;
}

model::OpenReply ScriptedPolicy::reply(const OpenRequest &r, const ServerState &) {
  std::lock_guard lock(mutex_);
  auto it = script_.find({r.kind, r.name});
  if (it == script_.end()) {
    ++unscripted_;
    return reply_open(0);
  }
  const model::OpenReply reply = it->second;
  script_.erase(it);
  return reply;
}

std::uint64_t ScriptedPolicy::unscripted() const {
  std::lock_guard lock(mutex_);
  return unscripted_;
}

namespace {

// FOPEN_PASSTHROUGH with the file's id; EIO when it has none, as a server that cannot give out
// the passthrough it promised fails the open.
model::OpenReply passthrough_reply(const OpenRequest &r, const ServerState &s, std::uint32_t pt) {
  if (r.kind == OpenKind::Opendir)
    return reply_open(0);
  auto id = s.backing_ids.find(r.inode);
  return id == s.backing_ids.end() ? reply_error(EIO) : reply_open(pt, id->second);
}

class HpPolicy final : public ServerPolicy {
public:
  explicit HpPolicy(std::uint32_t pt) : pt_(pt) {}
  std::vector<Inode> register_before_reply(const OpenRequest &r, const ServerState &s) const override {
    if (r.kind == OpenKind::Opendir || s.backing_ids.count(r.inode) != 0)
      return {};
    return {r.inode};
  }
  model::OpenReply reply(const OpenRequest &r, const ServerState &s) override {
    return passthrough_reply(r, s, pt_);
  }
  std::vector<Inode> close_after_release(Inode inode, const ServerState &s) const override {
    auto open = s.open_handles.find(inode);
    if ((open != s.open_handles.end() && open->second > 0) || s.backing_ids.count(inode) == 0)
      return {};
    return {inode};
  }

private:
  std::uint32_t pt_;
};

class PassthroughPolicy final : public ServerPolicy {
public:
  explicit PassthroughPolicy(std::uint32_t pt) : pt_(pt) {}
  std::vector<Inode> register_at_mount(const ServerState &s) const override { return s.files; }
  // A created file did not exist at the mount.
  std::vector<Inode> register_before_reply(const OpenRequest &r, const ServerState &) const override {
    if (r.kind != OpenKind::Create)
      return {};
    return {r.inode};
  }
  model::OpenReply reply(const OpenRequest &r, const ServerState &s) override {
    return passthrough_reply(r, s, pt_);
  }
  std::vector<Inode> close_at_end(const ServerState &s) const override {
    std::vector<Inode> close;
    for (Inode file : s.files)
      if (s.backing_ids.count(file) != 0)
        close.push_back(file);
    return close;
  }

private:
  std::uint32_t pt_;
};

// The same open_flags for every file, no backing ids.
class FixedPolicy final : public ServerPolicy {
public:
  explicit FixedPolicy(std::uint32_t open_flags) : open_flags_(open_flags) {}
  model::OpenReply reply(const OpenRequest &r, const ServerState &) override {
    return reply_open(r.kind == OpenKind::Opendir ? 0 : open_flags_);
  }

private:
  std::uint32_t open_flags_;
};

} // namespace

std::string_view stock_name(Stock s) {
  switch (s) {
  case Stock::Hp:
    return "hp";
  case Stock::Passthrough:
    return "passthrough";
  case Stock::Cached:
    return "cached";
  case Stock::DirectIo:
    return "direct_io";
  }
  FPSIM_UNREACHABLE("a Stock outside the enum");
}

std::optional<Stock> parse_stock(std::string_view name) {
  for (Stock s : {Stock::Hp, Stock::Passthrough, Stock::Cached, Stock::DirectIo})
    if (stock_name(s) == name)
      return s;
  return std::nullopt;
}

std::unique_ptr<ServerPolicy> make_stock(Stock s, model::KernelProfile p) {
  switch (s) {
  case Stock::Hp:
    return std::make_unique<HpPolicy>(model::fopen_passthrough(p));
  case Stock::Passthrough:
    return std::make_unique<PassthroughPolicy>(model::fopen_passthrough(p));
  case Stock::Cached:
    return std::make_unique<FixedPolicy>(0);
  case Stock::DirectIo:
    return std::make_unique<FixedPolicy>(model::fopen::DIRECT_IO);
  }
  FPSIM_UNREACHABLE("a Stock outside the enum");
}

} // namespace fpsim::policy
