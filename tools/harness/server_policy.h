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
};

// What a policy may look at: the server's regular files and what it holds for them.
struct ServerState {
  std::map<std::string, Inode> files;        // by name
  std::map<Inode, std::int32_t> backing_ids; // registered by the server and not yet closed
  std::map<Inode, int> open_handles;         // handed out for the file and not yet released (> 0)
};

// The decisions, each asked for at the moment a server faces it. "register" means BACKING_OPEN of
// the file's own content, "close" BACKING_CLOSE of the id registered for it; a registration that
// fails leaves no id in ServerState::backing_ids.
class ServerPolicy {
public:
  virtual ~ServerPolicy() = default;
  // Right after the mount.
  virtual std::vector<Inode> register_at_mount(const ServerState &) const { return {}; }
  // When an open arrives, before its reply is decided.
  virtual std::vector<Inode> register_before_reply(const OpenRequest &, const ServerState &) const { return {}; }
  // Once register_before_reply's registrations are done.
  virtual model::OpenReply reply(const OpenRequest &r, const ServerState &s) = 0;
  // After a RELEASE of a handle of `inode` (already counted out of open_handles).
  virtual std::vector<Inode> close_after_release(Inode, const ServerState &) const { return {}; }
  // When the run is over and every handle was released.
  virtual std::vector<Inode> close_at_end(const ServerState &) const { return {}; }
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
  model::OpenReply reply(const OpenRequest &r, const ServerState &s) override;
  std::uint64_t unscripted() const {
    std::lock_guard lock(mutex_);
    return unscripted_;
  }

private:
  mutable std::mutex mutex_;
  std::map<std::pair<OpenKind, std::string>, model::OpenReply> script_;
  std::uint64_t unscripted_ = 0;
};

// The policies `fpsim-harness record --policy` offers (stock_description says what each does; hp
// is what real passthrough servers do). OPENDIR is answered with open_flags 0 by all four; an open
// of a file that has no id (its registration failed) fails with EIO.
enum class Stock : std::uint8_t { Hp, Passthrough, Cached, DirectIo };

std::string_view stock_name(Stock s);
// Lines of prose (recordings carry them as comments).
std::string_view stock_description(Stock s);
std::optional<Stock> parse_stock(std::string_view name);
// FOPEN_PASSTHROUGH is the profile's bit.
std::unique_ptr<ServerPolicy> make_stock(Stock s, model::KernelProfile p = model::kDefaultProfile);

} // namespace fpsim::policy
