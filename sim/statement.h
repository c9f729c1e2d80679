// The statement vocabulary shared by the simulator and the real-mount harness (trace format v1).
#pragma once

#include "model/fuse.h"
#include "model/profile.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace fpsim::sim {

using model::AccessMode;
using model::KernelProfile;

enum class Op : std::uint8_t {
  Init,
  BackingOpen,
  BackingClose,
  Open,
  Create,
  Opendir,
  Read,
  Write,
  Mmap,
  Munmap,
  Close,
  WriteBegin,
  WriteEnd,
  Await,
  Abort,
  Umount,
  DevClose,
  Check,
};

std::string_view op_name(Op op);

// Declared names: each kind has its own slot table in the Trace.
enum class NameKind : std::uint8_t { Backing, Handle, Mapping, Write };

std::string_view name_kind_noun(NameKind k);

// Symbolic reply flags: the profile-independent FOPEN bits as they are on the wire, plus a
// passthrough bit that wire_open_flags maps to the profile's FOPEN_PASSTHROUGH. That bit is taken
// from the model (6.18's) rather than written again, so the FOPEN bits have one definition.
namespace reply_flag {
using namespace model::fopen;
inline constexpr std::uint32_t PASSTHROUGH = model::fopen_passthrough(model::KernelProfile::V6_18);
} // namespace reply_flag

struct ReplySpec {
  enum class Kind : std::uint8_t { Flags, Error, Enosys };
  enum class IdKind : std::uint8_t { None, Name, Literal };
  Kind kind = Kind::Flags;
  int error = 0;
  std::uint32_t flags = 0;    // reply_flag bits
  std::uint32_t raw_bits = 0; // bit:N
  IdKind id_kind = IdKind::None;
  int backing = -1; // IdKind::Name: backing slot
  std::int32_t literal_id = 0;
  bool operator==(const ReplySpec &) const = default;
};

// The open_flags a profile puts on the wire for these symbolic flags.
std::uint32_t wire_open_flags(const ReplySpec &r, KernelProfile p);
// The other way, for a reply a server sent: the bits the vocabulary names become flags, the rest
// raw_bits (a recorded reply is written as the server sent it).
ReplySpec reply_spec_of_wire(std::uint32_t open_flags, KernelProfile p);

struct InitSpec {
  bool passthrough = false;
  int max_stack_depth = 0;
  bool writeback_cache = false;
  bool direct_io_allow_mmap = false;
  bool no_init_ext = false;
  bool operator==(const InitSpec &) const = default;
};

// The INIT reply an `init` statement has the server send (the model's type: the harness's server
// and the simulator send the same one).
model::InitReply init_reply(const InitSpec &i);

enum class SourceKind : std::uint8_t { File, OPath, Dir, Pipe, Socket, DevNull, BadFd };

enum class CheckKind : std::uint8_t { Inode, Backing, File, Conn, Last, Drained };

enum class CheckKey : std::uint8_t {
  Ctr,
  Fb, // value: backing slot, or -1 for none
  CacheIoMode,
  Refs,
  Freed,
  Iomode, // value: model::IoMode
  Passthrough,
  Released,
  Connected,
  NoOpen,
  Internal,
};

struct CheckProp {
  CheckKey key;
  std::int64_t value;
  bool operator==(const CheckProp &) const = default;
};

struct CheckSpec {
  CheckKind kind = CheckKind::Drained;
  int slot = -1; // inode: mount file slot; backing: backing slot; file: handle slot
  std::vector<CheckProp> props;
  bool operator==(const CheckSpec &) const = default;
};

// What a statement did, or what the trace expects it to do.
struct Outcome {
  enum class Kind : std::uint8_t { Ok, Errno, Id, Backing, Fuse, Blocks, Invalid };
  Kind kind = Kind::Ok;
  int err = 0;
  std::int64_t id = 0;
  bool release = false;  // +release
  int internal_err = 0;  // never part of an expectation: reported beside EIO
  std::string message;   // Kind::Invalid: why the statement could not be executed

  static Outcome ok() { return {}; }
  static Outcome errno_(int e) {
    Outcome o;
    o.kind = Kind::Errno;
    o.err = e;
    return o;
  }
  static Outcome invalid(std::string why) {
    Outcome o;
    o.kind = Kind::Invalid;
    o.message = std::move(why);
    return o;
  }
  // An expectation matches when kind, value and observations agree.
  bool matches(const Outcome &actual) const;
};

struct Statement {
  Op op = Op::Init;
  int line = 0; // 1-based, in the trace file
  int col = 1;
  int handle = -1;  // H
  int file = -1;    // mount file slot (open/create/check inode)
  int backing = -1; // B
  int mapping = -1; // M
  int write = -1;   // W
  // backing_open
  SourceKind source = SourceKind::File;
  int backing_file = -1; // backing file slot (File/OPath)
  std::uint32_t map_flags = 0;
  std::uint64_t map_padding = 0;
  bool unprivileged = false;
  // backing_close id=N
  std::optional<std::uint32_t> literal_id;
  // open
  AccessMode access = AccessMode::ReadOnly;
  bool o_direct = false;
  bool o_trunc = false;
  ReplySpec reply;
  // mmap
  bool shared = false;
  // umount
  bool detach = false;
  InitSpec init;
  // await: the name waited for
  NameKind await_kind = NameKind::Handle;
  int await_slot = -1;
  CheckSpec check;
  std::optional<Outcome> expect;
  // Where the statement sits in its source line, for --annotate: the end of the statement
  // proper (before any "=>") and the start of a trailing comment.
  std::size_t text_end = 0;
  std::optional<std::size_t> comment_pos;
};

struct Names {
  std::vector<std::string> mount_files;
  std::vector<bool> mount_file_created; // named by a create: absent until created
  std::vector<std::string> backing_files;
  std::vector<std::string> backings;
  std::vector<std::string> handles;
  std::vector<std::string> mappings;
  std::vector<std::string> writes;

  const std::vector<std::string> &of(NameKind k) const;
};

struct Trace {
  std::string path;
  KernelProfile profile = model::kDefaultProfile;
  bool profile_given = false;
  std::string title;
  Names names;
  std::vector<Statement> statements;
  std::vector<std::string> source_lines; // the file as read, for --annotate
};

// The reply an open statement has the server send under profile p, with a backing name resolved
// through `ids` (the backing id each backing slot is bound to so far). nullopt, and *why, when it
// names a backing whose backing_open did not succeed. Error replies need no id.
std::optional<model::OpenReply> open_reply(const ReplySpec &r,
                                           const std::vector<std::optional<std::int32_t>> &ids,
                                           const Names &names, KernelProfile p, std::string *why);

} // namespace fpsim::sim
