// fs/fuse/iomode.c: the inode io-mode counter and the per-file io mode (docs/kernel-semantics.md
// §2.4, §2.7, §2.10). One function per kernel function; each errno is chosen in one place.
#include "model/internal.h"

#include "base/assert.h"

#include <cerrno>

namespace fpsim::model::detail {
namespace {

// fuse_is_io_cache_wait: a cached opener must wait while parallel direct writes are in flight;
// with an fb attached it fails instead (the seed waited for any uncached reference, passthrough
// files included).
std::optional<Rule> fuse_is_io_cache_wait(const Model &m, const FuseInode &fi) {
  if (fi.iocachectr >= 0)
    return std::nullopt;
  if (!fi.fb)
    return Rule::IoCacheWait;
  if (!m.profile.has(Feature::CacheWaitSkipsBackingInode))
    return Rule::IoCacheWaitOnBacking;
  return std::nullopt;
}

// Whether a new uncached user of the inode, with `fb` (none: a parallel direct write), may not
// join the attached `oldfb`: a second backing object is refused, compared by object (or by
// backing inode, as proposed); the seed also refused a parallel direct write on a passthrough
// inode, which 6.9-rc5 let count instead.
std::optional<Rule> backing_conflict(const Model &m, std::optional<FbId> oldfb,
                                     std::optional<FbId> fb) {
  if (!oldfb)
    return std::nullopt;
  if (!fb) {
    if (!m.profile.has(Feature::NullFbCountsAsUncached) || m.mutant == Mutant::NullFbConflict)
      return Rule::UncachedIoStartNullFb;
    return std::nullopt;
  }
  if (backing_joins_inode(m, oldfb, fb))
    return std::nullopt;
  return m.profile.has(Feature::BackingComparedByInode) ? Rule::UncachedIoStartOtherBackingInode
                                                        : Rule::UncachedIoStartOtherFb;
}

// fuse_file_uncached_io_open: takes the uncached reference a passthrough file holds until release.
int fuse_file_uncached_io_open(Model &m, FileId f, FbId fb) {
  FuseFile &ff = m.file(f);
  const int err = fuse_inode_uncached_io_start(m, ff.inode, fb, f);
  if (err)
    return err;
  if (ff.iomode != IoMode::None)
    m.warn("fuse_file_uncached_io_open", "ff->iomode != IOM_NONE");
  ff.iomode = IoMode::Uncached;
  ff.opened_with_fb = fb;
  return 0;
}

// fuse_file_passthrough_open: passthrough must be negotiated and only FOPEN_PASSTHROUGH_MASK
// flags may accompany it; a refused uncached start undoes the per-file open and the lookup.
int fuse_file_passthrough_open(Model &m, FileId f) {
  FuseFile &ff = m.file(f);
  if (!m.fc.passthrough || (ff.open_flags & ~fopen_passthrough_mask(m.profile))) {
    m.decide(Decision(!m.fc.passthrough ? Rule::PassthroughOpenNotNegotiated
                                        : Rule::PassthroughOpenFlagsMask)
                 .with_err(EINVAL)
                 .with_inode(ff.inode)
                 .with_file(f));
    return EINVAL;
  }
  FbId fb{};
  int err = fuse_passthrough_open(m, f, ff.backing_id, &fb);
  if (err)
    return err;
  err = fuse_file_uncached_io_open(m, f, fb);
  if (!err)
    return 0;
  fuse_passthrough_release(m, f, "fuse_file_passthrough_open");
  if (m.mutant != Mutant::MissingPutOnRefusal)
    fuse_backing_put(m, fb, "fuse_file_passthrough_open");
  return err;
}

// fuse_file_cached_io_release: the last cached file leaves cached io mode.
void fuse_file_cached_io_release(Model &m, FileId f) {
  FuseFile &ff = m.file(f);
  FuseInode &fi = m.inode(ff.inode);
  if (fi.iocachectr <= 0)
    m.warn("fuse_file_cached_io_release", "fi->iocachectr <= 0");
  if (ff.iomode != IoMode::Cached)
    m.warn("fuse_file_cached_io_release", "ff->iomode != IOM_CACHED");
  ff.iomode = IoMode::None;
  if (m.mutant != Mutant::CachedReleaseSkipsDec)
    fi.iocachectr--;
  if (fi.iocachectr == 0)
    fi.cache_io_mode = false;
}

// fuse_file_uncached_io_release: a passthrough file drops its uncached reference.
void fuse_file_uncached_io_release(Model &m, FileId f) {
  FuseFile &ff = m.file(f);
  if (ff.iomode != IoMode::Uncached)
    m.warn("fuse_file_uncached_io_release", "ff->iomode != IOM_UNCACHED");
  ff.iomode = IoMode::None;
  fuse_inode_uncached_io_end(m, ff.inode);
}

} // namespace

int fuse_inode_uncached_io_start(Model &m, InodeId i, std::optional<FbId> fb,
                                 std::optional<FileId> file, std::optional<WriteId> write) {
  FuseInode &fi = m.inode(i);
  const std::optional<FbId> oldfb = fi.fb;
  Decision d =
      Decision().with_inode(i).with_file(file).with_fb(fb).with_other_fb(oldfb).with_write(write);
  const std::optional<Rule> conflict = backing_conflict(m, oldfb, fb);
  if (conflict && m.mutant != Mutant::NoEbusyCheck) {
    d.rule = *conflict;
    d.err = EBUSY;
    m.decide(d);
    return EBUSY;
  }
  if (fi.iocachectr > 0) {
    d.rule = Rule::UncachedIoStartCachedInode;
    d.err = ETXTBSY;
    m.decide(d);
    return ETXTBSY;
  }
  fi.iocachectr--;
  if (fb && !oldfb) {
    // The inode keeps the lookup reference: it owns exactly one while fi->fb is set.
    fi.fb = fb;
    fi.fb_attached_at = m.step;
    d.rule = Rule::UncachedIoStartAttach;
  } else if (fb) {
    if (m.mutant != Mutant::MissingPutSameFb)
      fuse_backing_put(m, *fb, "fuse_inode_uncached_io_start");
    d.rule = oldfb == fb ? Rule::UncachedIoStartSameFb : Rule::UncachedIoStartSameBackingInode;
  } else {
    d.rule = Rule::UncachedIoStartCounted;
  }
  m.decide(d);
  return 0;
}

void fuse_inode_uncached_io_end(Model &m, InodeId i) {
  FuseInode &fi = m.inode(i);
  if (fi.iocachectr >= 0)
    m.warn("fuse_inode_uncached_io_end", "fi->iocachectr >= 0");
  fi.iocachectr++;
  if (fi.iocachectr != 0)
    return;
  wake_up_direct_io_waitq(m, i);
  if (m.mutant == Mutant::NoFbDetachAtZero)
    return;
  const std::optional<FbId> oldfb = fi.fb;
  fi.fb.reset();
  if (oldfb) {
    m.decide(Decision(Rule::UncachedIoEndDetach).with_inode(i).with_fb(oldfb));
    fuse_backing_put(m, *oldfb, "fuse_inode_uncached_io_end");
  }
}

int fuse_file_cached_io_open(Model &m, FileId f, std::optional<Rule> *wait) {
  wait->reset();
  FuseFile &ff = m.file(f);
  if (!ff.has_args)
    return 0;
  FuseInode &fi = m.inode(ff.inode);
  if ((*wait = fuse_is_io_cache_wait(m, fi))) {
    // The bit steers new parallel writes to the exclusive lock, or the wait could be forever.
    fi.cache_io_mode = true;
    return 0;
  }
  if (fi.fb) {
    fi.cache_io_mode = false;
    m.decide(Decision(Rule::CachedIoOpenBackingInode)
                 .with_err(ETXTBSY)
                 .with_inode(ff.inode)
                 .with_file(f)
                 .with_other_fb(fi.fb));
    return ETXTBSY;
  }
  m.decide(Decision(Rule::CachedIoOpen).with_inode(ff.inode).with_file(f));
  if (ff.iomode == IoMode::Uncached)
    m.warn("fuse_file_cached_io_open", "ff->iomode == IOM_UNCACHED");
  if (ff.iomode == IoMode::None) {
    ff.iomode = IoMode::Cached;
    if (fi.iocachectr == 0)
      fi.cache_io_mode = true;
    fi.iocachectr++;
  }
  return 0;
}

int fuse_file_io_open(Model &m, FileId f, int *internal_err, std::optional<Rule> *wait) {
  wait->reset();
  *internal_err = 0;
  FuseFile &ff = m.file(f);
  const Decision d =
      Decision().with_inode(ff.inode).with_file(f).with_other_fb(m.inode(ff.inode).fb);
  auto decide = [&m, d](Rule r, int err = 0) {
    Decision x = d;
    x.rule = r;
    x.err = err;
    m.decide(x);
  };
  if (!ff.has_args) {
    decide(Rule::FileIoOpenNoArgs);
    return 0;
  }
  const std::uint32_t pt = fopen_passthrough(m.profile);
  int err = 0;
  if (fopen_cache_io_forbidden(m.profile, ff.open_flags)) {
    // The seed kept bit 7 as the internal FOPEN_CACHE_IO; a server must not send it.
    err = EINVAL;
    decide(Rule::FileIoOpenCacheIoBit, err);
  } else if (m.inode(ff.inode).fb && !(ff.open_flags & pt)) {
    // Every open of an inode in passthrough mode must itself be passthrough.
    err = EINVAL;
    decide(Rule::FileIoOpenNotPassthrough, err);
  } else {
    if (!(ff.open_flags & fopen::DIRECT_IO) && (ff.open_flags & fopen::PARALLEL_DIRECT_WRITES)) {
      ff.open_flags &= ~fopen::PARALLEL_DIRECT_WRITES;
      decide(Rule::FileIoOpenParallelWritesDropped);
    }
    if ((ff.open_flags & fopen::DIRECT_IO) && !(ff.open_flags & pt)) {
      decide(Rule::FileIoOpenDirectIo);
      return 0;
    }
    if (ff.open_flags & pt)
      err = fuse_file_passthrough_open(m, f);
    else
      err = fuse_file_cached_io_open(m, f, wait);
  }
  if (!err)
    return 0;
  // A wrong open mode is the server's mistake: open(2) sees EIO whatever the rule was.
  *internal_err = err;
  return EIO;
}

void fuse_file_io_release(Model &m, FileId f) {
  switch (m.file(f).iomode) {
  case IoMode::None:
    return;
  case IoMode::Uncached:
    fuse_file_uncached_io_release(m, f);
    return;
  case IoMode::Cached:
    fuse_file_cached_io_release(m, f);
    return;
  }
}

} // namespace fpsim::model::detail

namespace fpsim::model {

bool same_backing_inode(const Model &m, FbId a, FbId b) {
  const FuseBacking &x = m.backing(a);
  const FuseBacking &y = m.backing(b);
  const auto file_backed = [](BackingFdKind k) {
    return k == BackingFdKind::Regular || k == BackingFdKind::OPath;
  };
  // A file seen through an overlayfs is the overlay's inode, not the one of the layer below.
  if (x.source_stack_depth != y.source_stack_depth)
    return false;
  if (file_backed(x.kind) && file_backed(y.kind))
    return x.source == y.source;
  return x.kind == y.kind && (x.kind == BackingFdKind::Dir || x.kind == BackingFdKind::DevNull);
}

bool backing_joins_inode(const Model &m, std::optional<FbId> attached, std::optional<FbId> fb) {
  if (attached == fb)
    return true;
  return attached && fb && m.profile.has(Feature::BackingComparedByInode) &&
         same_backing_inode(m, *attached, *fb);
}

std::string_view iomode_name(IoMode m) {
  switch (m) {
  case IoMode::None:
    return "none";
  case IoMode::Cached:
    return "cached";
  case IoMode::Uncached:
    return "uncached";
  }
  FPSIM_UNREACHABLE("an IoMode outside the enum");
}

} // namespace fpsim::model
