// fpsim explore: breadth-first search over statement sequences (see explore.h).
//
// A state is a SimExecutor (the model, its invariant checker and what each trace name is bound
// to), for a mutant a second one running the unmutated model in lockstep, and the Live that
// replay keeps (sim/exec/live.h: what outcomes alone say is open, mapped, held, blocked and
// registered), which decides the actions offered and drives the teardown. Frontier states are
// not stored: each level keeps (parent, action) records and a state is rebuilt by re-running
// its path, sharing the prefix with the state rebuilt before it (consecutive records mostly
// share their parent), so memory per state is the hash-set slot plus one record.
//
// Canonical hashing. The hash serializes every live object of the model with all references
// between objects written as canonical numbers: inodes sorted by a key summarising their own
// fields, their fb's and their files', files sorted within their inode, fbs numbered by first
// appearance (inode, then its files, then registered-only fbs by key), backing_files by their
// file (those only VMAs still pin, with their VMAs, by key), VMAs and writes sorted within their
// file; tasks (whose run order is their creation order) and writes waiting for the inode lock
// (FIFO) as sequences in creation order, their ranks also in the sort keys so that ties break
// the same way in isomorphic states (--check-merges verifies it). Names enter only as
// "this file has an fd", "this VMA has a mapping name", "this write is held under a name", "this
// call is pending an await": every name of a kind is offered the same actions, so renaming is a
// symmetry. Equal serializations mean isomorphic states whatever order ties were broken in, so
// the reduction is sound; a tie broken differently in two isomorphic states only costs a
// duplicate. Dead objects (released files, freed fbs, unmapped VMAs, finished writes and calls
// nobody awaits, blank or evicted inodes) do not enter: nothing can reach them again. Not
// hashed because nothing reads them: the step counter (only `vma created after fb attached`
// matters, for I13, and is hashed as that bit), fh values, release counters, the backing
// source file (the model copies it but never reads it), the last internal errno.
//
// Backing ids. The kernel's idr_alloc_cyclic never hands out an id it handed out before (short
// of 2^31 allocations), so future behaviour depends only on which id maps to which fb, not on
// the values: by default the hash abstracts id values away (an idr entry is hashed as its fb,
// a name as the fb its id maps to, or "unmapped"; the last closed id, which the explorer offers
// as `passthrough@id=N`, likewise, so "no closed id yet" and "a closed id, now unmapped" are the
// same state: both make such an open fail with ENOENT and change nothing). A mutant may break
// that premise (ids-reused-immediately), so mutants hash exact id values and the idr cursor.
// The invariant checker keeps history across steps (the highest id allocated, for I9); a merged
// state continues with its first path's, which is harmless for the kernel: every id it hands
// out is above every id it handed out before, whichever path came first.
#include "sim/search/explore.h"

#include "base/assert.h"
#include "sim/exec/live.h"
#include "sim/trace/parser.h"
#include "sim/trace/printer.h"
#include "sim/exec/replay.h"
#include "sim/exec/sim_executor.h"

#include <algorithm>
#include <bit>
#include <chrono>
#include <fmt/format.h>
#include <unordered_map>

namespace fpsim::sim {

using namespace model;

namespace {

constexpr int kMaxDepth = 31; // names of each kind: slots 0..depth, one word of bits
constexpr int kMaxInodes = 8;
constexpr int kMaxNamed = 8; // files, ids, mappings, writes

// ---- hashing ---------------------------------------------------------------------------------

inline std::uint64_t mum(std::uint64_t a, std::uint64_t b) {
  const unsigned __int128 r = static_cast<unsigned __int128>(a) * b;
  return static_cast<std::uint64_t>(r) ^ static_cast<std::uint64_t>(r >> 64);
}

// A streaming 64-bit hash (wyhash-style multiply-fold). Not for adversaries; the collision
// probability over n states is about n^2 / 2^65.
struct Hasher {
  std::uint64_t h = 0x243f6a8885a308d3ull;
  std::uint64_t n = 0;
  void add(std::uint64_t w) {
    h = mum(w ^ 0xa0761d6478bd642full, h ^ 0xe7037ed1a0b428dbull) ^ std::rotl(h, 23);
    ++n;
  }
  std::uint64_t done() const { return mum(h ^ 0x8ebc6af09c88c6e3ull, n ^ 0x589965cc75374cc3ull); }
};

// ---- states and actions ----------------------------------------------------------------------

// verify-policy: an open the server answered and has not seen the RELEASE of.
struct AnsweredOpen {
  policy::OpenRequest request;
  std::int8_t file = -1;    // the mount file
  std::optional<FileId> ff; // the model's file, once the open created it
};

// verify-policy: the server's side of a state, which the policy decides.
struct ServerSide {
  policy::ServerState state;
  std::vector<AnsweredOpen> answered;
  std::uint64_t next_fh = 1;
  std::optional<std::string> closed_in_use; // the first BACKING_CLOSE of an id a file still used
  // Per mount file: its backing file's slot, and whether the server opens it on an overlayfs.
  std::vector<int> backing_file;
  std::vector<bool> on_overlay;
};

struct XState {
  SimExecutor mut;
  std::optional<SimExecutor> ref; // the unmutated model in lockstep (mutants only)
  Live live;
  std::optional<std::int32_t> closed_id; // the last id a backing_close of a name closed
  std::optional<ServerSide> server;       // verify-policy only
};

// The open replies explored (docs/kernel-semantics.md §2.4's interesting cells): cached, direct_io
// and parallel direct writes without passthrough; passthrough with each registered name, plain
// and with direct_io|parallel_direct_writes; passthrough with id 0 and with a closed id.
enum class Reply : std::uint8_t { Cached, Dio, DioPdw, Pt, PtDioPdw, PtId0, PtClosed };

struct Action {
  Op op = Op::Abort;
  std::int8_t slot = -1;   // handle / mapping / write / backing slot the action names
  std::int8_t file = -1;   // open: mount file; backing_open: backing file
  std::int8_t handle = -1; // mmap / write_begin: the handle used
  Reply reply = Reply::Cached;
  std::int8_t backing = -1; // Reply::Pt, PtDioPdw: the backing name
  bool shared = false;
  NameKind await_kind = NameKind::Handle;
  std::int8_t variant = -1; // verify-policy's open: an index into kClientOpens
};

// The opens a client can make in verify-policy (O_TRUNC only where it may write).
struct ClientOpen {
  AccessMode access;
  bool o_direct, o_trunc;
};
constexpr ClientOpen kClientOpens[] = {
    {AccessMode::ReadOnly, false, false},  {AccessMode::ReadOnly, true, false},
    {AccessMode::WriteOnly, false, false}, {AccessMode::WriteOnly, true, false},
    {AccessMode::ReadWrite, false, false}, {AccessMode::ReadWrite, true, false},
    {AccessMode::ReadWrite, false, true},
};

// The O_* flags the kernel forwards in OPEN (Linux's values on x86-64).
std::uint32_t linux_open_flags(const ClientOpen &c) {
  const std::uint32_t access = c.access == AccessMode::ReadOnly ? 0 : c.access == AccessMode::WriteOnly ? 1 : 2;
  return access | (c.o_direct ? 040000u : 0u) | (c.o_trunc ? 01000u : 0u);
}

// An open's reply and access mode (rdwr for the replies with parallel_direct_writes).
void set_reply(const Action &a, const XState &x, Statement &s) {
  ReplySpec &r = s.reply;
  s.access = AccessMode::ReadOnly;
  switch (a.reply) {
  case Reply::Cached:
    break;
  case Reply::Dio:
    r.flags = reply_flag::DIRECT_IO;
    break;
  case Reply::DioPdw:
    r.flags = reply_flag::DIRECT_IO | reply_flag::PARALLEL_DIRECT_WRITES;
    s.access = AccessMode::ReadWrite;
    break;
  case Reply::PtDioPdw:
    r.flags = reply_flag::DIRECT_IO | reply_flag::PARALLEL_DIRECT_WRITES;
    s.access = AccessMode::ReadWrite;
    [[fallthrough]];
  case Reply::Pt:
    r.flags |= reply_flag::PASSTHROUGH;
    r.id_kind = ReplySpec::IdKind::Name;
    r.backing = a.backing;
    break;
  case Reply::PtId0:
  case Reply::PtClosed:
    r.flags = reply_flag::PASSTHROUGH;
    r.id_kind = ReplySpec::IdKind::Literal;
    r.literal_id = a.reply == Reply::PtId0 ? 0 : x.closed_id.value_or(0);
    break;
  }
}

Statement to_statement(const Action &a, const XState &x) {
  Statement s;
  s.op = a.op;
  switch (a.op) {
  case Op::BackingOpen:
    s.backing = a.slot;
    s.source = SourceKind::File;
    s.backing_file = a.file;
    break;
  case Op::BackingClose:
    s.backing = a.slot;
    break;
  case Op::Open:
    s.handle = a.slot;
    s.file = a.file;
    set_reply(a, x, s);
    break;
  case Op::Close:
    s.handle = a.slot;
    break;
  case Op::Mmap:
    s.mapping = a.slot;
    s.handle = a.handle;
    s.shared = a.shared;
    break;
  case Op::Munmap:
    s.mapping = a.slot;
    break;
  case Op::WriteBegin:
    s.write = a.slot;
    s.handle = a.handle;
    break;
  case Op::WriteEnd:
    s.write = a.slot;
    break;
  case Op::Await:
    s.await_kind = a.await_kind;
    s.await_slot = a.slot;
    break;
  case Op::Umount:
    s.detach = true;
    break;
  case Op::Abort:
  case Op::DevClose:
  case Op::Init:
  case Op::Create:
  case Op::Opendir:
  case Op::Read:
  case Op::Write:
  case Op::Check:
    break;
  }
  return s;
}

bool inode_blank(const FuseInode &fi) {
  return fi.iocachectr == 0 && !fi.cache_io_mode && !fi.fb && fi.i_rwsem.readers == 0 &&
         !fi.i_rwsem.writer;
}

// Every action from s, in a fixed order (the order defines the action indices in path records):
//   backing_open of each backing file while fewer than o.ids names are registered;
//   backing_close of each registered name;
//   open of each mount file with each Reply while fewer than o.files handles are open (fds and
//     opens still blocked); cached, direct_io and passthrough opens are rdonly, the two with
//     parallel_direct_writes rdwr (the only handles writes are begun on);
//   close of each open handle;
//   mmap shared and private of each open handle while fewer than o.mappings are live (or
//     blocked); munmap of each live mapping;
//   write_begin on each open rdwr direct_io handle while fewer than o.writes are held (or
//     blocked); write_end of each held write;
//   await of each blocked name whose call has returned;
//   abort, umount detach, dev_close.
// Not explored: read (the model's read path changes no state: it only picks a route) and a
// write that is not held (write_begin + write_end in one step, with the same locking and
// accounting); create (an rdwr open of a file that did not exist), opendir (never enters io
// modes), error replies (nothing is created), enosys (a connection-wide switch the corpus
// covers), and unprivileged or malformed ioctls (refused, nothing changes).
// Actions that certainly change nothing are left out: opens once the mount is gone or the
// connection dead (ENOENT/ENOTCONN before LOOKUP), ioctls on a closed /dev/fuse (EBADF), an
// abort of a dead connection, an await of a call still asleep (blocks again), and opens of a
// second mount file in its initial state (the same, up to renaming, as opening the first).
Action action(Op op, int slot = -1) {
  Action a;
  a.op = op;
  a.slot = static_cast<std::int8_t>(slot);
  return a;
}

void offer_ids(const XState &s, const ExploreOptions &o, std::vector<Action> &out) {
  const Live &live = s.live;
  if (!live.dev_open())
    return;
  if (live.registered().size() < o.ids)
    for (int i = 0; i < o.inodes; ++i) {
      Action a = action(Op::BackingOpen, live.declared(NameKind::Backing));
      a.file = static_cast<std::int8_t>(i);
      out.push_back(a);
    }
  live.registered().for_each([&](int k) { out.push_back(action(Op::BackingClose, k)); });
}

// Inodes in their initial state are interchangeable: only the first of them is opened.
bool inode_in_initial_state(const Model &m, int i) {
  bool blank = true;
  for (const FuseInode &fi : m.inodes)
    if (fi.name == static_cast<std::uint32_t>(i))
      blank = inode_blank(fi);
  if (blank)
    for (const FuseFile &ff : m.files)
      if (!ff.released && m.inode(ff.inode).name == static_cast<std::uint32_t>(i))
        blank = false;
  return blank;
}

void offer_opens_of(const XState &s, int file, std::vector<Action> &out) {
  Action a = action(Op::Open, s.live.declared(NameKind::Handle));
  a.file = static_cast<std::int8_t>(file);
  for (Reply r : {Reply::Cached, Reply::Dio, Reply::DioPdw}) {
    a.reply = r;
    out.push_back(a);
  }
  s.live.registered().for_each([&](int k) {
    a.backing = static_cast<std::int8_t>(k);
    for (Reply r : {Reply::Pt, Reply::PtDioPdw}) {
      a.reply = r;
      out.push_back(a);
    }
  });
  a.backing = -1;
  a.reply = Reply::PtId0;
  out.push_back(a);
  if (s.closed_id) {
    a.reply = Reply::PtClosed;
    out.push_back(a);
  }
}

// verify-policy's node id of mount file i (1 is the root).
policy::Inode policy_inode(int file) { return static_cast<policy::Inode>(file) + 2; }

bool stacked_file(const ExploreOptions &o, int file) { return file >= o.inodes - o.stacked; }

// verify-policy: the server holds nothing for the file either.
bool server_blank(const XState &s, int file) {
  if (!s.server)
    return true;
  const policy::ServerState &st = s.server->state;
  const policy::Inode inode = policy_inode(file);
  for (const auto &[holder, id] : st.backing_ids)
    if (holder.inode == inode)
      return false;
  return st.policy_counts.count(inode) == 0 && st.open_handles.count(inode) == 0;
}

void offer_client_opens_of(const XState &s, int file, std::vector<Action> &out) {
  Action a = action(Op::Open, s.live.declared(NameKind::Handle));
  a.file = static_cast<std::int8_t>(file);
  for (std::size_t v = 0; v < std::size(kClientOpens); ++v) {
    a.variant = static_cast<std::int8_t>(v);
    out.push_back(a);
  }
}

void offer_opens(const XState &s, const ExploreOptions &o, std::vector<Action> &out) {
  const Live &live = s.live;
  const Model &m = s.mut.model();
  const int opens = live.handles().size() + live.blocked(NameKind::Handle).size();
  if (!m.fc.mounted || !m.fc.connected || opens >= o.files)
    return;
  bool blank_offered[2] = {false, false}; // plain and (verify-policy) stacked files apart
  for (int i = 0; i < o.inodes; ++i) {
    if (o.symmetry) {
      const bool blank = inode_in_initial_state(m, i) && server_blank(s, i);
      bool &offered = blank_offered[stacked_file(o, i)];
      if (blank && offered)
        continue;
      offered = offered || blank;
    }
    if (o.policy)
      offer_client_opens_of(s, i, out);
    else
      offer_opens_of(s, i, out);
  }
}

void offer_on_handles(const XState &s, const ExploreOptions &o, std::vector<Action> &out) {
  const Live &live = s.live;
  const Model &m = s.mut.model();
  live.handles().for_each([&](int h) { out.push_back(action(Op::Close, h)); });
  if (live.mappings().size() + live.blocked(NameKind::Mapping).size() < o.mappings)
    live.handles().for_each([&](int h) {
      for (bool shared : {true, false}) {
        Action a = action(Op::Mmap, live.declared(NameKind::Mapping));
        a.handle = static_cast<std::int8_t>(h);
        a.shared = shared;
        out.push_back(a);
      }
    });
  live.mappings().for_each([&](int mp) { out.push_back(action(Op::Munmap, mp)); });
  if (live.writes().size() + live.blocked(NameKind::Write).size() < o.writes)
    live.handles().for_each([&](int h) {
      const std::optional<FileId> f = s.mut.fd(h);
      if (!f)
        return;
      const FuseFile &ff = m.file(*f);
      if (!(ff.open_flags & fopen::DIRECT_IO) || ff.f_flags.access == AccessMode::ReadOnly)
        return;
      Action a = action(Op::WriteBegin, live.declared(NameKind::Write));
      a.handle = static_cast<std::int8_t>(h);
      out.push_back(a);
    });
  live.writes().for_each([&](int w) { out.push_back(action(Op::WriteEnd, w)); });
}

void offer_ends(const XState &s, const ExploreOptions &o, std::vector<Action> &out) {
  const Model &m = s.mut.model();
  // Awaits in replay's order of blocked names (handles, mappings, writes).
  s.mut.for_each_pending([&](NameKind k, int slot, TaskId t) {
    if (!s.live.blocked(k).contains(slot) || !m.tasks.at(idx(t)).done)
      return;
    Action a = action(Op::Await, slot);
    a.await_kind = k;
    out.push_back(a);
  });
  // A client cannot abort the connection, unmount or close the server's device.
  if (o.policy)
    return;
  if (m.fc.sb_alive && m.fc.connected)
    out.push_back(action(Op::Abort));
  if (m.fc.mounted)
    out.push_back(action(Op::Umount));
  if (s.live.dev_open())
    out.push_back(action(Op::DevClose));
}

void enumerate(const XState &s, const ExploreOptions &o, std::vector<Action> &out) {
  out.clear();
  if (!o.policy)
    offer_ids(s, o, out);
  offer_opens(s, o, out);
  offer_on_handles(s, o, out);
  offer_ends(s, o, out);
}

struct StepReport {
  Outcome out;     // the explored model's
  Outcome ref_out; // the unmutated model's (lockstep), else == out
  std::vector<Violation> violations;
  bool diverged = false;
};

// One statement on a state: replay's execute (step, after_step, track).
void apply(XState &s, const Statement &st, StepReport *r) {
  const Bindings &bindings = s.live.bindings();
  r->out = s.mut.step(st, bindings);
  r->violations = s.mut.after_step();
  if (r->out.kind == Outcome::Kind::Invalid)
    r->violations.push_back(Violation{"invalid", r->out.message});
  r->diverged = false;
  if (s.ref) {
    r->ref_out = s.ref->step(st, bindings);
    for (Violation &v : s.ref->after_step()) {
      v.message = "unmutated model: " + v.message;
      r->violations.push_back(std::move(v));
    }
    r->diverged = !same_outcome(r->out, r->ref_out);
  } else {
    r->ref_out = r->out;
  }
  if (st.op == Op::BackingClose && !st.literal_id && r->out.kind == Outcome::Kind::Ok)
    s.closed_id = bindings.backing_ids.at(static_cast<std::size_t>(st.backing));
  s.live.track(st, r->out);
}

// ---- verify-policy: the server's side -------------------------------------------------------

struct Step {
  Statement st;
  StepReport r;
};
using Steps = std::vector<Step>;

void run_step(XState &s, const Statement &st, Steps &steps) {
  steps.push_back(Step{st, {}});
  apply(s, steps.back().st, &steps.back().r);
}

// The registered name bound to an id (the server speaks of ids, statements of names).
std::optional<int> name_of_id(const Live &live, std::int32_t id) {
  std::optional<int> name;
  live.registered().for_each([&](int k) {
    if (live.bindings().backing_ids[static_cast<std::size_t>(k)] == id)
      name = k;
  });
  return name;
}

void server_register(XState &s, policy::Holder h, Steps &steps) {
  Statement st;
  st.op = Op::BackingOpen;
  st.backing = s.live.declared(NameKind::Backing);
  st.source = SourceKind::File;
  const auto file = static_cast<std::size_t>(h.inode - policy_inode(0));
  st.backing_file = s.server->backing_file.at(file);
  st.source_fs = s.server->on_overlay.at(file) ? SourceFs::Overlay : SourceFs::BackingDir;
  run_step(s, st, steps);
  const Outcome &out = steps.back().r.out;
  if (out.kind == Outcome::Kind::Id)
    s.server->state.backing_ids[h] = static_cast<std::int32_t>(out.id);
  else
    s.server->state.backing_failed = true;
}

// A file not yet released was opened with the fb the id maps to.
bool id_in_use(const Model &m, std::int32_t id) {
  const std::optional<FbId> fb = m.fc.backing_files_map.find(id);
  if (!fb)
    return false;
  for (const FuseFile &ff : m.files)
    if (!ff.released && ff.opened_with_fb == fb)
      return true;
  return false;
}

void server_close(XState &s, policy::Holder h, Steps &steps) {
  ServerSide &srv = *s.server;
  const std::int32_t id = srv.state.backing_ids.at(h);
  srv.state.backing_ids.erase(h);
  const std::optional<int> name = name_of_id(s.live, id);
  FPSIM_ASSERT(name.has_value(), "the server closes an id it registered and did not close");
  if (!srv.closed_in_use && id_in_use(s.mut.model(), id))
    srv.closed_in_use = fmt::format("the server closes backing id {} (f{}) while a file opened with it is open",
                                    id, h.inode - policy_inode(0) + 1);
  Statement st;
  st.op = Op::BackingClose;
  st.backing = *name;
  run_step(s, st, steps);
}

// The RELEASEs the last steps delivered: the policy hears of each and closes what it closes.
void server_hears_releases(XState &s, std::size_t files_before, Steps &steps, policy::ServerPolicy &pol) {
  ServerSide &srv = *s.server;
  const Model &m = s.mut.model();
  for (std::uint32_t f = static_cast<std::uint32_t>(files_before); f < m.files.size(); ++f) {
    const FuseFile &ff = m.files[f];
    for (AnsweredOpen &a : srv.answered)
      if (!ff.is_dir && !a.ff && m.inode(ff.inode).name == static_cast<std::uint32_t>(a.file)) {
        a.ff = FileId{f};
        break;
      }
  }
  for (std::size_t i = 0; i < srv.answered.size();) {
    const AnsweredOpen a = srv.answered[i];
    if (!a.ff || !s.mut.model().file(*a.ff).released) {
      ++i;
      continue;
    }
    srv.answered.erase(srv.answered.begin() + static_cast<std::ptrdiff_t>(i));
    if (--srv.state.open_handles.at(a.request.inode) == 0)
      srv.state.open_handles.erase(a.request.inode);
    for (policy::Holder h : pol.close_after_release(a.request, srv.state))
      server_close(s, h, steps);
  }
}

// The server's reply as the open statement's reply: an id it registered by that name.
ReplySpec reply_spec(const XState &s, const model::OpenReply &reply, KernelProfile p) {
  ReplySpec r;
  switch (reply.kind) {
  case model::OpenReply::Kind::Error:
    r.kind = ReplySpec::Kind::Error;
    r.error = reply.error;
    return r;
  case model::OpenReply::Kind::Enosys:
    r.kind = ReplySpec::Kind::Enosys;
    return r;
  case model::OpenReply::Kind::Flags:
    break;
  }
  r = reply_spec_of_wire(reply.open_flags, p);
  if (r.flags & reply_flag::PASSTHROUGH) {
    if (std::optional<int> name = name_of_id(s.live, reply.backing_id)) {
      r.id_kind = ReplySpec::IdKind::Name;
      r.backing = *name;
    } else {
      r.id_kind = ReplySpec::IdKind::Literal;
      r.literal_id = reply.backing_id;
    }
  }
  return r;
}

// A client's open (`st` without its reply): the server registers what its policy registers,
// replies, may close at once.
void client_open(XState &s, Statement st, Steps &steps, const ExploreOptions &o) {
  policy::ServerPolicy &pol = *o.policy;
  ServerSide &srv = *s.server;
  const std::int8_t file = static_cast<std::int8_t>(st.file);
  const policy::OpenRequest req{policy::OpenKind::Open, policy_inode(file), fmt::format("f{}", file + 1),
                                linux_open_flags({st.access, st.o_direct, st.o_trunc}), srv.next_fh};
  for (policy::Holder h : pol.register_before_reply(req, srv.state))
    server_register(s, h, steps);
  const model::OpenReply reply = pol.reply(req, srv.state);
  if (reply.kind == model::OpenReply::Kind::Flags) {
    srv.next_fh++;
    srv.answered.push_back(AnsweredOpen{req, file, std::nullopt});
    srv.state.open_handles[req.inode]++;
  }
  st.reply = reply_spec(s, reply, o.profile);
  // The kernel looks the id up after the reply is written: a close "right after" may come first.
  for (policy::Holder h : pol.close_after_reply(req, srv.state))
    server_close(s, h, steps);
  run_step(s, st, steps);
}

// verify-policy: a client's statement with what the server does around it.
void client_step(XState &s, const Statement &st, Steps &steps, const ExploreOptions &o) {
  const std::size_t files_before = s.mut.model().files.size();
  if (st.op == Op::Open)
    client_open(s, st, steps, o);
  else
    run_step(s, st, steps);
  server_hears_releases(s, files_before, steps, *o.policy);
}

Statement client_open_statement(const Action &a) {
  const ClientOpen &c = kClientOpens[static_cast<std::size_t>(a.variant)];
  Statement st;
  st.op = Op::Open;
  st.handle = a.slot;
  st.file = a.file;
  st.access = c.access;
  st.o_direct = c.o_direct;
  st.o_trunc = c.o_trunc;
  return st;
}

// One action: its statement, or for verify-policy the client's statement with what the server
// does around it.
void act(XState &s, const Action &a, Steps &steps, const ExploreOptions &o) {
  if (!o.policy)
    run_step(s, to_statement(a, s), steps);
  else
    client_step(s, a.op == Op::Open ? client_open_statement(a) : to_statement(a, s), steps, o);
}

// ---- canonical encoding ----------------------------------------------------------------------

constexpr std::uint32_t kNone = 0xffffffffu;

// The id of a registered backing name.
std::int32_t id_of(const Live &live, int backing) {
  return *live.bindings().backing_ids[static_cast<std::size_t>(backing)];
}

// Canonical numbers of one model's objects, filled by Encoder::view.
struct Canon {
  std::vector<std::uint32_t> inode, file, fb, bf, vma, write, task;
  std::uint32_t n_fb = 0, n_bf = 0; // fbs and backing_files numbered
};

class Encoder {
public:
  Encoder(const ExploreOptions &o, bool exact_ids)
      : symmetry_(o.symmetry), exact_ids_(exact_ids), inodes_(o.inodes), stacked_(o.stacked) {}

  std::uint64_t hash(const XState &s) {
    Hasher h;
    view(s.mut, s, h, canon_[0]);
    if (s.server)
      serialize_server(s.mut.model(), *s.server, canon_[0], h);
    if (s.ref) {
      view(*s.ref, s, h, canon_[1]);
      correspond(s, h);
    }
    return h.done();
  }

private:
  // Per-model scratch.
  struct FileInfo {
    std::uint64_t key = 0;
    int fds = 0;
    std::vector<std::uint32_t> vmas, writes;
  };

  template <typename T> static void fill(std::vector<T> &v, std::size_t n, T x) { v.assign(n, x); }

  // By key, ties by index: a total order, so the result does not depend on the sort.
  template <typename Key> static void sort_by(std::vector<std::uint32_t> &v, Key key) {
    std::sort(v.begin(), v.end(), [&](std::uint32_t a, std::uint32_t b) {
      const std::uint64_t ka = key(a), kb = key(b);
      return ka != kb ? ka < kb : a < b;
    });
  }

  std::uint64_t vma_key(const Model &m, std::uint32_t v) const {
    const Vma &x = m.vmas[v];
    const FuseFile &ff = m.file(x.file);
    const FuseInode &fi = m.inode(ff.inode);
    Hasher h;
    h.add(
        static_cast<std::uint64_t>(x.target) | (x.shared ? 4u : 0u) |
        // I13 reads the attach time only for mappings of the FUSE file itself.
        (x.target == VmaTarget::FuseFile && fi.fb && x.created_at >= fi.fb_attached_at ? 8u : 0u) |
        (vma_named_[v] ? 16u : 0u));
    return h.done();
  }

  std::uint64_t task_fields(const Model &m, std::uint32_t t) const {
    const Task &x = m.tasks[t];
    const SysResult &r = x.result;
    return static_cast<std::uint64_t>(x.kind) |
           (static_cast<std::uint64_t>(task_pending_[t]) << 4) | (x.shared ? 1ull << 8 : 0) |
           (x.woken ? 1ull << 9 : 0) | (x.done ? 1ull << 10 : 0) |
           (r.sync_release ? 1ull << 11 : 0) | (r.file ? 1ull << 12 : 0) |
           (r.vma ? 1ull << 13 : 0) | (r.write ? 1ull << 14 : 0) |
           (static_cast<std::uint64_t>(r.route) << 16) |
           (static_cast<std::uint64_t>(static_cast<std::uint32_t>(r.err)) << 24) |
           (static_cast<std::uint64_t>(static_cast<std::uint32_t>(r.internal_err)) << 40);
  }

  std::uint64_t write_key(const Model &m, std::uint32_t w) const {
    const Write &x = m.writes[w];
    Hasher h;
    h.add(static_cast<std::uint64_t>(x.held) | (x.exclusive ? 2u : 0u) | (x.counted ? 4u : 0u) |
          (x.locked ? 8u : 0u) | (x.in_flight ? 16u : 0u) | (x.done ? 32u : 0u) |
          (write_named_[w] ? 64u : 0u) | (x.folio_locked ? 128u : 0u) |
          (static_cast<std::uint64_t>(x.folio_in_mapping) << 48) |
          (static_cast<std::uint64_t>(static_cast<std::uint32_t>(x.result)) << 8));
    h.add(write_task_[w] == kNone ? 0 : task_fields(m, write_task_[w]) + 1);
    // Creation order matters among calls pending (woken ones run in that order) and among
    // writes waiting for the lock (FIFO): ranks keep ties from being broken inconsistently.
    h.add(write_task_[w] == kNone ? 0 : task_rank_[write_task_[w]]);
    h.add(wait_rank_[w]);
    return h.done();
  }

  // One model: every live object, references as canonical numbers (see the file comment).
  void view(const SimExecutor &ex, const XState &s, Hasher &out, Canon &c) {
    const Model &m = ex.model();
    name_objects(m, ex, s.live);
    key_files(m);
    order_inodes(m, s);
    number_held(m, c);
    number_unheld_fbs(m, s, c);
    number_orphans(m, c);
    number_rest(m, c);
    serialize_inodes(m, s.live, c, out);
    serialize_backings(m, c, out);
    serialize_ids(m, s, c, out);
    serialize_calls(m, ex, s.live, c, out);
  }

  // Names and the calls pending: which objects a name or an await reaches.
  void name_objects(const Model &m, const SimExecutor &ex, const Live &live) {
    const std::size_t nw = m.writes.size(), nt = m.tasks.size();
    fill(fds_, m.files.size(), 0);
    fill(vma_named_, m.vmas.size(), false);
    fill(write_named_, nw, false);
    fill(task_pending_, nt, std::uint8_t{0});
    live.handles().for_each([&](int h) {
      if (auto f = ex.fd(h))
        fds_[idx(*f)]++;
    });
    for (int k = 0; k < live.declared(NameKind::Mapping); ++k)
      if (auto v = ex.mapping(k))
        vma_named_[idx(*v)] = true;
    for (int k = 0; k < live.declared(NameKind::Write); ++k)
      if (auto w = ex.held_write(k))
        write_named_[idx(*w)] = true;
    fill(write_task_, nw, kNone);
    ex.for_each_pending([&](NameKind k, int, TaskId t) {
      task_pending_[idx(t)] = static_cast<std::uint8_t>(static_cast<int>(k) + 1);
      const Task &x = m.tasks[idx(t)];
      if (x.kind == TaskKind::WriteLockWait)
        write_task_[idx(x.write)] = idx(t);
    });
    fill(task_rank_, nt, 0u);
    for (std::uint32_t t = 0, r = 0; t < nt; ++t)
      if (task_pending_[t])
        task_rank_[t] = ++r;
    fill(wait_rank_, nw, 0u);
    for (std::uint32_t w = 0, r = 0; w < nw; ++w)
      if (!m.writes[w].locked && !m.writes[w].done)
        wait_rank_[w] = ++r;
    // Cred -> the fb that owns it.
    fill(cred_owner_, m.creds.size(), kNone);
    for (std::uint32_t i = 0; i < m.backings.size(); ++i)
      cred_owner_[idx(m.backings[i].cred)] = i;
  }

  // Files and their VMAs and writes, each file with a key summarising them.
  void key_files(const Model &m) {
    const std::size_t nf = m.files.size(), nv = m.vmas.size(), nw = m.writes.size(),
                      nt = m.tasks.size();
    files_.resize(std::max(files_.size(), nf));
    for (std::uint32_t f = 0; f < nf; ++f) {
      files_[f].vmas.clear();
      files_[f].writes.clear();
    }
    orphan_vmas_.clear();
    orphan_writes_.clear();
    for (std::uint32_t v = 0; v < nv; ++v) {
      if (!m.vmas[v].mapped)
        continue;
      const std::uint32_t f = idx(m.vmas[v].file);
      (m.files[f].released ? orphan_vmas_ : files_[f].vmas).push_back(v);
    }
    for (std::uint32_t w = 0; w < nw; ++w) {
      const Write &x = m.writes[w];
      if (x.done && !write_named_[w] && write_task_[w] == kNone)
        continue;
      const std::uint32_t f = idx(x.file);
      (m.files[f].released ? orphan_writes_ : files_[f].writes).push_back(w);
    }
    for (std::uint32_t f = 0; f < nf; ++f) {
      const FuseFile &ff = m.files[f];
      if (ff.released)
        continue;
      FileInfo &fi = files_[f];
      if (symmetry_) {
        sort_by(fi.vmas, [&](std::uint32_t v) { return vma_key(m, v); });
        sort_by(fi.writes, [&](std::uint32_t w) { return write_key(m, w); });
      }
      const FuseInode &node = m.inode(ff.inode);
      Hasher h;
      h.add(file_fields(ff) | (static_cast<std::uint64_t>(fds_[f]) << 40));
      h.add((ff.cred ? (cred_owner_[idx(*ff.cred)] == (node.fb ? idx(*node.fb) : kNone) ? 1 : 2)
                     : 0) |
            (ff.opened_with_fb ? (ff.opened_with_fb == node.fb ? 4 : 8) : 0) |
            (ff.passthrough
                 ? static_cast<std::uint64_t>(m.backing_files[idx(*ff.passthrough)].f_count.value())
                       << 8
                 : 0));
      for (std::uint32_t v : fi.vmas)
        h.add(vma_key(m, v));
      for (std::uint32_t w : fi.writes)
        h.add(write_key(m, w));
      for (std::uint32_t t = 0; t < nt; ++t)
        if (task_pending_[t] && idx(m.tasks[t].file) == f &&
            m.tasks[t].kind != TaskKind::WriteLockWait)
          h.add(task_fields(m, t) ^ static_cast<std::uint64_t>(task_rank_[t]) << 56);
      fi.key = h.done();
    }
  }

  // Inodes: live when not in their initial state or holding a live file.
  void order_inodes(const Model &m, const XState &s) {
    const std::size_t ni = m.inodes.size(), nf = m.files.size();
    inode_files_.resize(std::max(inode_files_.size(), ni));
    for (std::uint32_t i = 0; i < ni; ++i)
      inode_files_[i].clear();
    for (std::uint32_t f = 0; f < nf; ++f)
      if (!m.files[f].released)
        inode_files_[idx(m.files[f].inode)].push_back(f);
    inode_order_.clear();
    inode_key_.assign(ni, 0);
    for (std::uint32_t i = 0; i < ni; ++i) {
      const FuseInode &fi = m.inodes[i];
      if (inode_blank(fi) && inode_files_[i].empty())
        continue;
      auto &fl = inode_files_[i];
      if (symmetry_)
        sort_by(fl, [&](std::uint32_t f) { return files_[f].key; });
      Hasher h;
      h.add(inode_fields(fi));
      if (fi.fb)
        h.add(fb_key(m, s, idx(*fi.fb)));
      if (!symmetry_)
        h.add(fi.name);
      for (std::uint32_t f : fl)
        h.add(files_[f].key);
      inode_key_[i] = h.done();
      inode_order_.push_back(i);
    }
    if (symmetry_)
      sort_by(inode_order_, [&](std::uint32_t i) { return inode_key_[i]; });
    else
      std::sort(inode_order_.begin(), inode_order_.end(), [&](std::uint32_t a, std::uint32_t bb) {
        return m.inodes[a].name < m.inodes[bb].name;
      });
  }

  // Canonical numbers of what the inodes hold, in the order it is serialized.
  void number_held(const Model &m, Canon &c) {
    const std::size_t nb = m.backings.size();
    fill(c.inode, m.inodes.size(), kNone);
    fill(c.file, m.files.size(), kNone);
    fill(c.fb, nb, kNone);
    fill(c.bf, m.backing_files.size(), kNone);
    fill(c.vma, m.vmas.size(), kNone);
    fill(c.write, m.writes.size(), kNone);
    fill(c.task, m.tasks.size(), kNone);
    std::uint32_t &n_fb = c.n_fb, &n_bf = c.n_bf;
    n_fb = n_bf = 0;
    std::uint32_t n_inode = 0, n_file = 0;
    auto number_fb = [&](std::optional<FbId> fb) {
      if (fb && c.fb[idx(*fb)] == kNone)
        c.fb[idx(*fb)] = n_fb++;
    };
    auto number_cred = [&](std::optional<CredId> cr) {
      if (cr && cred_owner_[idx(*cr)] != kNone)
        number_fb(FbId{cred_owner_[idx(*cr)]});
    };
    // Without the reduction fbs keep their creation order; everything else is numbered in
    // the order it is serialized, so references read back unambiguously.
    if (!symmetry_)
      for (std::uint32_t i = 0; i < nb; ++i)
        if (fb_live(m, i))
          c.fb[i] = n_fb++;
    for (std::uint32_t i : inode_order_) {
      c.inode[i] = n_inode++;
      number_fb(m.inodes[i].fb);
      for (std::uint32_t f : inode_files_[i]) {
        c.file[f] = n_file++;
        number_fb(m.files[f].opened_with_fb);
        number_cred(m.files[f].cred);
        if (m.files[f].passthrough && c.bf[idx(*m.files[f].passthrough)] == kNone)
          c.bf[idx(*m.files[f].passthrough)] = n_bf++;
      }
    }
  }

  // Canonical numbers of the fbs no live file holds (registered only, or unreferenced), by
  // what they are.
  void number_unheld_fbs(const Model &m, const XState &s, Canon &c) {
    rest_.clear();
    for (std::uint32_t i = 0; i < m.backings.size(); ++i)
      if (c.fb[i] == kNone && fb_live(m, i))
        rest_.push_back(i);
    sort_by(rest_, [&](std::uint32_t i) { return fb_key(m, s, i); });
    for (std::uint32_t i : rest_)
      c.fb[i] = c.n_fb++;
  }

  // Canonical numbers of orphan backing_files (still pinned, by VMAs, after their file was
  // released); orphan VMAs grouped under them, orphan writes by key.
  void number_orphans(const Model &m, Canon &c) {
    const std::size_t nbf = m.backing_files.size();
    rest_.clear();
    for (std::uint32_t i = 0; i < nbf; ++i)
      if (c.bf[i] == kNone && m.backing_files[i].f_count.value() != 0)
        rest_.push_back(i);
    for (std::uint32_t v : orphan_vmas_)
      if (m.vmas[v].target == VmaTarget::BackingFile &&
          c.bf[idx(m.vmas[v].backing_file)] == kNone &&
          std::find(rest_.begin(), rest_.end(), idx(m.vmas[v].backing_file)) == rest_.end())
        rest_.push_back(idx(m.vmas[v].backing_file));
    if (symmetry_) {
      sort_by(rest_, [&](std::uint32_t i) { return bf_key(m, i); });
      sort_by(orphan_writes_, [&](std::uint32_t w) { return write_key(m, w); });
    }
    for (std::uint32_t i : rest_)
      c.bf[i] = c.n_bf++;
    // Orphan VMAs grouped under their backing_file, in its canonical order.
    if (symmetry_) {
      auto bf_of = [&](std::uint32_t v) -> std::uint64_t {
        return m.vmas[v].target == VmaTarget::BackingFile ? c.bf[idx(m.vmas[v].backing_file)]
                                                          : kNone;
      };
      std::sort(orphan_vmas_.begin(), orphan_vmas_.end(), [&](std::uint32_t a, std::uint32_t bb) {
        if (bf_of(a) != bf_of(bb))
          return bf_of(a) < bf_of(bb);
        const std::uint64_t ka = vma_key(m, a), kb = vma_key(m, bb);
        return ka != kb ? ka < kb : a < bb;
      });
    }
  }

  // Canonical numbers of VMAs and writes, in the order they are serialized, and of calls.
  void number_rest(const Model &m, Canon &c) {
    const std::size_t nt = m.tasks.size();
    std::uint32_t n_vma = 0, n_write = 0, n_task = 0;
    for (std::uint32_t i : inode_order_)
      for (std::uint32_t f : inode_files_[i]) {
        for (std::uint32_t v : files_[f].vmas)
          c.vma[v] = n_vma++;
        for (std::uint32_t w : files_[f].writes)
          c.write[w] = n_write++;
      }
    for (std::uint32_t v : orphan_vmas_)
      c.vma[v] = n_vma++;
    for (std::uint32_t w : orphan_writes_)
      c.write[w] = n_write++;
    for (std::uint32_t t = 0; t < nt; ++t)
      if (task_pending_[t])
        c.task[t] = n_task++;
  }

  // The connection, then every inode with its files.
  void serialize_inodes(const Model &m, const Live &live, const Canon &c, Hasher &out) {
    auto fbn = [&](std::optional<FbId> fb) -> std::uint64_t { return fb ? c.fb[idx(*fb)] : kNone; };
    const FuseConn &fc = m.fc;
    out.add(0xc0c0);
    out.add(
        static_cast<std::uint64_t>(fc.initialized) | fc.passthrough << 1 | fc.writeback_cache << 2 |
        fc.direct_io_allow_mmap << 3 | fc.no_open << 4 | fc.no_opendir << 5 | fc.connected << 6 |
        fc.mounted << 7 | fc.sb_alive << 8 | fc.dev_open << 9 | fc.freed << 10 |
        static_cast<std::uint64_t>(fc.max_stack_depth) << 16 | live.mounted() << 24 |
        live.dev_open() << 25);
    for (std::uint32_t i : inode_order_) {
      const FuseInode &fi = m.inodes[i];
      out.add(0x1a0de);
      out.add(inode_fields(fi));
      if (!symmetry_)
        out.add(fi.name);
      out.add(fbn(fi.fb));
      for (std::uint32_t f : inode_files_[i]) {
        const FuseFile &ff = m.files[f];
        out.add(0xf11e);
        out.add(file_fields(ff) | static_cast<std::uint64_t>(fds_[f]) << 40);
        out.add(fbn(ff.opened_with_fb) << 32 |
                (ff.cred ? (cred_owner_[idx(*ff.cred)] == kNone ? 0xfffe
                                                                : c.fb[cred_owner_[idx(*ff.cred)]])
                         : kNone));
        if (ff.passthrough)
          out.add(
              static_cast<std::uint64_t>(c.bf[idx(*ff.passthrough)]) << 32 |
              static_cast<std::uint32_t>(m.backing_files[idx(*ff.passthrough)].f_count.value()));
        for (std::uint32_t v : files_[f].vmas) {
          const Vma &x = m.vmas[v];
          out.add(vma_key(m, v));
          out.add(x.target == VmaTarget::BackingFile ? c.bf[idx(x.backing_file)] : kNone);
        }
        out.add(0x3);
        for (std::uint32_t w : files_[f].writes)
          out.add(write_key(m, w));
      }
    }
  }

  // The backing_files in canonical order, the orphans, the fbs in canonical order.
  void serialize_backings(const Model &m, const Canon &c, Hasher &out) {
    // rest_: the objects in canonical order.
    auto in_order = [&](const std::vector<std::uint32_t> &canon, std::uint32_t n) {
      rest_.assign(n, kNone);
      for (std::uint32_t i = 0; i < canon.size(); ++i)
        if (canon[i] != kNone)
          rest_[canon[i]] = i;
    };
    out.add(0x0b);
    in_order(c.bf, c.n_bf);
    for (std::uint32_t i : rest_)
      out.add(static_cast<std::uint32_t>(m.backing_files[i].f_count.value()));
    for (std::uint32_t v : orphan_vmas_) {
      out.add(vma_key(m, v));
      out.add(m.vmas[v].target == VmaTarget::BackingFile ? c.bf[idx(m.vmas[v].backing_file)]
                                                         : c.file[idx(m.vmas[v].file)]);
    }
    out.add(0x0c);
    for (std::uint32_t w : orphan_writes_)
      out.add(write_key(m, w));
    in_order(c.fb, c.n_fb);
    out.add(0xfb);
    for (std::uint32_t i : rest_) {
      const FuseBacking &x = m.backings[i];
      out.add(static_cast<std::uint64_t>(static_cast<std::uint32_t>(x.count.value())) |
              static_cast<std::uint64_t>(
                  static_cast<std::uint32_t>(m.creds.at(idx(x.cred)).usage.value()))
                  << 32);
      out.add(
          static_cast<std::uint64_t>(x.freed) | static_cast<std::uint64_t>(x.kind) << 8 |
          (exact_ids_ ? static_cast<std::uint64_t>(static_cast<std::uint32_t>(x.id)) << 16 : 0));
    }
  }

  // The id map, the names bound to ids, the last closed id.
  void serialize_ids(const Model &m, const XState &s, const Canon &c, Hasher &out) {
    const FuseConn &fc = m.fc;
    const Live &live = s.live;
    auto id_target = [&](std::int32_t id) -> std::uint64_t {
      for (const auto &[k, fb] : fc.backing_files_map)
        if (k == id)
          return c.fb[idx(fb)];
      return kNone;
    };
    auto id_value = [&](std::int32_t id) -> std::uint64_t {
      return exact_ids_ ? static_cast<std::uint64_t>(static_cast<std::uint32_t>(id)) << 32 : 0;
    };
    small_.clear();
    for (const auto &[id, fb] : fc.backing_files_map)
      small_.push_back(id_value(id) | c.fb[idx(fb)]);
    sorted_add(out, 0x1d, small_);
    small_.clear();
    live.registered().for_each([&](int k) {
      const std::int32_t id = id_of(live, k);
      small_.push_back(id_value(id) | id_target(id));
    });
    sorted_add(out, 0x2d, small_);
    out.add(s.closed_id ? id_value(*s.closed_id) | id_target(*s.closed_id) : kNone);
    if (exact_ids_)
      out.add(static_cast<std::uint32_t>(fc.idr_next));
  }

  // Calls pending an await, in creation order (woken calls run in that order); writes waiting
  // for an inode lock; without the reduction, the names themselves.
  void serialize_calls(const Model &m, const SimExecutor &ex, const Live &live, const Canon &c,
                       Hasher &out) {
    const std::size_t nw = m.writes.size(), nt = m.tasks.size();
    out.add(0x7a);
    for (std::uint32_t t = 0; t < nt; ++t)
      if (task_pending_[t]) {
        const Task &x = m.tasks[t];
        out.add(task_fields(m, t));
        out.add(static_cast<std::uint64_t>(c.file[idx(x.file)]) << 32 |
                (x.kind == TaskKind::WriteLockWait ? c.write[idx(x.write)] : kNone));
      }
    // Writes waiting for an inode lock, in creation order (the lock is FIFO).
    out.add(0x7b);
    for (std::uint32_t w = 0; w < nw; ++w)
      if (!m.writes[w].locked && !m.writes[w].done)
        out.add(c.write[w]);
    if (!symmetry_) {
      // Without the reduction names are part of the state.
      out.add(0x5107);
      const int handles = live.declared(NameKind::Handle),
                mappings = live.declared(NameKind::Mapping),
                writes = live.declared(NameKind::Write);
      for (int k = 0; k < handles; ++k)
        out.add(ex.fd(k) ? c.file[idx(*ex.fd(k))] : kNone);
      for (int k = 0; k < mappings; ++k)
        out.add(ex.mapping(k) ? c.vma[idx(*ex.mapping(k))] : kNone);
      for (int k = 0; k < writes; ++k)
        out.add(ex.held_write(k) ? c.write[idx(*ex.held_write(k))] : kNone);
      out.add(live.registered().low_bits());
      out.add(static_cast<std::uint64_t>(handles) | mappings << 8 | writes << 16 |
              live.declared(NameKind::Backing) << 24);
      ex.for_each_pending([&](NameKind k, int slot, TaskId t) {
        out.add(static_cast<std::uint64_t>(k) << 48 | static_cast<std::uint64_t>(slot) << 32 |
                c.task[idx(t)]);
      });
    }
  }

  void sorted_add(Hasher &out, std::uint64_t tag, std::vector<std::uint64_t> &v) const {
    if (symmetry_)
      std::sort(v.begin(), v.end());
    out.add(tag);
    out.add(v.size());
    for (std::uint64_t x : v)
      out.add(x);
  }

  static std::uint64_t inode_fields(const FuseInode &fi) {
    return static_cast<std::uint64_t>(static_cast<std::uint32_t>(fi.iocachectr)) |
           static_cast<std::uint64_t>(fi.cache_io_mode) << 32 |
           static_cast<std::uint64_t>(fi.fb.has_value()) << 33 |
           static_cast<std::uint64_t>(fi.i_rwsem.writer) << 34 |
           static_cast<std::uint64_t>(fi.evicted) << 35 |
           static_cast<std::uint64_t>(fi.folio_uptodate) << 36 |
           static_cast<std::uint64_t>(fi.dentry_cached) << 37 |
           static_cast<std::uint64_t>(static_cast<std::uint16_t>(fi.i_rwsem.readers)) << 40;
  }

  static std::uint64_t file_fields(const FuseFile &ff) {
    return static_cast<std::uint64_t>(ff.open_flags & 0xffff) |
           static_cast<std::uint64_t>(ff.f_flags.access) << 16 |
           static_cast<std::uint64_t>(ff.f_flags.o_direct) << 18 |
           static_cast<std::uint64_t>(ff.f_flags.o_trunc) << 19 |
           static_cast<std::uint64_t>(ff.f_flags.o_creat_excl) << 20 |
           static_cast<std::uint64_t>(ff.is_dir) << 21 |
           static_cast<std::uint64_t>(ff.has_args) << 22 |
           static_cast<std::uint64_t>(ff.iomode) << 23 |
           static_cast<std::uint64_t>(ff.passthrough.has_value()) << 25 |
           static_cast<std::uint64_t>(ff.cred.has_value()) << 26 |
           static_cast<std::uint64_t>(static_cast<std::uint16_t>(ff.f_count.value())) << 27;
  }

  // Not freed, or (a bug) still reachable from the id map.
  static bool fb_live(const Model &m, std::uint32_t i) {
    if (!m.backings[i].freed)
      return true;
    for (const auto &[id, fb] : m.fc.backing_files_map)
      if (idx(fb) == i)
        return true;
    return false;
  }

  std::uint64_t fb_key(const Model &m, const XState &s, std::uint32_t i) const {
    const FuseBacking &x = m.backings[i];
    Hasher h;
    h.add(static_cast<std::uint64_t>(static_cast<std::uint32_t>(x.count.value())) |
          static_cast<std::uint64_t>(
              static_cast<std::uint32_t>(m.creds.at(idx(x.cred)).usage.value()))
              << 32);
    std::uint64_t in_idr = 0, named = 0, closed = 0;
    for (const auto &entry : m.fc.backing_files_map)
      if (idx(entry.second) == i) {
        // Not a structured binding: clang 14 (the fuzz preset) cannot capture one in a lambda.
        const std::int32_t id = entry.first;
        in_idr++;
        s.live.registered().for_each([&](int k) { named += id_of(s.live, k) == id; });
        closed += s.closed_id == id;
      }
    h.add(in_idr | named << 16 | closed << 32 | static_cast<std::uint64_t>(x.freed) << 48);
    if (exact_ids_)
      h.add(static_cast<std::uint32_t>(x.id));
    return h.done();
  }

  // A backing_file no live file holds: its count and the VMAs that pin it.
  std::uint64_t bf_key(const Model &m, std::uint32_t i) const {
    std::vector<std::uint64_t> keys;
    for (std::uint32_t v : orphan_vmas_)
      if (m.vmas[v].target == VmaTarget::BackingFile && idx(m.vmas[v].backing_file) == i)
        keys.push_back(vma_key(m, v));
    std::sort(keys.begin(), keys.end());
    Hasher h;
    h.add(static_cast<std::uint32_t>(m.backing_files[i].f_count.value()));
    for (std::uint64_t k : keys)
      h.add(k);
    return h.done();
  }

  // verify-policy: what the server holds, by the canonical numbers of the model's objects (an
  // inode the model has no live state for is "blank": blank inodes are interchangeable).
  void serialize_server(const Model &m, const ServerSide &srv, const Canon &c, Hasher &out) {
    // Plain and stacked files are not interchangeable: the bit tells them apart.
    auto inode_no = [&](policy::Inode inode) -> std::uint64_t {
      const auto name = static_cast<std::uint32_t>(inode - policy_inode(0));
      const std::uint64_t stacked = name >= static_cast<std::uint32_t>(inodes_ - stacked_);
      for (std::uint32_t i = 0; i < m.inodes.size(); ++i)
        if (m.inodes[i].name == name)
          return (symmetry_ ? c.inode[i] : name) << 1 | stacked;
      return (symmetry_ ? kNone : name) << 1 | stacked;
    };
    auto file_no = [&](std::uint64_t fh) -> std::uint64_t {
      for (const AnsweredOpen &a : srv.answered)
        if (a.request.fh == fh)
          return a.ff ? c.file[idx(*a.ff)] : kNone - 1;
      return kNone;
    };
    small_.clear();
    for (const auto &[holder, id] : srv.state.backing_ids) {
      const std::optional<FbId> fb = m.fc.backing_files_map.find(id);
      small_.push_back(inode_no(holder.inode) << 40 ^ (holder.fh ? file_no(holder.fh) : kNone) << 20 ^
                       (fb ? c.fb[idx(*fb)] : kNone));
    }
    sorted_add(out, 0xb1, small_);
    small_.clear();
    for (const auto &[inode, n] : srv.state.policy_counts)
      small_.push_back(inode_no(inode) << 32 | static_cast<std::uint32_t>(n));
    for (const AnsweredOpen &a : srv.answered)
      small_.push_back(1ull << 63 | inode_no(a.request.inode) << 32 | (a.ff ? c.file[idx(*a.ff)] : kNone));
    for (std::uint32_t i = 0; i < m.inodes.size(); ++i)
      if (c.inode[i] != kNone)
        small_.push_back(2ull << 62 | inode_no(policy_inode(static_cast<int>(m.inodes[i].name))));
    sorted_add(out, 0xb2, small_);
    out.add(srv.state.backing_failed);
  }

  // Lockstep: which object of the mutant's model is which of the reference's.
  void correspond(const XState &s, Hasher &out) {
    const Model &a = s.mut.model(), &r = s.ref->model();
    const Canon &ca = canon_[0], &cr = canon_[1];
    auto pairs = [&](std::uint64_t tag, const std::vector<std::uint32_t> &x,
                     const std::vector<std::uint32_t> &y) {
      small_.clear();
      for (std::size_t i = 0; i < std::max(x.size(), y.size()); ++i) {
        const std::uint64_t p = i < x.size() ? x[i] : kNone, q = i < y.size() ? y[i] : kNone;
        if (p != kNone || q != kNone)
          small_.push_back(p << 32 | q);
      }
      sorted_add(out, tag, small_);
    };
    // Inodes by name, files and fbs by creation (both models create them in the same steps).
    small_.clear();
    for (std::uint32_t i = 0; i < a.inodes.size(); ++i)
      for (std::uint32_t j = 0; j < r.inodes.size(); ++j)
        if (a.inodes[i].name == r.inodes[j].name && (ca.inode[i] != kNone || cr.inode[j] != kNone))
          small_.push_back(static_cast<std::uint64_t>(ca.inode[i]) << 32 | cr.inode[j]);
    sorted_add(out, 0xa1, small_);
    pairs(0xa2, ca.file, cr.file);
    pairs(0xa3, ca.fb, cr.fb);
    // Names.
    const Live &live = s.live;
    small_.clear();
    live.handles().for_each([&](int h) {
      auto f = s.mut.fd(h), g = s.ref->fd(h);
      small_.push_back(static_cast<std::uint64_t>(f ? ca.file[idx(*f)] : kNone) << 32 |
                       (g ? cr.file[idx(*g)] : kNone));
    });
    sorted_add(out, 0xa4, small_);
    auto named = [&](std::uint64_t tag, NameKind kind, auto get, const std::vector<std::uint32_t> &x,
                     const std::vector<std::uint32_t> &y) {
      small_.clear();
      for (int k = 0; k < live.declared(kind); ++k) {
        auto f = get(s.mut, k), g = get(*s.ref, k);
        if (f || g)
          small_.push_back(static_cast<std::uint64_t>(f ? x[idx(*f)] : kNone) << 32 |
                           (g ? y[idx(*g)] : kNone));
      }
      sorted_add(out, tag, small_);
    };
    named(0xa5, NameKind::Mapping, [](const SimExecutor &e, int k) { return e.mapping(k); },
          ca.vma, cr.vma);
    named(0xa6, NameKind::Write, [](const SimExecutor &e, int k) { return e.held_write(k); },
          ca.write, cr.write);
    small_.clear();
    s.mut.for_each_pending([&](NameKind k, int slot, TaskId t) {
      std::uint64_t q = kNone;
      s.ref->for_each_pending([&](NameKind k2, int slot2, TaskId t2) {
        if (k2 == k && slot2 == slot)
          q = cr.task[idx(t2)];
      });
      small_.push_back(static_cast<std::uint64_t>(ca.task[idx(t)]) << 32 | q);
    });
    sorted_add(out, 0xa7, small_);
  }

  bool symmetry_;
  bool exact_ids_;
  int inodes_, stacked_; // verify-policy: the last stacked_ of inodes_ files are on an overlay
  Canon canon_[2];
  std::vector<int> fds_;
  std::vector<bool> vma_named_, write_named_;
  std::vector<std::uint8_t> task_pending_;
  std::vector<std::uint32_t> write_task_, cred_owner_, task_rank_, wait_rank_;
  std::vector<FileInfo> files_;
  std::vector<std::uint32_t> orphan_vmas_, orphan_writes_, inode_order_, rest_;
  std::vector<std::vector<std::uint32_t>> inode_files_;
  std::vector<std::uint64_t> inode_key_, small_;
};

// ---- the visited set -------------------------------------------------------------------------

// Open addressing over 64-bit hashes (0 is the empty slot), load factor at most 1/2.
class HashSet {
public:
  HashSet() : slots_(1u << 16, 0) {}
  bool insert(std::uint64_t h) {
    if (h == 0)
      h = 1;
    if ((size_ + 1) * 2 > slots_.size())
      grow();
    if (!place(slots_, h))
      return false;
    ++size_;
    return true;
  }
  std::size_t size() const { return size_; }
  std::size_t bytes() const { return slots_.size() * sizeof(std::uint64_t); }

private:
  static bool place(std::vector<std::uint64_t> &s, std::uint64_t h) {
    const std::size_t mask = s.size() - 1;
    for (std::size_t i = (h ^ (h >> 29)) & mask;; i = (i + 1) & mask) {
      if (s[i] == h)
        return false;
      if (s[i] == 0) {
        s[i] = h;
        return true;
      }
    }
  }
  void grow() {
    std::vector<std::uint64_t> n(slots_.size() * 2, 0);
    for (std::uint64_t h : slots_)
      if (h)
        place(n, h);
    slots_.swap(n);
  }
  std::vector<std::uint64_t> slots_;
  std::size_t size_ = 0;
};

// ---- the search ------------------------------------------------------------------------------

struct Node {
  std::uint32_t parent; // index in the previous level (level 0: which root)
  std::uint16_t action; // index into enumerate(parent)
};

Trace make_universe(const ExploreOptions &o) {
  Trace t;
  t.profile = o.profile;
  t.profile_given = true;
  for (int i = 0; i < o.inodes; ++i) {
    t.names.mount_files.push_back(fmt::format("f{}", i + 1));
    t.names.mount_file_created.push_back(false);
    // A server serves each file from its own copy: verify-policy names the two alike.
    t.names.backing_files.push_back(fmt::format("{}{}", o.policy ? 'f' : 's', i + 1));
  }
  // check_merges looks one step past the depth; a policy may register at the mount and at
  // every open.
  t.names.number(o.depth + 1 + (o.policy ? o.inodes : 0));
  return t;
}

Statement init_statement(bool dio_mmap) {
  Statement s;
  s.op = Op::Init;
  s.init.passthrough = true;
  s.init.max_stack_depth = 1;
  s.init.direct_io_allow_mmap = dio_mmap;
  return s;
}

// What ends the search: becomes the Counterexample.
struct ExploreFailure {
  Counterexample::Kind kind;
  std::string rule, message, statement, expected, actual;
};

class Explorer {
public:
  explicit Explorer(const ExploreOptions &o)
      : o_(o), universe_(make_universe(o)),
        exact_ids_(o.exact_ids.value_or(o.mutant != Mutant::None)), enc_(o, exact_ids_) {
  }

  ExploreResult run() {
    t0_ = std::chrono::steady_clock::now();
    ExploreResult res;
    bool ended = add_roots(res);
    for (int d = 0; !ended && d < o_.depth; ++d)
      ended = expand_level(d, res);
    if (!ended) {
      res.complete = true;
      finish(res);
    }
    return res;
  }

private:
  struct At {
    std::uint32_t index; // node index in level `depth - 1` (or root index at depth 0)
    std::uint32_t action;
    int depth = 0; // 0: a root
  };

  double elapsed() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  }

  // The state before init, with the unmutated model in lockstep for a mutant.
  XState fresh() const {
    XState s{SimExecutor(o_.mutant), std::nullopt, Live(universe_.names), std::nullopt, std::nullopt};
    s.mut.begin(universe_, o_.profile);
    if (o_.policy) {
      s.server.emplace();
      for (int i = 0; i < o_.inodes; ++i) {
        s.server->state.files[fmt::format("f{}", i + 1)] = policy_inode(i);
        s.server->backing_file.push_back(i);
        s.server->on_overlay.push_back(stacked_file(o_, i));
      }
    }
    if (o_.mutant != Mutant::None && o_.compare_reference) {
      s.ref.emplace(Mutant::None);
      s.ref->begin(universe_, o_.profile);
    }
    return s;
  }

  // init, then (verify-policy) the registrations the policy makes at the mount.
  void start(XState &s, bool dio, Steps &steps) const {
    run_step(s, init_statement(dio), steps);
    if (s.server)
      for (policy::Holder h : o_.policy->register_at_mount(s.server->state))
        server_register(s, h, steps);
  }

  // Roots: after init, without and with direct_io_allow_mmap. True once the search ended.
  bool add_roots(ExploreResult &res) {
    levels_.emplace_back();
    for (bool dio : {false, true}) {
      if (!(dio ? o_.init_dio_mmap : o_.init_plain))
        continue;
      XState s = fresh();
      steps_.clear();
      start(s, dio, steps_);
      const auto root = static_cast<std::uint32_t>(roots_.size());
      roots_.push_back(s);
      if (auto f = steps_failure(s, steps_))
        return finish(res, *f, {root, 0});
      const std::uint64_t h = enc_.hash(s);
      if (!visited_.insert(h))
        continue;
      if (o_.check_merges)
        signatures_[h] = signature(s);
      if (auto f = drain_failure(s))
        return finish(res, *f, {root, 0});
      levels_[0].push_back(Node{root, 0});
      if (o_.on_state)
        o_.on_state(path_trace({root, 0}, ""));
    }
    res.level_states.push_back(levels_[0].size());
    res.depth_completed = 0;
    report_level(res, 0, elapsed());
    return false;
  }

  // Level d + 1 from level d. True once the search ended.
  bool expand_level(int d, ExploreResult &res) {
    std::vector<Node> next;
    std::vector<Action> actions;
    const std::size_t n = levels_[static_cast<std::size_t>(d)].size();
    for (std::uint32_t i = 0; i < n; ++i) {
      const XState &s = rebuild(d, i);
      enumerate(s, o_, actions);
      for (std::uint32_t a = 0; a < actions.size(); ++a)
        if (take(s, actions[a], {i, a, d + 1}, next, res))
          return true;
    }
    next.shrink_to_fit();
    levels_.push_back(std::move(next));
    res.level_states.push_back(levels_.back().size());
    res.depth_completed = d + 1;
    report_level(res, d + 1, elapsed());
    return false;
  }

  // One transition from s; a new state joins `next`. True once the search ended.
  bool take(const XState &s, const Action &action, At at, std::vector<Node> &next,
            ExploreResult &res) {
    XState t = s;
    steps_.clear();
    act(t, action, steps_, o_);
    transitions_++;
    if (o_.on_transition && steps_.size() == 1)
      o_.on_transition(s.mut.model(), steps_[0].st, steps_[0].r.out, t.mut.model());
    if (auto f = o_.stop_at_violation ? steps_failure(t, steps_) : std::nullopt)
      return finish(res, *f, at);
    const std::uint64_t h = enc_.hash(t);
    if (!visited_.insert(h)) {
      if (o_.check_merges)
        check_merge(t, h, res);
      return false;
    }
    if (o_.check_merges)
      signatures_[h] = signature(t);
    if (at.depth == o_.shard_depth && o_.shard_count > 1 &&
        h % static_cast<std::uint64_t>(o_.shard_count) != static_cast<std::uint64_t>(o_.shard_index))
      return false;
    if (auto f = o_.stop_at_violation ? drain_failure(t) : std::nullopt)
      return finish(res, *f, at);
    next.push_back(Node{at.index, static_cast<std::uint16_t>(at.action)});
    if (o_.on_state)
      o_.on_state(path_trace(at, ""));
    if (!o_.max_states || stored() < o_.max_states)
      return false;
    levels_.push_back(std::move(next));
    res.level_states.push_back(levels_.back().size());
    finish(res);
    return true;
  }

  // What a state does one step ahead, up to renaming: the set of (outcome, successor hash)
  // over every action. A set, not a multiset: "no closed id yet" and "a closed id, now
  // unmapped" are merged on purpose, and differ only by one more open refused like
  // passthrough@id=0 is (same outcome, same successor).
  std::uint64_t signature(const XState &s) {
    std::vector<Action> actions;
    enumerate(s, o_, actions);
    std::vector<std::uint64_t> sig;
    Steps steps;
    for (const Action &a : actions) {
      XState t = s;
      steps.clear();
      act(t, a, steps, o_);
      Hasher h;
      for (const Step &x : steps) {
        const Outcome &out = x.r.out;
        h.add(static_cast<std::uint64_t>(out.kind) | static_cast<std::uint64_t>(out.err) << 8 |
              static_cast<std::uint64_t>(out.release) << 40 |
              (exact_ids_ ? static_cast<std::uint64_t>(out.id) << 48 : 0));
      }
      // A failing step ends the search wherever it is taken: its successor is never stored.
      h.add(steps_failure(t, steps) ? 0 : enc_.hash(t));
      sig.push_back(h.done());
    }
    std::sort(sig.begin(), sig.end());
    sig.erase(std::unique(sig.begin(), sig.end()), sig.end());
    Hasher h;
    for (std::uint64_t x : sig)
      h.add(x);
    h.add(drain_failure(s).has_value());
    return h.done();
  }

  void check_merge(const XState &s, std::uint64_t h, ExploreResult &res) {
    res.merges_checked++;
    auto it = signatures_.find(h);
    if (it != signatures_.end() && it->second != signature(s))
      res.merge_mismatches++;
  }

  std::size_t stored() const {
    std::size_t n = 0;
    for (const auto &l : levels_)
      n += l.size();
    return n;
  }

  void report_level(const ExploreResult &, int d, double secs) {
    if (o_.on_level)
      o_.on_level(d, stored(), transitions_, secs);
  }

  void finish(ExploreResult &res) {
    res.states = stored();
    res.transitions = transitions_;
    res.seconds = elapsed();
    std::size_t nodes = 0;
    for (const auto &l : levels_)
      nodes += l.capacity();
    res.bytes_per_state =
        res.states ? static_cast<double>(visited_.bytes() + nodes * sizeof(Node)) / res.states : 0;
  }

  // Ends the search at a failure; true, for the callers that stop on it.
  bool finish(ExploreResult &res, const ExploreFailure &f, At at) {
    finish(res);
    res.counterexample = counterexample(f, at);
    return true;
  }

  // The first step that fails, then (verify-policy) what the server got wrong.
  std::optional<ExploreFailure> steps_failure(const XState &s, const Steps &steps) const {
    for (const Step &x : steps)
      if (auto f = step_failure(x.r, x.st))
        return f;
    if (!s.server)
      return std::nullopt;
    for (const Step &x : steps)
      if (x.st.op == Op::Open && x.r.out.kind == Outcome::Kind::Errno && x.r.out.err == EIO)
        return ExploreFailure{Counterexample::Kind::OpenFailed, "EIO",
                              "an open(2) fails with EIO under this policy" +
                                  (s.server->closed_in_use ? "; then " + *s.server->closed_in_use : ""),
                              format_statement(x.st, universe_.names), "", ""};
    if (s.server->closed_in_use)
      return ExploreFailure{Counterexample::Kind::ClosedInUse, "closed-in-use", *s.server->closed_in_use,
                            "", "", ""};
    return std::nullopt;
  }

  std::optional<ExploreFailure> step_failure(const StepReport &r, const Statement &st) const {
    if (!r.violations.empty())
      return ExploreFailure{Counterexample::Kind::Violation, r.violations[0].rule,
                            r.violations[0].message, format_statement(st, universe_.names), "", ""};
    if (r.diverged)
      return ExploreFailure{Counterexample::Kind::Divergence,
                     "divergence",
                     fmt::format("the unmutated model returns {}, the mutant {}",
                                 format_outcome_detailed(r.ref_out),
                                 format_outcome_detailed(r.out)),
                     format_statement(st, universe_.names),
                     format_outcome(r.ref_out),
                     format_outcome(r.out)};
    return std::nullopt;
  }

  // Replay's teardown on a copy of the explored model, then drain().
  // verify-policy: the server's closes after the clients' teardown (each step heard as it runs).
  std::optional<ExploreFailure> drain_failure(const XState &from) {
    XState s{from.mut, std::nullopt, from.live, from.closed_id, from.server};
    std::optional<ExploreFailure> f;
    auto found = [&](std::string rule, std::string message, const Statement &st) {
      if (!f)
        f = ExploreFailure{Counterexample::Kind::Leak, std::move(rule), std::move(message),
                           format_statement(st, universe_.names), "", ""};
    };
    Steps steps;
    const TeardownRun run{[&](const Statement &st) {
                            steps.clear();
                            const std::size_t files_before = s.mut.model().files.size();
                            run_step(s, st, steps);
                            if (s.server)
                              server_hears_releases(s, files_before, steps, *o_.policy);
                            for (const Step &x : steps)
                              if (!x.r.violations.empty())
                                found(x.r.violations[0].rule, "during teardown: " + x.r.violations[0].message,
                                      x.st);
                            return steps.front().r.out;
                          },
                          [&](const Statement &st, const Outcome &o) {
                            found("teardown",
                                  fmt::format("teardown step did not succeed: {}", format_outcome_detailed(o)),
                                  st);
                          }};
    teardown_clients(s.live, run);
    if (s.server && !f) {
      steps.clear();
      for (policy::Holder h : o_.policy->close_at_end(s.server->state))
        server_close(s, h, steps);
      if (s.server->closed_in_use)
        return ExploreFailure{Counterexample::Kind::ClosedInUse, "closed-in-use", *s.server->closed_in_use,
                              "(teardown)", "", ""};
      if (!s.server->state.backing_ids.empty()) {
        const auto &[holder, id] = *s.server->state.backing_ids.begin();
        return ExploreFailure{Counterexample::Kind::Leak, "server-leak",
                              fmt::format("every file is released and the server still holds backing id {} (f{})",
                                          id, holder.inode - policy_inode(0) + 1),
                              "(teardown)", "", ""};
      }
    }
    teardown_server(s.live, run);
    if (f)
      return f;
    const std::vector<Violation> leaks = s.mut.drain();
    if (!leaks.empty())
      return ExploreFailure{
          Counterexample::Kind::Leak, leaks[0].rule, leaks[0].message, "(teardown)", "", ""};
    return std::nullopt;
  }

  // The state of node i of level d, re-running its path from the root; the states along the
  // last path rebuilt are kept, so a node shares the work for its prefix with its predecessor.
  const XState &rebuild(int d, std::uint32_t i) {
    chain_.assign(static_cast<std::size_t>(d) + 1, 0);
    std::uint32_t k = i;
    for (int l = d; l >= 0; --l) {
      chain_[static_cast<std::size_t>(l)] = k;
      k = levels_[static_cast<std::size_t>(l)][k].parent;
    }
    const std::uint32_t root = k;
    if (cache_.size() < chain_.size()) {
      cache_.resize(chain_.size());
      cache_ids_.resize(chain_.size(), kNone);
    }
    std::size_t from = 0;
    if (cache_root_ == root)
      while (from < chain_.size() && cache_ids_[from] == chain_[from])
        ++from;
    else
      std::fill(cache_ids_.begin(), cache_ids_.end(), kNone);
    cache_root_ = root;
    std::vector<Action> actions;
    for (std::size_t l = from; l < chain_.size(); ++l) {
      const Node &n = levels_[l][chain_[l]];
      if (l == 0) {
        cache_[0] = roots_[n.parent];
      } else {
        cache_[l] = cache_[l - 1];
        enumerate(*cache_[l - 1], o_, actions);
        rebuild_steps_.clear();
        act(*cache_[l], actions.at(n.action), rebuild_steps_, o_);
      }
      cache_ids_[l] = chain_[l];
    }
    for (std::size_t l = chain_.size(); l < cache_ids_.size(); ++l)
      cache_ids_[l] = kNone;
    return *cache_[chain_.size() - 1];
  }

  // The path to a node as a trace: init, then each statement expecting the explored model's
  // outcome (the unmutated model's where they differ).
  Trace path_trace(At at, std::string title) {
    std::vector<std::uint32_t> acts;
    std::uint32_t root = at.index;
    if (at.depth > 0) {
      acts.push_back(at.action);
      std::uint32_t k = at.index;
      for (int l = at.depth - 1; l >= 0; --l) {
        const Node &n = levels_[static_cast<std::size_t>(l)][k];
        if (l > 0)
          acts.push_back(n.action);
        k = n.parent;
      }
      root = k;
      std::reverse(acts.begin(), acts.end());
    }
    Trace t;
    t.profile = o_.profile;
    t.profile_given = true;
    t.title = std::move(title);
    t.names = universe_.names;
    const bool dio = roots_.at(root).mut.model().fc.direct_io_allow_mmap;
    XState s = fresh();
    Steps steps;
    start(s, dio, steps);
    std::vector<Action> actions;
    for (std::uint32_t a : acts) {
      enumerate(s, o_, actions);
      act(s, actions.at(a), steps, o_);
    }
    for (const Step &x : steps)
      push(t, x.st, x.r);
    return t;
  }

  // The path to a failure, printed, parsed back and replayed to confirm it fails.
  Counterexample counterexample(const ExploreFailure &f, At at) {
    Counterexample c;
    c.kind = f.kind;
    c.depth = at.depth;
    c.rule = f.rule;
    c.message = f.message;
    c.statement = f.statement;
    c.expected = f.expected;
    c.actual = f.actual;
    c.trace = path_trace(
        at,
        fmt::format(
            "fpsim {}: {} at depth {}{}", o_.policy ? "verify-policy" : "explore", counterexample_kind_name(f.kind),
            at.depth, o_.mutant == Mutant::None ? "" : fmt::format(" (mutant {})", mutant_name(o_.mutant))));
    c.text = print_trace(c.trace);
    ParseResult p = parse_trace(c.text, "explore-counterexample.trace");
    if (auto *e = std::get_if<ParseError>(&p)) {
      c.replay_failure = "does not parse: " + e->str();
      return c;
    }
    SimExecutor ex(o_.mutant);
    const Trace &parsed = std::get<Trace>(p);
    const ReplayResult rr = replay(parsed, ex, o_.profile);
    const bool server_fault = f.kind == Counterexample::Kind::OpenFailed || f.kind == Counterexample::Kind::ClosedInUse;
    c.reproduced = server_fault ? rr.failures.empty() : !rr.failures.empty();
    if (!rr.failures.empty()) {
      const ReplayFailure &rf = rr.failures.front();
      c.replay_failure = fmt::format(
          "{}: {}: {}", rf.line ? fmt::format("line {}", rf.line) : "teardown",
          failure_kind_name(rf.kind),
          rf.kind == ReplayFailure::Kind::Mismatch
              ? fmt::format("{}: expected {}, got {}", rf.statement, rf.expected, rf.actual)
              : rf.message);
    }
    return c;
  }

  static Outcome clean(const Outcome &o) {
    Outcome e = o;
    e.internal_err = 0;
    e.message.clear();
    return e;
  }

  void push(Trace &t, Statement st, const StepReport &r) const {
    if (r.ref_out.kind != Outcome::Kind::Invalid)
      st.expect = clean(r.diverged ? r.ref_out : r.out);
    st.line = static_cast<int>(t.statements.size()) + 4;
    t.statements.push_back(std::move(st));
  }

  const ExploreOptions &o_;
  Trace universe_;
  bool exact_ids_;
  Encoder enc_;
  HashSet visited_;
  std::vector<XState> roots_;
  std::vector<std::vector<Node>> levels_;
  std::size_t transitions_ = 0;
  std::unordered_map<std::uint64_t, std::uint64_t> signatures_; // check_merges
  Steps steps_, rebuild_steps_; // scratch: the statements of the transition being taken
  // rebuild's cache
  std::vector<std::optional<XState>> cache_;
  std::vector<std::uint32_t> cache_ids_, chain_;
  std::uint32_t cache_root_ = kNone;
  std::chrono::steady_clock::time_point t0_;
};

} // namespace

std::string_view counterexample_kind_name(Counterexample::Kind k) {
  switch (k) {
  case Counterexample::Kind::Violation:
    return "violation";
  case Counterexample::Kind::Leak:
    return "leak";
  case Counterexample::Kind::Divergence:
    return "divergence";
  case Counterexample::Kind::OpenFailed:
    return "open-eio";
  case Counterexample::Kind::ClosedInUse:
    return "closed-in-use";
  }
  FPSIM_UNREACHABLE("a counterexample kind outside the enum");
}

std::optional<std::string> validate(const ExploreOptions &o) {
  if (o.depth < 0 || o.depth > kMaxDepth)
    return fmt::format("--depth must be in 0..{}", kMaxDepth);
  if (o.inodes < 1 || o.inodes > kMaxInodes)
    return fmt::format("--inodes must be in 1..{}", kMaxInodes);
  for (const auto &[flag, n] : {std::pair{"files", o.files}, std::pair{"ids", o.ids},
                                 std::pair{"mappings", o.mappings}, std::pair{"writes", o.writes}})
    if (n < 0 || n > kMaxNamed)
      return fmt::format("--{} must be in 0..{}", flag, kMaxNamed);
  if (o.stacked < 0 || o.stacked > o.inodes || (o.stacked > 0 && !o.policy))
    return fmt::format("--stacked must be in 0..{} (the files)", o.inodes);
  if (!o.init_plain && !o.init_dio_mmap)
    return std::string("nothing to explore: neither init is selected");
  if (o.shard_count < 1 || o.shard_index < 0 || o.shard_index >= o.shard_count)
    return std::string("--shard I/N needs 0 <= I < N");
  if (o.shard_count > 1 && (o.shard_depth < 1 || o.shard_depth > o.depth))
    return std::string("--shard-depth must be in 1..depth");
  return std::nullopt;
}

PolicyConformance follows_policy(const Trace &trace, policy::Stock stock) {
  ExploreOptions o;
  o.profile = trace.profile;
  o.policy = policy::make_stock(stock, trace.profile);
  Trace t = trace;
  ServerSide server;
  for (std::size_t i = 0; i < t.names.mount_files.size(); ++i) {
    const std::string &name = t.names.mount_files[i];
    server.state.files[name] = policy_inode(static_cast<int>(i));
    auto found = std::find(t.names.backing_files.begin(), t.names.backing_files.end(), name);
    if (found == t.names.backing_files.end())
      found = t.names.backing_files.insert(t.names.backing_files.end(), name);
    const int slot = static_cast<int>(found - t.names.backing_files.begin());
    server.backing_file.push_back(slot);
    bool overlay = false;
    for (const Statement &st : t.statements)
      if (st.op == Op::BackingOpen && st.source == SourceKind::File && st.backing_file == slot)
        overlay = overlay || st.source_fs == SourceFs::Overlay;
    server.on_overlay.push_back(overlay);
  }
  // Room for every registration the policy may make beyond the trace's own.
  t.names.number(static_cast<int>(t.statements.size() + t.names.mount_files.size()));
  XState s{SimExecutor(Mutant::None), std::nullopt, Live(t.names), std::nullopt, std::move(server)};
  s.mut.begin(t, t.profile);
  Steps steps;
  // Creates are run as the trace has them: the built-in policies answer CREATE alike.
  for (const Statement &st : t.statements) {
    if (st.op == Op::Check || st.op == Op::BackingOpen || st.op == Op::BackingClose)
      continue;
    if (st.op == Op::Init) {
      run_step(s, st, steps);
      for (policy::Holder h : o.policy->register_at_mount(s.server->state))
        server_register(s, h, steps);
      continue;
    }
    client_step(s, st, steps, o);
  }
  std::vector<const Statement *> has;
  for (const Statement &st : t.statements)
    if (st.op != Op::Check)
      has.push_back(&st);
  PolicyConformance c;
  for (std::size_t i = 0; i < std::max(has.size(), steps.size()); ++i) {
    const std::string a = i < has.size() ? format_statement(*has[i], t.names) : "(the trace ends)";
    const std::string b = i < steps.size() ? format_statement(steps[i].st, t.names) : "(nothing more)";
    if (a != b) {
      c.line = i < has.size() ? has[i]->line : 0;
      c.trace_has = a;
      c.policy_does = b;
      return c;
    }
  }
  c.follows = true;
  return c;
}

ExploreResult explore(const ExploreOptions &o) {
  if (validate(o))
    return ExploreResult{};
  return Explorer(o).run();
}

} // namespace fpsim::sim
