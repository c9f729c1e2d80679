// Unit tests for each model transition, its error paths and its refcount effects.
#include "model/fuse.h"

#include <cerrno>
#include <gtest/gtest.h>

using namespace fpsim::model;

namespace {

class ModelTest : public ::testing::Test {
protected:
  static InitReply pt_init(int depth = 1) {
    InitReply r;
    r.passthrough = true;
    r.max_stack_depth = depth;
    return r;
  }
  void mount(KernelProfile p = KernelProfile::V6_18) { mount(p, pt_init()); }
  void mount(KernelProfile p, InitReply r) {
    m = Model(p);
    fuse_mount(m, r);
  }
  std::int32_t register_backing(std::uint32_t source = 0) {
    BackingMapArg a;
    a.source = source;
    const SysResult r = fuse_dev_ioctl_backing_open(m, a);
    EXPECT_EQ(r.err, 0);
    return static_cast<std::int32_t>(r.value);
  }
  // A 6.18 passthrough mount with one backing id registered.
  std::int32_t mount_with_backing() {
    mount();
    return register_backing();
  }
  OpenReply pt(std::int32_t id, std::uint32_t extra = 0) const {
    OpenReply r;
    r.open_flags = fopen_passthrough(m.profile) | extra;
    r.backing_id = id;
    return r;
  }
  static OpenReply flags(std::uint32_t f) {
    OpenReply r;
    r.open_flags = f;
    return r;
  }
  SysResult open(std::uint32_t name, const OpenReply &r, AccessMode a = AccessMode::ReadWrite) {
    OpenFlags f;
    f.access = a;
    // Every mount file exists on the server, as in a trace that creates none.
    return path_openat(m, name, true, f, r);
  }
  const FuseInode &inode(std::uint32_t name) { return m.inode(fuse_iget(m, name)); }
  const FuseBacking &fb_of_id(std::int32_t id) {
    for (const FuseBacking &b : m.backings)
      if (b.id == id)
        return b;
    ADD_FAILURE() << "no fb with id " << id;
    return m.backings.at(0);
  }

  Model m;
};

// ---- INIT ------------------------------------------------------------------------------------

TEST_F(ModelTest, InitEnablesPassthroughOnlyWithDepthOneOrTwo) {
  for (int depth : {0, 1, 2, 3, 100}) {
    mount(KernelProfile::V6_18, pt_init(depth));
    EXPECT_EQ(m.fc.passthrough, depth == 1 || depth == 2) << depth;
    EXPECT_EQ(m.fc.max_stack_depth, m.fc.passthrough ? depth : 0);
  }
}

TEST_F(ModelTest, InitIgnoresFlags2WithoutInitExt) {
  InitReply r = pt_init();
  r.init_ext = false;
  mount(KernelProfile::V6_18, r);
  EXPECT_FALSE(m.fc.passthrough);
}

TEST_F(ModelTest, WritebackCacheDisablesPassthroughOnlyFrom611) {
  InitReply r = pt_init();
  r.writeback_cache = true;
  mount(KernelProfile::V6_18, r);
  EXPECT_FALSE(m.fc.passthrough);
  mount(KernelProfile::V6_9, r);
  EXPECT_TRUE(m.fc.passthrough);
  mount(KernelProfile::V15, r);
  EXPECT_TRUE(m.fc.passthrough);
}

// ---- BACKING_OPEN / BACKING_CLOSE ------------------------------------------------------------

TEST_F(ModelTest, BackingOpenBeforeMountIsEpermOrEinvalInSeed) {
  m = Model(KernelProfile::V6_18);
  EXPECT_EQ(fuse_dev_ioctl_backing_open(m, {}).err, EPERM);
  m = Model(KernelProfile::V15);
  EXPECT_EQ(fuse_dev_ioctl_backing_open(m, {}).err, EINVAL);
  EXPECT_TRUE(m.backings.empty());
}

TEST_F(ModelTest, BackingOpenChecksInKernelOrder) {
  mount(KernelProfile::V6_18, pt_init());
  BackingMapArg a;
  a.capable = false;
  a.flags = 1;
  EXPECT_EQ(fuse_dev_ioctl_backing_open(m, a).err, EPERM) << "privilege before flags";
  a.capable = true;
  EXPECT_EQ(fuse_dev_ioctl_backing_open(m, a).err, EINVAL);
  a.flags = 0;
  a.padding = 1;
  EXPECT_EQ(fuse_dev_ioctl_backing_open(m, a).err, EINVAL);
  a.padding = 0;
  a.kind = BackingFdKind::BadFd;
  EXPECT_EQ(fuse_dev_ioctl_backing_open(m, a).err, EBADF);
  a.kind = BackingFdKind::Dir;
  EXPECT_EQ(fuse_dev_ioctl_backing_open(m, a).err, EISDIR);
  for (BackingFdKind k : {BackingFdKind::Pipe, BackingFdKind::Socket, BackingFdKind::DevNull}) {
    a.kind = k;
    EXPECT_EQ(fuse_dev_ioctl_backing_open(m, a).err, EINVAL);
  }
  a.kind = BackingFdKind::Regular;
  a.source_stack_depth = 1;
  EXPECT_EQ(fuse_dev_ioctl_backing_open(m, a).err, ELOOP);
  EXPECT_TRUE(m.backings.empty()) << "no failed check may leave an fb behind";
  EXPECT_TRUE(m.creds.empty());
}

TEST_F(ModelTest, BackingOpenFdKindsPerProfile) {
  BackingMapArg a;
  a.kind = BackingFdKind::OPath;
  mount(KernelProfile::V6_18, pt_init());
  EXPECT_EQ(fuse_dev_ioctl_backing_open(m, a).value, 1);
  mount(KernelProfile::V6_9, pt_init());
  EXPECT_EQ(fuse_dev_ioctl_backing_open(m, a).err, EBADF);
  a.kind = BackingFdKind::Dir;
  EXPECT_EQ(fuse_dev_ioctl_backing_open(m, a).err, EOPNOTSUPP);
  a.kind = BackingFdKind::Pipe;
  EXPECT_EQ(fuse_dev_ioctl_backing_open(m, a).value, 1);
  a.padding = 1;
  a.kind = BackingFdKind::Regular;
  EXPECT_EQ(fuse_dev_ioctl_backing_open(m, a).err, EINVAL);
  mount(KernelProfile::V15, pt_init());
  EXPECT_EQ(fuse_dev_ioctl_backing_open(m, a).value, 1) << "the seed ignored padding";
}

TEST_F(ModelTest, BackingIdsAreCyclicAndNotReused) {
  mount();
  EXPECT_EQ(register_backing(), 1);
  EXPECT_EQ(register_backing(), 2);
  EXPECT_EQ(register_backing(), 3);
  EXPECT_EQ(fuse_dev_ioctl_backing_close(m, 3, true).err, 0);
  EXPECT_EQ(register_backing(), 4) << "a freed id is not reused before wrap-around";
  EXPECT_EQ(fb_of_id(1).count.value(), 1) << "the id holds the only reference";
}

TEST_F(ModelTest, BackingCloseErrors) {
  const std::int32_t id = mount_with_backing();
  EXPECT_EQ(fuse_dev_ioctl_backing_close(m, 0, true).err, EINVAL);
  EXPECT_EQ(fuse_dev_ioctl_backing_close(m, 0xffffffffu, true).err, EINVAL);
  EXPECT_EQ(fuse_dev_ioctl_backing_close(m, 999, true).err, ENOENT);
  EXPECT_EQ(fuse_dev_ioctl_backing_close(m, static_cast<std::uint32_t>(id), false).err, EPERM);
  EXPECT_EQ(fuse_dev_ioctl_backing_close(m, static_cast<std::uint32_t>(id), true).err, 0);
  EXPECT_TRUE(m.backings[0].freed);
  EXPECT_EQ(m.creds[0].usage.value(), 0) << "fuse_backing_free puts the cred";
  EXPECT_EQ(fuse_dev_ioctl_backing_close(m, static_cast<std::uint32_t>(id), true).err, ENOENT);
}

TEST_F(ModelTest, BackingCloseOfAnIdInUseKeepsTheInodeReference) {
  const std::int32_t id = mount_with_backing();
  const SysResult h = open(0, pt(id));
  ASSERT_EQ(h.err, 0);
  EXPECT_EQ(m.backings[0].count.value(), 2);
  EXPECT_EQ(fuse_dev_ioctl_backing_close(m, static_cast<std::uint32_t>(id), true).err, 0);
  EXPECT_EQ(m.backings[0].count.value(), 1);
  EXPECT_FALSE(m.backings[0].freed);
  EXPECT_EQ(fuse_file_read_iter(m, *h.file).route, Route::Backing);
  const SysResult again = open(0, pt(id));
  EXPECT_EQ(again.err, EIO);
  EXPECT_EQ(again.internal_err, ENOENT);
  fuse_close_fd(m, *h.file);
  EXPECT_TRUE(m.backings[0].freed) << "the last inode reference frees a closed id's fb";
}

// ---- OPEN reply handling ---------------------------------------------------------------------

TEST_F(ModelTest, PassthroughOpenAttachesFbAndTransfersTheLookupReference) {
  const std::int32_t id = mount_with_backing();
  const SysResult r = open(0, pt(id));
  ASSERT_EQ(r.err, 0);
  EXPECT_EQ(inode(0).iocachectr, -1);
  EXPECT_EQ(inode(0).fb, FbId{0});
  EXPECT_EQ(m.backings[0].count.value(), 2);
  const FuseFile &ff = m.file(*r.file);
  EXPECT_EQ(ff.iomode, IoMode::Uncached);
  ASSERT_TRUE(ff.passthrough.has_value());
  EXPECT_EQ(m.creds[0].usage.value(), 2) << "ff->cred references the fb's cred";
  const SysResult r2 = open(0, pt(id));
  ASSERT_EQ(r2.err, 0);
  EXPECT_EQ(inode(0).iocachectr, -2);
  EXPECT_EQ(m.backings[0].count.value(), 2) << "a second open puts its lookup reference back";
}

TEST_F(ModelTest, SecondBackingObjectIsEbusy) {
  mount();
  const std::int32_t id1 = register_backing();
  const std::int32_t id2 = register_backing();
  ASSERT_EQ(open(0, pt(id1)).err, 0);
  const std::uint64_t sync_before = m.sync_releases_sent;
  const SysResult r = open(0, pt(id2));
  EXPECT_EQ(r.err, EIO);
  EXPECT_EQ(r.internal_err, EBUSY);
  EXPECT_TRUE(r.sync_release);
  EXPECT_EQ(m.sync_releases_sent, sync_before + 1);
  EXPECT_EQ(fb_of_id(id2).count.value(), 1) << "the refused lookup reference is put back";
  EXPECT_EQ(m.backing_files.back().f_count.value(), 0) << "the per-file backing_file is put";
  EXPECT_EQ(m.creds[1].usage.value(), 1);
}

TEST_F(ModelTest, CachedAndPassthroughExcludeEachOther) {
  const std::int32_t id = mount_with_backing();
  const SysResult c = open(0, flags(0));
  ASSERT_EQ(c.err, 0);
  EXPECT_EQ(inode(0).iocachectr, 1);
  EXPECT_TRUE(inode(0).cache_io_mode);
  const SysResult p = open(0, pt(id));
  EXPECT_EQ(p.err, EIO);
  EXPECT_EQ(p.internal_err, ETXTBSY);
  EXPECT_EQ(m.backings[0].count.value(), 1);
  fuse_close_fd(m, *c.file);
  EXPECT_EQ(inode(0).iocachectr, 0);
  EXPECT_FALSE(inode(0).cache_io_mode);
  const SysResult p2 = open(0, pt(id));
  ASSERT_EQ(p2.err, 0);
  for (std::uint32_t f : {0u, fopen::KEEP_CACHE, fopen::DIRECT_IO, fopen::NOFLUSH}) {
    const SysResult r = open(0, flags(f));
    EXPECT_EQ(r.err, EIO) << f;
    EXPECT_EQ(r.internal_err, EINVAL) << "fi->fb set and the reply lacks FOPEN_PASSTHROUGH";
  }
}

TEST_F(ModelTest, PassthroughOpenRefusals) {
  const std::int32_t id = mount_with_backing();
  struct Case {
    OpenReply reply;
    int internal;
  };
  const Case cases[] = {
      {pt(0), EINVAL},
      {pt(-5), EINVAL},
      {pt(77), ENOENT},
      {pt(id, fopen::KEEP_CACHE), EINVAL},
      {pt(id, fopen::NONSEEKABLE), EINVAL},
      {pt(id, 1u << 20), EINVAL},
  };
  for (const Case &c : cases) {
    const SysResult r = open(0, c.reply);
    EXPECT_EQ(r.err, EIO);
    EXPECT_EQ(r.internal_err, c.internal);
    EXPECT_TRUE(r.sync_release);
  }
  EXPECT_EQ(inode(0).iocachectr, 0);
  EXPECT_EQ(m.backings[0].count.value(), 1);
  const SysResult ok = open(0, pt(id, fopen::DIRECT_IO | fopen::PARALLEL_DIRECT_WRITES |
                                          fopen::NOFLUSH));
  EXPECT_EQ(ok.err, 0);
}

TEST_F(ModelTest, PassthroughReplyWithoutNegotiationIsEinval) {
  mount(KernelProfile::V6_18, InitReply{});
  const SysResult r = open(0, pt(1));
  EXPECT_EQ(r.err, EIO);
  EXPECT_EQ(r.internal_err, EINVAL);
}

TEST_F(ModelTest, ServerErrorSendsNoRelease) {
  mount();
  OpenReply e;
  e.kind = OpenReply::Kind::Error;
  e.error = EACCES;
  const SysResult r = open(0, e);
  EXPECT_EQ(r.err, EACCES);
  EXPECT_FALSE(r.sync_release);
  EXPECT_EQ(m.sync_releases_sent, 0u);
  EXPECT_TRUE(m.files.empty());
}

TEST_F(ModelTest, EnosysSkipsIoModesIn69) {
  mount(KernelProfile::V6_9);
  OpenReply e;
  e.kind = OpenReply::Kind::Enosys;
  const SysResult r = open(0, e);
  ASSERT_EQ(r.err, 0);
  EXPECT_TRUE(m.fc.no_open);
  EXPECT_EQ(inode(0).iocachectr, 0);
  EXPECT_EQ(fuse_file_read_iter(m, *r.file).route, Route::Fuse);
  const SysResult r2 = open(0, pt(42));
  EXPECT_EQ(r2.err, 0) << "no OPEN is sent: the reply is never read";
}

TEST_F(ModelTest, EnosysOpensAreCachedOpensIn618) {
  mount(KernelProfile::V6_18);
  const std::int32_t id = register_backing();
  ASSERT_EQ(open(0, pt(id)).err, 0);
  OpenReply e;
  e.kind = OpenReply::Kind::Enosys;
  const SysResult r = open(0, e);
  EXPECT_EQ(r.err, EIO);
  EXPECT_EQ(r.internal_err, EINVAL);
  EXPECT_FALSE(r.sync_release) << "without OPEN the release never reaches the server";
  EXPECT_EQ(m.sync_releases_sent, 0u);
  const SysResult c = open(1, pt(id));
  ASSERT_EQ(c.err, 0);
  EXPECT_EQ(m.file(*c.file).iomode, IoMode::Cached);
  EXPECT_EQ(inode(1).iocachectr, 1);
}

TEST_F(ModelTest, DirectIoOpenTakesNoIoModeAndClearsNothing) {
  mount();
  const SysResult r = open(0, flags(fopen::DIRECT_IO | fopen::PARALLEL_DIRECT_WRITES));
  ASSERT_EQ(r.err, 0);
  EXPECT_EQ(m.file(*r.file).iomode, IoMode::None);
  EXPECT_EQ(inode(0).iocachectr, 0);
  const SysResult c = open(1, flags(fopen::PARALLEL_DIRECT_WRITES));
  EXPECT_EQ(m.file(*c.file).open_flags & fopen::PARALLEL_DIRECT_WRITES, 0u)
      << "PDW needs DIRECT_IO";
}

TEST_F(ModelTest, SeedUsesBit8AndRefusesBit7) {
  mount(KernelProfile::V15);
  const std::int32_t id = register_backing();
  OpenReply r;
  r.open_flags = 1u << 7;
  r.backing_id = id;
  const SysResult bad = open(0, r);
  EXPECT_EQ(bad.err, EIO);
  r.open_flags = 1u << 8;
  EXPECT_EQ(open(0, r).err, 0);
}

TEST_F(ModelTest, CreateFailureStillSendsRelease) {
  mount();
  const SysResult r = fuse_create_open(m, fuse_iget(m, 3), pt(0));
  EXPECT_EQ(r.err, EIO);
  EXPECT_TRUE(r.sync_release);
}

TEST_F(ModelTest, OpendirIgnoresPassthrough) {
  mount();
  const SysResult r = fuse_dir_open(m, pt(77));
  ASSERT_EQ(r.err, 0);
  EXPECT_EQ(fuse_file_read_iter(m, *r.file).err, EISDIR);
  fuse_close_fd(m, *r.file);
  EXPECT_TRUE(m.file(*r.file).released);
}

// ---- release ---------------------------------------------------------------------------------

TEST_F(ModelTest, LastPassthroughCloseDetachesFb) {
  const std::int32_t id = mount_with_backing();
  const SysResult a = open(0, pt(id));
  const SysResult b = open(0, pt(id));
  fuse_close_fd(m, *a.file);
  EXPECT_EQ(inode(0).fb, FbId{0});
  EXPECT_EQ(m.backing_files[0].f_count.value(), 0);
  fuse_close_fd(m, *b.file);
  EXPECT_FALSE(inode(0).fb.has_value());
  EXPECT_EQ(m.backings[0].count.value(), 1);
  EXPECT_EQ(m.creds[0].usage.value(), 1);
}

TEST_F(ModelTest, PassthroughMappingPinsTheBackingFileNotTheInode) {
  const std::int32_t id = mount_with_backing();
  const SysResult a = open(0, pt(id));
  const SysResult v = fuse_file_mmap(m, *a.file, true);
  ASSERT_EQ(v.err, 0);
  EXPECT_EQ(m.backing_files[0].f_count.value(), 2);
  fuse_close_fd(m, *a.file);
  EXPECT_TRUE(m.file(*a.file).released) << "the VMA does not pin the FUSE file";
  EXPECT_FALSE(inode(0).fb.has_value());
  EXPECT_EQ(m.backing_files[0].f_count.value(), 1);
  EXPECT_EQ(open(0, flags(0)).err, 0) << "a cached open works while the mapping lives";
  vma_close(m, *v.vma);
  EXPECT_EQ(m.backing_files[0].f_count.value(), 0);
}

TEST_F(ModelTest, CachedMappingKeepsTheFileOpen) {
  mount();
  const SysResult a = open(0, flags(0));
  const SysResult v = fuse_file_mmap(m, *a.file, false);
  fuse_close_fd(m, *a.file);
  EXPECT_FALSE(m.file(*a.file).released);
  EXPECT_EQ(inode(0).iocachectr, 1);
  EXPECT_EQ(fuse_umount(m, false).err, EBUSY);
  vma_close(m, *v.vma);
  EXPECT_TRUE(m.file(*a.file).released);
  EXPECT_EQ(inode(0).iocachectr, 0);
}

// ---- mmap ------------------------------------------------------------------------------------

TEST_F(ModelTest, MmapRules) {
  InitReply r = pt_init();
  r.direct_io_allow_mmap = false;
  mount(KernelProfile::V6_18, r);
  const SysResult d = open(0, flags(fopen::DIRECT_IO));
  EXPECT_EQ(fuse_file_mmap(m, *d.file, true).err, ENODEV);
  EXPECT_EQ(fuse_file_mmap(m, *d.file, false).err, 0);
  const SysResult w = open(1, flags(0), AccessMode::WriteOnly);
  EXPECT_EQ(fuse_file_mmap(m, *w.file, false).err, EACCES);

  r.direct_io_allow_mmap = true;
  mount(KernelProfile::V6_18, r);
  const std::int32_t id = register_backing();
  const SysResult d2 = open(0, flags(fopen::DIRECT_IO));
  ASSERT_EQ(open(0, pt(id)).err, 0);
  EXPECT_EQ(fuse_file_mmap(m, *d2.file, true).err, ENODEV);
  EXPECT_EQ(fuse_file_mmap(m, *d2.file, false).err, ENODEV);
}

TEST_F(ModelTest, SharedMmapOfDirectIoFileIsStickyCached) {
  InitReply r = pt_init();
  r.direct_io_allow_mmap = true;
  mount(KernelProfile::V6_18, r);
  const std::int32_t id = register_backing();
  const SysResult d = open(0, flags(fopen::DIRECT_IO));
  const SysResult v = fuse_file_mmap(m, *d.file, true);
  ASSERT_EQ(v.err, 0);
  EXPECT_EQ(m.file(*d.file).iomode, IoMode::Cached);
  vma_close(m, *v.vma);
  EXPECT_EQ(inode(0).iocachectr, 1) << "munmap does not leave cached mode";
  EXPECT_EQ(open(0, pt(id)).internal_err, ETXTBSY);
}

TEST_F(ModelTest, SeedMmapDiffers) {
  InitReply r = pt_init();
  r.direct_io_allow_mmap = true;
  mount(KernelProfile::V15, r);
  const std::int32_t id = register_backing();
  const SysResult d = open(0, flags(fopen::DIRECT_IO));
  const SysResult p = open(0, pt(id));
  EXPECT_EQ(fuse_file_mmap(m, *p.file, true).err, ENODEV) << "5/9: passthrough mmap is a TODO";
  EXPECT_EQ(fuse_file_mmap(m, *d.file, false).err, 0);
  const SysResult blocked = fuse_file_mmap(m, *d.file, true);
  EXPECT_TRUE(blocked.blocked);
  fuse_close_fd(m, *p.file);
  const auto done = fuse_run_woken_tasks(m);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_TRUE(m.tasks.at(idx(done[0])).result.vma.has_value());
  EXPECT_EQ(inode(0).iocachectr, 1);
}

// ---- read/write routing and parallel direct writes -------------------------------------------

TEST_F(ModelTest, ReadWriteRouting) {
  const std::int32_t id = mount_with_backing();
  const SysResult p = open(0, pt(id));
  EXPECT_EQ(fuse_file_read_iter(m, *p.file).route, Route::Backing);
  EXPECT_EQ(fuse_file_write_iter(m, *p.file, false).route, Route::Backing);
  const SysResult pd = open(0, pt(id, fopen::DIRECT_IO));
  EXPECT_EQ(fuse_file_read_iter(m, *pd.file).route, Route::Fuse) << "DIRECT_IO wins for read";
  const SysResult ro = open(0, pt(id), AccessMode::ReadOnly);
  EXPECT_EQ(fuse_file_write_iter(m, *ro.file, false).err, EBADF);
  mount(KernelProfile::V15);
  const std::int32_t id15 = register_backing();
  const SysResult p15 = open(0, pt(id15));
  EXPECT_EQ(fuse_file_read_iter(m, *p15.file).route, Route::Fuse) << "5/9 reads through FUSE";
}

TEST_F(ModelTest, ParallelWriteCountsAndCachedOpenWaits) {
  mount();
  const SysResult d = open(0, flags(fopen::DIRECT_IO | fopen::PARALLEL_DIRECT_WRITES));
  const SysResult w = fuse_file_write_iter(m, *d.file, true);
  ASSERT_EQ(w.err, 0);
  ASSERT_TRUE(w.write.has_value());
  EXPECT_EQ(inode(0).iocachectr, -1);
  const SysResult c = open(0, flags(0));
  ASSERT_TRUE(c.blocked);
  EXPECT_TRUE(inode(0).cache_io_mode) << "the waiter steers new writes to the exclusive lock";
  EXPECT_TRUE(fuse_run_woken_tasks(m).empty());
  EXPECT_EQ(fuse_write_reply(m, *w.write).route, Route::Fuse);
  const auto done = fuse_run_woken_tasks(m);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(m.tasks.at(idx(done[0])).result.err, 0);
  EXPECT_EQ(inode(0).iocachectr, 1);
}

TEST_F(ModelTest, PassthroughOpenDuringParallelWriteKeepsFbUntilWriteEnds) {
  const std::int32_t id = mount_with_backing();
  const SysResult d = open(0, flags(fopen::DIRECT_IO | fopen::PARALLEL_DIRECT_WRITES));
  const SysResult w = fuse_file_write_iter(m, *d.file, true);
  const SysResult p = open(0, pt(id));
  ASSERT_EQ(p.err, 0);
  EXPECT_EQ(inode(0).iocachectr, -2);
  fuse_close_fd(m, *p.file);
  EXPECT_EQ(inode(0).fb, FbId{0}) << "fb stays while the write is in flight";
  EXPECT_EQ(open(0, flags(fopen::DIRECT_IO)).err, EIO);
  fuse_write_reply(m, *w.write);
  EXPECT_FALSE(inode(0).fb.has_value());
  EXPECT_EQ(m.backings[0].count.value(), 1);
}

TEST_F(ModelTest, ParallelWriteOnPassthroughInodePerProfile) {
  for (KernelProfile prof : {KernelProfile::V15, KernelProfile::V6_9, KernelProfile::V6_18}) {
    mount(prof);
    const std::int32_t id = register_backing();
    const SysResult p =
        open(0, pt(id, fopen::DIRECT_IO | fopen::PARALLEL_DIRECT_WRITES));
    ASSERT_EQ(p.err, 0);
    const SysResult w = fuse_file_write_iter(m, *p.file, true);
    ASSERT_EQ(w.err, 0);
    const Write &wr = m.writes.at(idx(*w.write));
    EXPECT_EQ(wr.counted, prof != KernelProfile::V15) << profile_name(prof);
    EXPECT_EQ(wr.exclusive, prof == KernelProfile::V15) << profile_name(prof);
    EXPECT_EQ(inode(0).iocachectr, prof == KernelProfile::V15 ? -1 : -2);
  }
}

TEST_F(ModelTest, WriteWithoutParallelFlagTakesExclusiveLockAndBlocksOthers) {
  mount();
  const SysResult d = open(0, flags(fopen::DIRECT_IO));
  const SysResult w1 = fuse_file_write_iter(m, *d.file, true);
  EXPECT_FALSE(m.writes.at(idx(*w1.write)).counted);
  const SysResult w2 = fuse_file_write_iter(m, *d.file, false);
  EXPECT_TRUE(w2.blocked);
  fuse_write_reply(m, *w1.write);
  const auto done = fuse_run_woken_tasks(m);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(m.tasks.at(idx(done[0])).result.route, Route::Fuse);
}

TEST_F(ModelTest, CacheIoModeBitMakesWritesExclusiveFrom612) {
  for (KernelProfile prof : {KernelProfile::V6_9, KernelProfile::V6_18}) {
    mount(prof);
    const SysResult c = open(0, flags(0));
    ASSERT_EQ(c.err, 0);
    const SysResult d = open(0, flags(fopen::DIRECT_IO | fopen::PARALLEL_DIRECT_WRITES));
    const SysResult w = fuse_file_write_iter(m, *d.file, true);
    ASSERT_EQ(w.err, 0);
    EXPECT_TRUE(m.writes.at(idx(*w.write)).exclusive) << profile_name(prof);
    EXPECT_FALSE(m.writes.at(idx(*w.write)).counted);
    EXPECT_EQ(inode(0).iocachectr, 1);
  }
}

// ---- abort, umount, dev close ----------------------------------------------------------------

TEST_F(ModelTest, AbortKeepsPassthroughFdsWorking) {
  const std::int32_t id = mount_with_backing();
  const SysResult p = open(0, pt(id));
  const SysResult c = open(1, flags(0));
  EXPECT_EQ(fuse_conn_abort_write(m).err, 0);
  EXPECT_EQ(fuse_file_read_iter(m, *p.file).route, Route::Backing);
  EXPECT_EQ(fuse_file_read_iter(m, *c.file).err, ENOTCONN);
  EXPECT_EQ(open(2, flags(0)).err, ENOTCONN);
  EXPECT_EQ(fuse_dev_ioctl_backing_open(m, {}).value, 2) << "ioctls ignore fc->connected";
}

TEST_F(ModelTest, CloseAfterAbortReportsTheFailedFlush) {
  const std::int32_t id = mount_with_backing();
  const SysResult p = open(0, pt(id));
  const SysResult n = open(0, pt(id, fopen::NOFLUSH));
  fuse_abort_conn(m);
  EXPECT_EQ(fuse_close_fd(m, *p.file).err, ENOTCONN);
  EXPECT_TRUE(m.file(*p.file).released) << "the fd is closed even though FLUSH failed";
  EXPECT_EQ(fuse_close_fd(m, *n.file).err, 0) << "FOPEN_NOFLUSH sends no FLUSH";
  EXPECT_EQ(inode(0).iocachectr, 0);
}

TEST_F(ModelTest, AbortEndsHeldWrites) {
  mount();
  const SysResult d = open(0, flags(fopen::DIRECT_IO | fopen::PARALLEL_DIRECT_WRITES));
  const SysResult w = fuse_file_write_iter(m, *d.file, true);
  fuse_abort_conn(m);
  EXPECT_EQ(inode(0).iocachectr, 0);
  EXPECT_EQ(fuse_write_reply(m, *w.write).err, ECONNABORTED);
}

TEST_F(ModelTest, IdsOutliveTheMountUntilDevClose) {
  mount();
  register_backing();
  EXPECT_EQ(fuse_umount(m, false).err, 0);
  EXPECT_FALSE(m.fc.sb_alive);
  EXPECT_FALSE(m.backings[0].freed);
  EXPECT_EQ(register_backing(), 2) << "BACKING_OPEN still works on the dev fd";
  EXPECT_EQ(fuse_dev_release(m).err, 0);
  EXPECT_TRUE(m.fc.freed);
  EXPECT_TRUE(m.backings[0].freed);
  EXPECT_TRUE(m.backings[1].freed);
  EXPECT_TRUE(m.warnings.empty());
  EXPECT_EQ(fuse_dev_ioctl_backing_open(m, {}).err, EBADF);
}

TEST_F(ModelTest, DetachedSuperblockDiesWithItsLastFile) {
  const std::int32_t id = mount_with_backing();
  const SysResult p = open(0, pt(id));
  EXPECT_EQ(fuse_umount(m, false).err, EBUSY);
  EXPECT_EQ(fuse_umount(m, true).err, 0);
  EXPECT_TRUE(m.fc.sb_alive);
  EXPECT_EQ(open(0, pt(id)).err, ENOENT);
  fuse_close_fd(m, *p.file);
  EXPECT_FALSE(m.fc.sb_alive);
  EXPECT_EQ(fuse_dev_release(m).err, 0);
  EXPECT_TRUE(m.backings[0].freed);
  EXPECT_TRUE(m.warnings.empty());
}

TEST_F(ModelTest, RefcountMisuseIsReportedNotUndefined) {
  RefCount r(1);
  bool zero = false;
  EXPECT_EQ(r.dec_and_test(&zero), RefcountMisuse::None);
  EXPECT_TRUE(zero);
  EXPECT_EQ(r.dec_and_test(&zero), RefcountMisuse::Underflow);
  EXPECT_EQ(r.value(), 0);
  EXPECT_EQ(r.inc(), RefcountMisuse::IncFromZero);
  EXPECT_FALSE(r.inc_not_zero());
}

} // namespace
