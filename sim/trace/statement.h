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

// A declared name: its kind and its slot in the trace's table of that kind.
struct NameRef {
  NameKind kind = NameKind::Handle;
  int slot = -1;
  auto operator<=>(const NameRef &) const = default;
};

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

// The filesystem a backing_open's file or dir is opened on: the backing directory's own, or
// (`on=overlay`) an overlayfs stacked on it, which shows the same files as inodes of its own.
enum class SourceFs : std::uint8_t { BackingDir, Overlay };
// The s_stack_depth of the superblock a source on `fs` has: the backing directory's filesystem
// is not stacked (0); an overlayfs is one deeper than its deepest layer (ovl_fill_super).
int s_stack_depth(SourceFs fs);

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
};

// How much of two outcomes must agree for them to be the same.
enum class Agreement : std::uint8_t {
  // What the caller of the syscall sees, which is all an expectation states and all the kernel
  // shows: the kind, the errno or id, +release. A statement that could not run (invalid) has no
  // outcome to agree with.
  Observed,
  // Also what only the simulator shows: the errno behind an EIO (`check last`) and why a
  // statement could not run. Two models replaying one trace agree this far unless one is wrong.
  Exact,
};

// The one outcome comparator: an expectation against what happened (replay), the simulator
// against the kernel (crosscheck), a mutant against the unmutated model (explore: Observed;
// fuzz: Exact).
bool same_outcome(const Outcome &a, const Outcome &b, Agreement how = Agreement::Observed);

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
  SourceFs source_fs = SourceFs::BackingDir; // File/OPath/Dir
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

// The statements whose call may sleep in the kernel, so that their outcome can be `blocks` and an
// await of them gives the outcome later: a switch over a sleeping call's op lists only these.
enum class BlockingOp : std::uint8_t { Open, Create, Read, Write, Mmap, WriteBegin, Close };
std::optional<BlockingOp> blocking_op(Op op);

// Whether the statement's call may sleep. An await only waits on such a call.
inline bool may_block(Op op) { return blocking_op(op).has_value(); }

// The name the statement declares, if it declares one (a backing_open's, an open's, ...).
std::optional<NameRef> declared_name(const Statement &s);

// The name an await gives for this statement's call once it blocked: the mapping an mmap
// declares, the write a write_begin declares, else the handle (an open's new one, or the one a
// read or write runs on).
NameRef blocked_name(const Statement &s);

// The name an await statement waits on.
inline NameRef awaited_name(const Statement &s) { return {s.await_kind, s.await_slot}; }

struct Names {
  std::vector<std::string> mount_files;
  std::vector<bool> mount_file_created; // named by a create: absent until created
  std::vector<std::string> backing_files;
  std::vector<std::string> backings;
  std::vector<std::string> handles;
  std::vector<std::string> mappings;
  std::vector<std::string> writes;

  const std::vector<std::string> &of(NameKind k) const;
  // Appends B1.., H1.., M1.., W1.. up to n of each: room for every name n statements can
  // declare (one each at most), for tools that write statements before the trace exists.
  void number(int n);
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


} // namespace fpsim::sim
