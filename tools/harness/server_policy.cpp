#include "server_policy.h"

#include "base/assert.h"

#include <cerrno>

namespace fpsim::policy {

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

namespace {

std::vector<Inode> only_if(bool yes, Inode inode) { return yes ? std::vector<Inode>{inode} : std::vector<Inode>{}; }

// FOPEN_PASSTHROUGH with the file's id; EIO when it has none, as a server that cannot give out
// the passthrough it promised fails the open. They differ in when the ids are registered and closed.
class PassthroughReplies : public ServerPolicy {
public:
  explicit PassthroughReplies(std::uint32_t pt) : pt_(pt) {}
  model::OpenReply reply(const OpenRequest &r, const ServerState &s) final {
    if (r.kind == OpenKind::Opendir)
      return reply_open(0);
    auto id = s.backing_ids.find(r.inode);
    return id == s.backing_ids.end() ? reply_error(EIO) : reply_open(pt_, id->second);
  }

private:
  std::uint32_t pt_;
};

class HpPolicy final : public PassthroughReplies {
public:
  using PassthroughReplies::PassthroughReplies;
  std::vector<Inode> register_before_reply(const OpenRequest &r, const ServerState &s) const override {
    return only_if(r.kind != OpenKind::Opendir && s.backing_ids.count(r.inode) == 0, r.inode);
  }
  std::vector<Inode> close_after_release(Inode inode, const ServerState &s) const override {
    return only_if(s.open_handles.count(inode) == 0 && s.backing_ids.count(inode) != 0, inode);
  }
};

class PassthroughPolicy final : public PassthroughReplies {
public:
  using PassthroughReplies::PassthroughReplies;
  std::vector<Inode> register_at_mount(const ServerState &s) const override {
    std::vector<Inode> all;
    for (const auto &[name, inode] : s.files)
      all.push_back(inode);
    return all;
  }
  // A created file did not exist at the mount.
  std::vector<Inode> register_before_reply(const OpenRequest &r, const ServerState &) const override {
    return only_if(r.kind == OpenKind::Create, r.inode);
  }
  std::vector<Inode> close_at_end(const ServerState &s) const override {
    std::vector<Inode> close;
    for (const auto &[name, inode] : s.files)
      if (s.backing_ids.count(inode) != 0)
        close.push_back(inode);
    return close;
  }
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

std::string_view stock_description(Stock s) {
  switch (s) {
  case Stock::Hp:
    return "one backing id per inode: BACKING_OPEN at the inode's first open,\n"
           "FOPEN_PASSTHROUGH with that id while any of its files is open, BACKING_CLOSE at its last RELEASE";
  case Stock::Passthrough:
    return "every file registered right after the mount, every open FOPEN_PASSTHROUGH\n"
           "with the file's id, the ids closed after the command once every file was released";
  case Stock::Cached:
    return "every open answered with open_flags 0";
  case Stock::DirectIo:
    return "every open answered with FOPEN_DIRECT_IO";
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
