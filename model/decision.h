// The model's decisions: wherever a transition chooses an errno, puts a call to sleep, wakes one,
// or picks the route of a read, write or mapping, it records which rule of which kernel function
// decided, with the objects involved. Explain and the tests read them instead of working the
// rule out again from the states before and after a step, so a rule that changes in the model
// changes what they say with it.
#pragma once

#include <cstddef>
#include <climits>
#include <cstdint>
#include <optional>
#include <string_view>

namespace fpsim::model {

enum class InodeId : std::uint32_t;
enum class FileId : std::uint32_t;
enum class FbId : std::uint32_t;
enum class WriteId : std::uint32_t;
enum class TaskId : std::uint32_t;

// X(rule, kernel function): one entry per branch of the kernel that the model distinguishes.
// The function is the one the kernel makes the choice in (or the path to it, as explain names
// it); the rule's name says which check it was.
#define FPSIM_RULES(X)                                                                             \
  X(InitSync, "fuse_dev_ioctl_sync_init")                                                          \
  X(InitAfterMount, "fuse_send_init")                                                              \
  X(InitNoPassthrough, "process_init_reply")                                                       \
  X(InitNoInitExt, "process_init_reply")                                                           \
  X(InitStackDepth, "process_init_reply")                                                          \
  X(InitWritebackCache, "process_init_reply")                                                      \
  X(InitPassthrough, "process_init_reply")                                                         \
  X(InitFlags2Ignored, "process_init_reply")                                                       \
  X(BackingOpenDevClosed, "fuse_dev_ioctl_backing_open")                                           \
  X(BackingOpenNotInstalled, "fuse_dev_ioctl_backing_open -> fuse_get_dev")                        \
  X(BackingOpenNoPassthrough, "fuse_backing_open")                                                 \
  X(BackingOpenNotCapable, "fuse_backing_open")                                                    \
  X(BackingOpenFlags, "fuse_backing_open")                                                         \
  X(BackingOpenPadding, "fuse_backing_open")                                                       \
  X(BackingOpenBadFd, "fuse_backing_open")                                                         \
  X(BackingOpenOPath, "fuse_backing_open")                                                         \
  X(BackingOpenNoRwIter, "fuse_backing_open")                                                      \
  X(BackingOpenDirectory, "fuse_backing_open")                                                     \
  X(BackingOpenNotRegular, "fuse_backing_open")                                                    \
  X(BackingOpenStackDepth, "fuse_backing_open")                                                    \
  X(BackingOpenIdrFull, "fuse_backing_open -> idr_alloc_cyclic")                                   \
  X(BackingOpenRegistered, "fuse_backing_open")                                                    \
  X(BackingCloseDevClosed, "fuse_dev_ioctl_backing_close")                                         \
  X(BackingCloseNotInstalled, "fuse_dev_ioctl_backing_close -> fuse_get_dev")                      \
  X(BackingCloseNoPassthrough, "fuse_backing_close")                                               \
  X(BackingCloseNotCapable, "fuse_backing_close")                                                  \
  X(BackingCloseInvalidId, "fuse_backing_close")                                                   \
  X(BackingCloseNoEntry, "fuse_backing_close")                                                     \
  X(BackingCloseRemoved, "fuse_backing_close")                                                     \
  X(PathWalkNoMount, "path_openat")                                                                \
  X(LookupDisconnected, "fuse_get_req")                                                            \
  X(LookupNoEntry, "fuse_lookup")                                                                  \
  X(LookupExists, "open_last_lookups")                                                             \
  X(OpenDisconnected, "fuse_get_req")                                                              \
  X(OpenReplyError, "fuse_file_open")                                                              \
  X(CreateEnosys, "fuse_create_open")                                                              \
  X(OpenNoOpen, "fuse_file_open")                                                                  \
  X(OpenEnosys, "fuse_file_open")                                                                  \
  X(FileIoOpenNoArgs, "fuse_file_io_open")                                                         \
  X(FileIoOpenCacheIoBit, "fuse_file_io_open")                                                     \
  X(FileIoOpenNotPassthrough, "fuse_file_io_open")                                                 \
  X(FileIoOpenDirectIo, "fuse_file_io_open")                                                       \
  X(FileIoOpenParallelWritesDropped, "fuse_file_io_open")                                          \
  X(PassthroughOpenNotNegotiated, "fuse_file_passthrough_open")                                    \
  X(PassthroughOpenFlagsMask, "fuse_file_passthrough_open")                                        \
  X(PassthroughOpenInvalidId, "fuse_passthrough_open")                                             \
  X(PassthroughOpenNoId, "fuse_passthrough_open")                                                  \
  X(PassthroughOpenSocket, "fuse_passthrough_open -> backing_file_open")                           \
  X(PassthroughOpenBackingFile, "fuse_passthrough_open")                                           \
  X(PassthroughOpenSeedIo, "fuse_passthrough_open")                                                \
  X(UncachedIoStartOtherFb, "fuse_inode_uncached_io_start")                                        \
  X(UncachedIoStartOtherBackingInode, "fuse_inode_uncached_io_start")                              \
  X(UncachedIoStartNullFb, "fuse_inode_uncached_io_start")                                         \
  X(UncachedIoStartCachedInode, "fuse_inode_uncached_io_start")                                    \
  X(UncachedIoStartAttach, "fuse_inode_uncached_io_start")                                         \
  X(UncachedIoStartSameFb, "fuse_inode_uncached_io_start")                                         \
  X(UncachedIoStartSameBackingInode, "fuse_inode_uncached_io_start")                               \
  X(UncachedIoStartCounted, "fuse_inode_uncached_io_start")                                        \
  X(UncachedIoEndDetach, "fuse_inode_uncached_io_end")                                             \
  X(IoCacheWait, "fuse_file_cached_io_open")                                                       \
  X(IoCacheWaitOnBacking, "fuse_file_cached_io_open")                                              \
  X(CachedIoOpenBackingInode, "fuse_file_cached_io_open")                                          \
  X(CachedIoOpen, "fuse_file_cached_io_open")                                                      \
  X(OpenInvalidateWait, "fuse_open -> invalidate_inode_pages2")                                    \
  X(OpenInvalidate, "fuse_open -> invalidate_inode_pages2")                                        \
  X(TruncateLockWait, "do_truncate -> inode_lock")                                                 \
  X(DoTruncate, "do_truncate")                                                                     \
  X(DoTruncateDisconnected, "do_truncate")                                                         \
  X(DirOpenDisconnected, "fuse_get_req")                                                           \
  X(DirOpenReplyError, "fuse_dir_open")                                                            \
  X(DirOpenNoOpendir, "fuse_dir_open")                                                             \
  X(DirOpenEnosys, "fuse_dir_open")                                                                \
  X(DirOpen, "fuse_dir_open")                                                                      \
  X(ReadIsDir, "generic_read_dir")                                                                 \
  X(ReadNotReadable, "vfs_read")                                                                   \
  X(PassthroughRead, "fuse_passthrough_read_iter")                                                 \
  X(ReadSeedPassthrough, "fuse_cache_read_iter")                                                   \
  X(CacheReadUptodate, "fuse_cache_read_iter")                                                     \
  X(ReadPageWait, "fuse_cache_read_iter -> filemap_read")                                          \
  X(DirectReadLockWait, "fuse_direct_io -> inode_lock")                                            \
  X(ReadDisconnected, "fuse_get_req")                                                              \
  X(ReadDisconnectedBufferedEio, "fuse_read_folio -> iomap_read_folio")                            \
  X(DirectRead, "fuse_direct_read_iter")                                                           \
  X(CacheReadODirect, "fuse_cache_read_iter -> fuse_direct_IO")                                    \
  X(CacheReadMiss, "fuse_cache_read_iter")                                                         \
  X(WriteIsDir, "vfs_write")                                                                       \
  X(WriteNotWritable, "vfs_write")                                                                 \
  X(DioWrExclusive, "fuse_dio_wr_exclusive_lock")                                                  \
  X(DioWrExclusiveCacheIoMode, "fuse_dio_wr_exclusive_lock")                                       \
  X(DioWrSharedCacheIoModeMissed, "fuse_dio_wr_exclusive_lock")                                    \
  X(DioWrShared, "fuse_dio_wr_exclusive_lock")                                                     \
  X(WriteLockWait, "inode_lock")                                                                   \
  X(PassthroughWrite, "fuse_passthrough_write_iter")                                               \
  X(DirectWrite, "fuse_direct_write_iter")                                                         \
  X(CacheWriteODirect, "fuse_cache_write_iter -> fuse_direct_IO")                                  \
  X(CacheWriteWriteback, "fuse_cache_write_iter")                                                  \
  X(CacheWriteThrough, "fuse_perform_write")                                                       \
  X(WriteSeedPassthrough, "fuse_perform_write")                                                    \
  X(WriteDisconnected, "fuse_get_req")                                                             \
  X(WriteHeld, "fuse_send_write")                                                                  \
  X(WriteReplyAfterAbort, "fuse_abort_conn")                                                       \
  X(WriteReply, "fuse_write_reply")                                                                \
  X(MmapIsDir, "do_mmap")                                                                          \
  X(MmapNotReadable, "do_mmap")                                                                    \
  X(MmapSeedPassthrough, "fuse_file_mmap")                                                         \
  X(MmapBackingInode, "fuse_file_mmap")                                                            \
  X(MmapDirectIoSharedRefused, "fuse_file_mmap")                                                   \
  X(MmapInvalidateWait, "fuse_file_mmap -> invalidate_inode_pages2")                               \
  X(MmapPassthrough, "fuse_passthrough_mmap -> backing_file_mmap")                                 \
  X(MmapDirectIoPrivate, "fuse_file_mmap -> generic_file_mmap")                                    \
  X(MmapDirectIoShared, "fuse_file_mmap + fuse_file_cached_io_open")                               \
  X(MmapPageCache, "fuse_file_mmap -> generic_file_mmap")                                          \
  X(FlushDisconnected, "fuse_flush")                                                               \
  X(FlushDirectory, "fuse_flush")                                                                  \
  X(FlushNoflush, "fuse_flush")                                                                    \
  X(Flush, "fuse_flush")                                                                           \
  X(FlushLockWait, "fuse_flush -> inode_lock")                                                     \
  X(ReleaseNoOpen, "fuse_release")                                                                 \
  X(ReleaseDisconnected, "fuse_release")                                                           \
  X(ReleaseSent, "fuse_release")                                                                   \
  X(KillSbLastFile, "fuse_kill_sb_anon")                                                           \
  X(AbortNoSuperblock, "fuse_conn_abort_write")                                                    \
  X(AbortAlready, "fuse_abort_conn")                                                               \
  X(Abort, "fuse_abort_conn")                                                                      \
  X(AbortEndsWrite, "fuse_abort_conn -> end_requests")                                             \
  X(UmountNotMounted, "path_umount")                                                               \
  X(UmountBusy, "path_umount")                                                                     \
  X(UmountDetached, "path_umount (MNT_DETACH)")                                                    \
  X(UmountKillSb, "path_umount -> fuse_kill_sb_anon")                                              \
  X(DevReleaseClosed, "fuse_dev_release")                                                          \
  X(DevRelease, "fuse_dev_release")                                                                \
  X(ConnFree, "fuse_conn_put")                                                                     \
  X(WakeDirectIoWaitq, "fuse_inode_uncached_io_end -> wake_up")                                    \
  X(WakePage, "folio_unlock")                                                                      \
  X(WakeInodeLock, "inode_unlock")

enum class Rule : std::uint8_t {
#define FPSIM_RULE_ENUM(name, function) name,
  FPSIM_RULES(FPSIM_RULE_ENUM)
#undef FPSIM_RULE_ENUM
};

inline constexpr std::size_t kRuleCount = 0
#define FPSIM_RULE_COUNT(name, function) +1
    FPSIM_RULES(FPSIM_RULE_COUNT)
#undef FPSIM_RULE_COUNT
    ;

// The enumerator's name ("UncachedIoStartOtherFb"), for JSON and the tests.
std::string_view rule_name(Rule r);
// The kernel function that decides it ("fuse_inode_uncached_io_start").
std::string_view rule_function(Rule r);
std::optional<Rule> parse_rule(std::string_view name);

// An id or none, in the id's four bytes (std::optional takes eight): explore and fuzz copy every
// model they try, decisions included, so a decision is kept small.
template <typename Id> class OptId {
public:
  constexpr OptId() = default;
  constexpr OptId(std::nullopt_t) {}
  constexpr OptId(Id id) : v_(static_cast<std::uint32_t>(id)) {}
  constexpr OptId(std::optional<Id> id) : v_(id ? static_cast<std::uint32_t>(*id) : kNone) {}
  constexpr explicit operator bool() const { return v_ != kNone; }
  constexpr bool has_value() const { return v_ != kNone; }
  constexpr Id operator*() const { return static_cast<Id>(v_); }
  constexpr operator std::optional<Id>() const {
    return has_value() ? std::optional<Id>(static_cast<Id>(v_)) : std::nullopt;
  }
  friend constexpr bool operator==(OptId, OptId) = default;
  friend constexpr bool operator==(OptId a, Id b) { return a.v_ == static_cast<std::uint32_t>(b); }

private:
  // No table grows to 2^32 - 1 entries, so the last index never names an object.
  static constexpr std::uint32_t kNone = UINT32_MAX;
  std::uint32_t v_ = kNone;
};

// One decision of one step. Objects the rule did not involve stay empty. Built as
// Decision(rule).with_inode(i).with_err(e)...: an aggregate's designated initializers would
// have to name every member to satisfy -Wmissing-field-initializers.
struct Decision {
  Rule rule{};
  int err = 0; // the errno chosen (positive), or 0
  OptId<InodeId> inode;
  OptId<FileId> file;
  OptId<FbId> fb;       // the backing object the rule looked at
  OptId<FbId> other_fb; // the one it was compared with (the inode's attached fb)
  OptId<WriteId> write;
  OptId<TaskId> task; // the sleeping call it concerns

  constexpr Decision() = default;
  constexpr explicit Decision(Rule r) : rule(r) {}
  constexpr Decision &with_err(int e) {
    err = e;
    return *this;
  }
  constexpr Decision &with_inode(std::optional<InodeId> i) {
    inode = i;
    return *this;
  }
  constexpr Decision &with_file(std::optional<FileId> f) {
    file = f;
    return *this;
  }
  constexpr Decision &with_fb(std::optional<FbId> b) {
    fb = b;
    return *this;
  }
  constexpr Decision &with_other_fb(std::optional<FbId> b) {
    other_fb = b;
    return *this;
  }
  constexpr Decision &with_write(std::optional<WriteId> w) {
    write = w;
    return *this;
  }
  constexpr Decision &with_task(std::optional<TaskId> t) {
    task = t;
    return *this;
  }
  bool operator==(const Decision &) const = default;
};

} // namespace fpsim::model
