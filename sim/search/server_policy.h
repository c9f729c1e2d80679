// Server policies: how a FUSE server answers OPEN, CREATE and OPENDIR, and when it registers and
// closes backing ids. A policy only decides: the server session (fuse_server.h) performs the
// BACKING_OPEN/BACKING_CLOSE ioctls and sends the replies. Keeping the decisions free of I/O lets the
// same objects later run against the model (checking a policy exhaustively) and stand for a recorded
// third-party daemon. Depends on model/ only, never on the harness.
#pragma once

#include "model/fuse.h"
#include "model/profile.h"

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fpsim::policy {

using Inode = std::uint64_t; // the FUSE node id

enum class OpenKind : std::uint8_t { Open, Create, Opendir };

struct OpenRequest {
  OpenKind kind = OpenKind::Open;
  Inode inode = 0;         // Create: the file the server just made; Opendir: the root
  std::string name;        // "" for the root
  std::uint32_t flags = 0; // the client's O_* flags as the kernel forwarded them
  std::uint64_t fh = 0;    // the handle the server gives this open if it answers it
};

// Whom a backing id was registered for: an inode, shared by all its opens (fh 0), or one open.
struct Holder {
  Inode inode = 0;
  std::uint64_t fh = 0;
  auto operator<=>(const Holder &) const = default;
};

// What a policy may look at: the server's regular files and what it holds for them.
struct ServerState {
  std::map<std::string, Inode> files;         // by name
  std::map<Holder, std::int32_t> backing_ids; // registered by the server and not yet closed
  std::map<Inode, int> open_handles;          // handed out for the file and not yet released (> 0)
  // Some BACKING_OPEN failed: servers that then stop offering passthrough read this.
  bool backing_failed = false;
  // Counts a policy keeps for itself, per inode (go-fuse's reference count of a backing id).
  std::map<Inode, int> policy_counts;
};

// The decisions, each asked for at the moment a server faces it. "register" means BACKING_OPEN of
// the holder's file's own content, "close" BACKING_CLOSE of the id registered for the holder; a
// registration that fails leaves no id in ServerState::backing_ids and sets backing_failed.
class ServerPolicy {
public:
  virtual ~ServerPolicy() = default;
  // Right after the mount.
  virtual std::vector<Holder> register_at_mount(const ServerState &) const { return {}; }
  // When an open arrives, before its reply is decided.
  virtual std::vector<Holder> register_before_reply(const OpenRequest &, const ServerState &) const {
    return {};
  }
  // Once register_before_reply's registrations are done.
  virtual model::OpenReply reply(const OpenRequest &r, ServerState &s) = 0;
  // As soon as the reply is written, before the kernel may have looked its backing id up.
  virtual std::vector<Holder> close_after_reply(const OpenRequest &, const ServerState &) const {
    return {};
  }
  // After the RELEASE of an open the server answered (already counted out of open_handles).
  virtual std::vector<Holder> close_after_release(const OpenRequest &, ServerState &) const {
    return {};
  }
  // When the run is over and every handle was released.
  virtual std::vector<Holder> close_at_end(const ServerState &) const { return {}; }
};

inline model::OpenReply reply_open(std::uint32_t open_flags, std::int32_t backing_id = 0) {
  return {model::OpenReply::Kind::Flags, 0, open_flags, backing_id};
}
inline model::OpenReply reply_error(int error) { return {model::OpenReply::Kind::Error, error, 0, 0}; }

// The cross-check's policy: each reply is scripted by the statement about to run. Scripting happens
// on the caller's thread while the server thread may be deciding, hence the lock.
class ScriptedPolicy final : public ServerPolicy {
public:
  // The reply to the next open of this kind for `name` ("" for OPENDIR of the root); used once.
  void script(OpenKind kind, const std::string &name, const model::OpenReply &reply) {
    std::lock_guard lock(mutex_);
    script_[{kind, name}] = reply;
  }
  // Nothing scripted: a cached reply (open_flags 0), counted in unscripted().
  model::OpenReply reply(const OpenRequest &r, ServerState &s) override;
  std::uint64_t unscripted() const {
    std::lock_guard lock(mutex_);
    return unscripted_;
  }

private:
  mutable std::mutex mutex_;
  std::map<std::pair<OpenKind, std::string>, model::OpenReply> script_;
  std::uint64_t unscripted_ = 0;
};

// The built-in policies, each a server people run or a hazard they write (stock_description says
// which; `fpsim-harness record --policy` and `fpsim verify-policy --policy` offer them all). OPENDIR
// is answered with open_flags 0 by all of them.
enum class Stock : std::uint8_t { Hp, PerOpen, GoFuse, CloseAfterReply, Passthrough, Cached, DirectIo };
inline constexpr Stock kStocks[] = {Stock::Hp,          Stock::PerOpen,     Stock::GoFuse,
                                    Stock::CloseAfterReply, Stock::Passthrough, Stock::Cached,
                                    Stock::DirectIo};

std::string_view stock_name(Stock s);
// Lines of prose (recordings carry them as comments).
std::string_view stock_description(Stock s);
std::optional<Stock> parse_stock(std::string_view name);
// FOPEN_PASSTHROUGH is the profile's bit.
std::unique_ptr<ServerPolicy> make_stock(Stock s, model::KernelProfile p = model::kDefaultProfile);

} // namespace fpsim::policy
