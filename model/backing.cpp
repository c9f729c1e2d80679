// fs/fuse/backing.c and passthrough.c: the backing-id map, fuse_backing lifetime and the
// per-file backing_file (docs/kernel-semantics.md §2.2, §2.3, §1.4, §1.5).
#include "model/internal.h"

#include "base/assert.h"

#include <algorithm>
#include <cerrno>
#include <climits>

namespace fpsim::model {
namespace detail {
namespace {

void report_misuse(Model &m, RefcountMisuse misuse, const char *where, const std::string &obj) {
  switch (misuse) {
  case RefcountMisuse::None:
    return;
  case RefcountMisuse::IncFromZero:
    m.warn(where, "refcount_t: increment on " + obj + " with refcount 0 (use after free)");
    return;
  case RefcountMisuse::Underflow:
    m.warn(where, "refcount_t: underflow on " + obj);
    return;
  }
}

std::string fb_name(const Model &m, FbId fb) {
  return "fuse_backing #" + std::to_string(idx(fb)) + " (id " +
         std::to_string(m.backing(fb).id) + ")";
}

// fuse_backing_free: fput(fb->file), put_cred(fb->cred), kfree_rcu.
void fuse_backing_free(Model &m, FbId fb) {
  FuseBacking &b = m.backing(fb);
  b.freed = true;
  put_cred(m, b.cred, "fuse_backing_free");
}

// idr_alloc_cyclic(map, fb, 1, 0): the first free id at or after the cursor in [1, INT_MAX],
// wrapping to 1 once; the cursor moves past the id handed out.
std::optional<std::int32_t> idr_alloc_cyclic(FuseConn &fc, FbId fb, bool reuse) {
  auto taken = [&fc](std::int32_t id) { return fc.backing_files_map.find(id).has_value(); };
  std::int32_t id = reuse ? 1 : fc.idr_next;
  for (std::size_t tries = 0; tries <= fc.backing_files_map.size(); ++tries) {
    if (!taken(id)) {
      fc.backing_files_map.add(id, fb);
      fc.idr_next = id == INT_MAX ? 1 : id + 1;
      return id;
    }
    id = id == INT_MAX ? 1 : id + 1;
  }
  return std::nullopt;
}

// fuse_get_dev on a /dev/fuse fd that no mount has installed yet.
int uninstalled_dev_errno(const Model &m) {
  return m.profile.has(Feature::UninstalledDevEperm) ? EPERM : EINVAL;
}

struct Refusal {
  Rule rule{};
  int err = 0;
};

// fuse_backing_open's test of the file behind the fd: regular files only (6.17, 6.12.48);
// before, any file with read_iter and write_iter (which directories and O_PATH fds lack); in
// 6.12.0-6.12.47 any file at all.
std::optional<Refusal> backing_file_type_refusal(const Model &m, BackingFdKind kind) {
  const bool regular_only = m.profile.has(Feature::BackingRejectsNonRegular);
  const bool rw_iter = m.profile.has(Feature::BackingRequiresRwIter);
  const Refusal no_rw_iter{Rule::BackingOpenNoRwIter, EOPNOTSUPP};
  switch (kind) {
  case BackingFdKind::Regular:
  case BackingFdKind::BadFd:
    return std::nullopt;
  case BackingFdKind::OPath:
    return rw_iter ? std::optional(no_rw_iter) : std::nullopt;
  case BackingFdKind::Dir:
    if (regular_only)
      return Refusal{Rule::BackingOpenDirectory, EISDIR};
    return rw_iter ? std::optional(no_rw_iter) : std::nullopt;
  case BackingFdKind::Pipe:
  case BackingFdKind::Socket:
  case BackingFdKind::DevNull:
    return regular_only ? std::optional(Refusal{Rule::BackingOpenNotRegular, EINVAL})
                        : std::nullopt;
  }
  FPSIM_UNREACHABLE("a BackingFdKind outside the enum");
}

// The ioctl's checks before the fd is looked at, in kernel order.
std::optional<Refusal> backing_open_refusal(const Model &m, const BackingMapArg &arg) {
  if (!m.fc.dev_open)
    return Refusal{Rule::BackingOpenDevClosed, EBADF};
  // fuse_get_dev: the fd is not installed on a mounted connection yet.
  if (!m.fc.initialized)
    return Refusal{Rule::BackingOpenNotInstalled, uninstalled_dev_errno(m)};
  if (!m.fc.passthrough)
    return Refusal{Rule::BackingOpenNoPassthrough, EPERM};
  if (!arg.capable)
    return Refusal{Rule::BackingOpenNotCapable, EPERM};
  // The seed checked only map.flags; 6.9 added map.padding.
  if (m.profile.has(Feature::BackingPaddingChecked)) {
    if (arg.flags != 0 || arg.padding != 0)
      return Refusal{Rule::BackingOpenPadding, EINVAL};
  } else if (arg.flags != 0) {
    return Refusal{Rule::BackingOpenFlags, EINVAL};
  }
  if (arg.kind == BackingFdKind::BadFd)
    return Refusal{Rule::BackingOpenBadFd, EBADF};
  // fget before 6.12 does not resolve O_PATH fds; fget_raw does.
  if (arg.kind == BackingFdKind::OPath && !m.profile.has(Feature::BackingAcceptsOPath))
    return Refusal{Rule::BackingOpenOPath, EBADF};
  if (std::optional<Refusal> type = backing_file_type_refusal(m, arg.kind))
    return type;
  if (arg.source_stack_depth >= m.fc.max_stack_depth)
    return Refusal{Rule::BackingOpenStackDepth, ELOOP};
  return std::nullopt;
}

} // namespace

void fuse_backing_get(Model &m, FbId fb, const char *where) {
  report_misuse(m, m.backing(fb).count.inc(), where, fb_name(m, fb));
}

void fuse_backing_put(Model &m, FbId fb, const char *where) {
  bool zero = false;
  report_misuse(m, m.backing(fb).count.dec_and_test(&zero), where, fb_name(m, fb));
  if (zero)
    fuse_backing_free(m, fb);
}

std::optional<FbId> fuse_backing_lookup(Model &m, std::int32_t id) {
  const std::optional<FbId> fb = m.fc.backing_files_map.find(id);
  if (!fb || !m.backing(*fb).count.inc_not_zero())
    return std::nullopt;
  return fb;
}

CredId get_cred(Model &m, CredId c, const char *where) {
  report_misuse(m, m.creds.mut(idx(c)).usage.inc(), where, "cred #" + std::to_string(idx(c)));
  return c;
}

void put_cred(Model &m, CredId c, const char *where) {
  bool zero = false;
  report_misuse(m, m.creds.mut(idx(c)).usage.dec_and_test(&zero), where,
                "cred #" + std::to_string(idx(c)));
}

void backing_file_fput(Model &m, BackingFileId bf, const char *where) {
  bool zero = false;
  report_misuse(m, m.backing_files.mut(idx(bf)).f_count.dec_and_test(&zero), where,
                "backing_file #" + std::to_string(idx(bf)));
}

int fuse_passthrough_open(Model &m, FileId f, std::int32_t backing_id, FbId *fb_out) {
  const InodeId inode = m.file(f).inode;
  if (backing_id <= 0) {
    m.decide(
        Decision(Rule::PassthroughOpenInvalidId).with_err(EINVAL).with_inode(inode).with_file(f));
    return EINVAL;
  }
  std::optional<FbId> fb = fuse_backing_lookup(m, backing_id);
  if (!fb) {
    m.decide(Decision(Rule::PassthroughOpenNoId).with_err(ENOENT).with_inode(inode).with_file(f));
    return ENOENT;
  }
  const FuseBacking &b = m.backing(*fb);
  // backing_file_open reopens fb->file's path with the FUSE file's flags under fb->cred. A
  // socket inode cannot be opened by path (sock_no_open); pipes and /dev/null can. Those fd
  // kinds only pass BACKING_OPEN before 6.17.
  if (b.kind == BackingFdKind::Socket) {
    fuse_backing_put(m, *fb, "fuse_passthrough_open");
    m.decide(Decision(Rule::PassthroughOpenSocket)
                 .with_err(ENXIO)
                 .with_inode(inode)
                 .with_file(f)
                 .with_fb(fb));
    return ENXIO;
  }
  FuseFile &ff = m.file(f);
  BackingFile bfile;
  bfile.user_file = f;
  bfile.source = b.source;
  bfile.access = ff.f_flags.access;
  bfile.f_count = RefCount(1);
  m.backing_files.push_back(bfile);
  ff.passthrough = BackingFileId{static_cast<std::uint32_t>(m.backing_files.size() - 1)};
  ff.cred = get_cred(m, b.cred, "fuse_passthrough_open");
  // The seed (5/9) opens the backing file but keeps reads and writes on FUSE.
  m.decide(Decision(m.profile.has(Feature::PassthroughReadWrite) ? Rule::PassthroughOpenBackingFile
                                                                 : Rule::PassthroughOpenSeedIo)
               .with_inode(inode)
               .with_file(f)
               .with_fb(fb));
  *fb_out = *fb;
  return 0;
}

void fuse_passthrough_release(Model &m, FileId f, const char *where) {
  FuseFile &ff = m.file(f);
  if (ff.passthrough) {
    if (m.mutant != Mutant::BackingFileNotReleased)
      backing_file_fput(m, *ff.passthrough, where);
    ff.passthrough.reset();
  }
  if (ff.cred) {
    put_cred(m, *ff.cred, where);
    ff.cred.reset();
  }
}

void fuse_backing_files_free(Model &m) {
  for (const auto &[id, fb] : m.fc.backing_files_map) {
    FuseBacking &b = m.backing(fb);
    if (b.count.value() != 1)
      m.warn("fuse_backing_files_free",
             fb_name(m, fb) + " has refcount " + std::to_string(b.count.value()) +
                 " at connection free (expected 1)");
    b.count.force_zero();
    fuse_backing_free(m, fb);
  }
  m.fc.backing_files_map.clear();
}

} // namespace detail

using namespace detail;

SysResult fuse_dev_ioctl_backing_open(Model &m, const BackingMapArg &arg) {
  SysResult r;
  if (const std::optional<Refusal> no = backing_open_refusal(m, arg)) {
    r.err = no->err;
    m.decide(Decision(no->rule).with_err(no->err));
    return r;
  }

  // prepare_creds() of the caller; the fb holds the only reference for now.
  m.creds.push_back(Cred{RefCount(1)});
  FuseBacking b;
  b.kind = arg.kind;
  b.source = arg.source;
  b.source_stack_depth = arg.source_stack_depth;
  b.cred = CredId{static_cast<std::uint32_t>(m.creds.size() - 1)};
  b.count = RefCount(1); // the idr's reference
  m.backings.push_back(b);
  const FbId fb{static_cast<std::uint32_t>(m.backings.size() - 1)};
  std::optional<std::int32_t> id =
      idr_alloc_cyclic(m.fc, fb, m.mutant == Mutant::IdsReusedImmediately);
  if (!id) {
    fuse_backing_put(m, fb, "fuse_backing_open");
    r.err = ENOSPC;
    m.decide(Decision(Rule::BackingOpenIdrFull).with_err(r.err).with_fb(fb));
    return r;
  }
  m.backing(fb).id = *id;
  m.decide(Decision(Rule::BackingOpenRegistered).with_fb(fb));
  r.value = *id;
  return r;
}

namespace {

std::optional<Refusal> backing_close_refusal(const Model &m, std::int32_t id, bool capable) {
  if (!m.fc.dev_open)
    return Refusal{Rule::BackingCloseDevClosed, EBADF};
  if (!m.fc.initialized)
    return Refusal{Rule::BackingCloseNotInstalled, uninstalled_dev_errno(m)};
  if (!m.fc.passthrough)
    return Refusal{Rule::BackingCloseNoPassthrough, EPERM};
  if (!capable)
    return Refusal{Rule::BackingCloseNotCapable, EPERM};
  if (id <= 0)
    return Refusal{Rule::BackingCloseInvalidId, EINVAL};
  if (!m.fc.backing_files_map.find(id))
    return Refusal{Rule::BackingCloseNoEntry, ENOENT};
  return std::nullopt;
}

} // namespace

SysResult fuse_dev_ioctl_backing_close(Model &m, std::uint32_t raw_id, bool capable) {
  SysResult r;
  // The u32 argument is read into an int: 0x80000000 and above are negative.
  const auto id = static_cast<std::int32_t>(raw_id);
  if (const std::optional<Refusal> no = backing_close_refusal(m, id, capable)) {
    r.err = no->err;
    m.decide(Decision(no->rule).with_err(no->err));
    return r;
  }
  const FbId fb = *m.fc.backing_files_map.find(id);
  m.decide(Decision(Rule::BackingCloseRemoved).with_fb(fb));
  if (m.mutant != Mutant::IdrKeptOnClose)
    m.fc.backing_files_map.erase(id);
  if (m.mutant != Mutant::BackingCloseKeepsRef)
    fuse_backing_put(m, fb, "fuse_backing_close");
  return r;
}

} // namespace fpsim::model
