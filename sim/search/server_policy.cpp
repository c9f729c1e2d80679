#include "server_policy.h"

#include "base/assert.h"

#include <cerrno>

namespace fpsim::policy {

model::OpenReply ScriptedPolicy::reply(const OpenRequest &r, ServerState &) {
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

std::vector<Holder> only_if(bool yes, Holder h) { return yes ? std::vector<Holder>{h} : std::vector<Holder>{}; }

Holder of_inode(Inode inode) { return {inode, 0}; }
Holder of_open(const OpenRequest &r) { return {r.inode, r.fh}; }

bool registered(const ServerState &s, Holder h) { return s.backing_ids.count(h) != 0; }

// FOPEN_PASSTHROUGH with the id registered for `h`, or `otherwise` when it has none.
model::OpenReply passthrough_or(const ServerState &s, Holder h, std::uint32_t pt, model::OpenReply otherwise) {
  auto id = s.backing_ids.find(h);
  return id == s.backing_ids.end() ? otherwise : reply_open(pt, id->second);
}

// A file opened with FOPEN_PASSTHROUGH and its inode's id, EIO when the file has none (a server
// that cannot give out the passthrough it promised fails the open). They differ in when the ids
// are registered and closed.
class PassthroughReplies : public ServerPolicy {
public:
  explicit PassthroughReplies(std::uint32_t pt) : pt_(pt) {}
  model::OpenReply reply(const OpenRequest &r, ServerState &s) override {
    if (r.kind == OpenKind::Opendir)
      return reply_open(0);
    return passthrough_or(s, of_inode(r.inode), pt_, reply_error(EIO));
  }

protected:
  std::uint32_t pt_;
};

// passthrough_hp's reply without a backing id: the page cache kept (its default entry timeout is a
// day), FOPEN_DIRECT_IO for O_DIRECT once passthrough is off.
model::OpenReply hp_cached(const OpenRequest &r, const ServerState &s) {
  constexpr std::uint32_t kODirect = 040000;
  return reply_open(model::fopen::PARALLEL_DIRECT_WRITES | model::fopen::KEEP_CACHE |
                    (s.backing_failed && (r.flags & kODirect) ? model::fopen::DIRECT_IO : 0));
}

// passthrough_hp (libfuse 3.17, with its default entry timeout): one id per inode, registered at
// its first open and closed at its last RELEASE; every open gets FOPEN_PARALLEL_DIRECT_WRITES, a
// passthrough open drops the page cache, any other keeps it. The first BACKING_OPEN that fails
// turns passthrough off for the whole daemon: every open after it is answered without (with
// FOPEN_DIRECT_IO for O_DIRECT), whatever id the inode has.
class HpPolicy final : public ServerPolicy {
public:
  explicit HpPolicy(std::uint32_t pt) : pt_(pt) {}
  std::vector<Holder> register_before_reply(const OpenRequest &r, const ServerState &s) const override {
    return only_if(r.kind != OpenKind::Opendir && !s.backing_failed && !registered(s, of_inode(r.inode)),
                   of_inode(r.inode));
  }
  model::OpenReply reply(const OpenRequest &r, ServerState &s) override {
    if (r.kind == OpenKind::Opendir)
      return reply_open(0);
    if (s.backing_failed)
      return hp_cached(r, s);
    return passthrough_or(s, of_inode(r.inode), pt_ | model::fopen::PARALLEL_DIRECT_WRITES, hp_cached(r, s));
  }
  std::vector<Holder> close_after_release(const OpenRequest &r, ServerState &s) const override {
    return only_if(s.open_handles.count(r.inode) == 0 && registered(s, of_inode(r.inode)), of_inode(r.inode));
  }

private:
  std::uint32_t pt_;
};

// libfuse#1125's policy, as passthrough_hp patched to it answers: a new id for every open, closed
// at that open's RELEASE; an open whose BACKING_OPEN failed is answered without passthrough.
class PerOpenPolicy final : public ServerPolicy {
public:
  explicit PerOpenPolicy(std::uint32_t pt) : pt_(pt) {}
  std::vector<Holder> register_before_reply(const OpenRequest &r, const ServerState &) const override {
    return only_if(r.kind != OpenKind::Opendir, of_open(r));
  }
  model::OpenReply reply(const OpenRequest &r, ServerState &s) override {
    if (r.kind == OpenKind::Opendir)
      return reply_open(0);
    return passthrough_or(s, of_open(r), pt_ | model::fopen::PARALLEL_DIRECT_WRITES, hp_cached(r, s));
  }
  std::vector<Holder> close_after_release(const OpenRequest &r, ServerState &s) const override {
    return only_if(registered(s, of_open(r)), of_open(r));
  }

private:
  std::uint32_t pt_;
};

// go-fuse's loopback: one id per inode with a count of the opens it answered with passthrough;
// every RELEASE of the inode counts down, the id closes at zero. After a BACKING_OPEN fails it
// stops using backing files: every later open is answered without passthrough, and the RELEASE
// of such an open (which took no reference) still counts the id down.
class GoFusePolicy final : public ServerPolicy {
public:
  explicit GoFusePolicy(std::uint32_t pt) : pt_(pt) {}
  std::vector<Holder> register_before_reply(const OpenRequest &r, const ServerState &s) const override {
    return only_if(r.kind != OpenKind::Opendir && !s.backing_failed && !registered(s, of_inode(r.inode)),
                   of_inode(r.inode));
  }
  model::OpenReply reply(const OpenRequest &r, ServerState &s) override {
    if (r.kind == OpenKind::Opendir || s.backing_failed || !registered(s, of_inode(r.inode)))
      return reply_open(0);
    ++s.policy_counts[r.inode];
    return passthrough_or(s, of_inode(r.inode), pt_, reply_open(0));
  }
  std::vector<Holder> close_after_release(const OpenRequest &r, ServerState &s) const override {
    auto count = s.policy_counts.find(r.inode);
    if (count == s.policy_counts.end())
      return {};
    if (--count->second > 0)
      return {};
    s.policy_counts.erase(count);
    return only_if(registered(s, of_inode(r.inode)), of_inode(r.inode));
  }

private:
  std::uint32_t pt_;
};

// The hazard fuser's documentation warns of: a new id for every open, closed as soon as the reply
// is written, which is before the kernel looks it up unless the kernel happens to be quicker.
class CloseAfterReplyPolicy final : public ServerPolicy {
public:
  explicit CloseAfterReplyPolicy(std::uint32_t pt) : pt_(pt) {}
  std::vector<Holder> register_before_reply(const OpenRequest &r, const ServerState &) const override {
    return only_if(r.kind != OpenKind::Opendir, of_open(r));
  }
  model::OpenReply reply(const OpenRequest &r, ServerState &s) override {
    return passthrough_or(s, of_open(r), pt_, reply_open(0));
  }
  std::vector<Holder> close_after_reply(const OpenRequest &r, const ServerState &s) const override {
    return only_if(registered(s, of_open(r)), of_open(r));
  }

private:
  std::uint32_t pt_;
};

class PassthroughPolicy final : public PassthroughReplies {
public:
  using PassthroughReplies::PassthroughReplies;
  std::vector<Holder> register_at_mount(const ServerState &s) const override {
    std::vector<Holder> all;
    for (const auto &[name, inode] : s.files)
      all.push_back(of_inode(inode));
    return all;
  }
  // A created file did not exist at the mount.
  std::vector<Holder> register_before_reply(const OpenRequest &r, const ServerState &) const override {
    return only_if(r.kind == OpenKind::Create, of_inode(r.inode));
  }
  std::vector<Holder> close_at_end(const ServerState &s) const override {
    std::vector<Holder> close;
    for (const auto &[holder, id] : s.backing_ids)
      close.push_back(holder);
    return close;
  }
};

// The same open_flags for every file, no backing ids.
class FixedPolicy final : public ServerPolicy {
public:
  explicit FixedPolicy(std::uint32_t open_flags) : open_flags_(open_flags) {}
  model::OpenReply reply(const OpenRequest &r, ServerState &) override {
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
  case Stock::PerOpen:
    return "per-open";
  case Stock::GoFuse:
    return "gofuse";
  case Stock::CloseAfterReply:
    return "close-after-reply";
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
    return "libfuse's passthrough_hp: one backing id per inode: BACKING_OPEN at the inode's first open,\n"
           "FOPEN_PASSTHROUGH|FOPEN_PARALLEL_DIRECT_WRITES with that id while any of its files is open,\n"
           "BACKING_CLOSE at its last RELEASE; after a BACKING_OPEN fails, every open is answered without\n"
           "passthrough (parallel_direct_writes|keep_cache, and direct_io for O_DIRECT)";
  case Stock::PerOpen:
    return "passthrough_hp patched to a new backing id for every open (libfuse#1125), BACKING_CLOSE at\n"
           "that open's RELEASE; an open whose BACKING_OPEN failed is answered without passthrough";
  case Stock::GoFuse:
    return "go-fuse's loopback: one backing id per inode, counted up by each open answered with it and\n"
           "down by every RELEASE of the inode, BACKING_CLOSE at zero; after a BACKING_OPEN fails,\n"
           "every open is answered without passthrough (and its RELEASE still counts the id down)";
  case Stock::CloseAfterReply:
    return "a new backing id for every open, BACKING_CLOSE as soon as the reply is written\n"
           "(the hazard fuser's documentation warns of: the kernel may not have looked the id up yet)";
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
  for (Stock s : kStocks)
    if (stock_name(s) == name)
      return s;
  return std::nullopt;
}

std::unique_ptr<ServerPolicy> make_stock(Stock s, model::KernelProfile p) {
  switch (s) {
  case Stock::Hp:
    return std::make_unique<HpPolicy>(model::fopen_passthrough(p));
  case Stock::PerOpen:
    return std::make_unique<PerOpenPolicy>(model::fopen_passthrough(p));
  case Stock::GoFuse:
    return std::make_unique<GoFusePolicy>(model::fopen_passthrough(p));
  case Stock::CloseAfterReply:
    return std::make_unique<CloseAfterReplyPolicy>(model::fopen_passthrough(p));
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
