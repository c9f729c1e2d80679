// Transitions shared between the model's translation units; not part of the model's API.
#pragma once

#include "model/fuse.h"

namespace fpsim::model::detail {

// fuse_backing_get/put with refcount_t semantics; the last put runs fuse_backing_free.
void fuse_backing_get(Model &m, FbId fb, const char *where);
void fuse_backing_put(Model &m, FbId fb, const char *where);
// fuse_backing_lookup: idr_find + refcount_inc_not_zero.
std::optional<FbId> fuse_backing_lookup(Model &m, std::int32_t id);

CredId get_cred(Model &m, CredId c, const char *where);
void put_cred(Model &m, CredId c, const char *where);

// fput on a per-file backing_file.
void backing_file_fput(Model &m, BackingFileId bf, const char *where);

// fuse_passthrough_open: looks up the id (+1 on the fb) and opens the per-file backing_file.
int fuse_passthrough_open(Model &m, FileId f, std::int32_t backing_id, FbId *fb_out);
// fuse_passthrough_release: drops ff->passthrough and ff->cred.
void fuse_passthrough_release(Model &m, FileId f, const char *where);

// wait: the rule that puts the open to sleep on direct_io_waitq, if it must wait.
int fuse_file_io_open(Model &m, FileId f, int *internal_err, std::optional<Rule> *wait);
int fuse_file_cached_io_open(Model &m, FileId f, std::optional<Rule> *wait);
// file or write: the user of the uncached reference, for the decision it records.
int fuse_inode_uncached_io_start(Model &m, InodeId i, std::optional<FbId> fb,
                                 std::optional<FileId> file = std::nullopt,
                                 std::optional<WriteId> write = std::nullopt);
void fuse_inode_uncached_io_end(Model &m, InodeId i);
void fuse_file_io_release(Model &m, FileId f);

// fuse_flush's FLUSH request (once any inode lock wait is over); its errno.
int fuse_flush_request(Model &m, FileId f);

// The last reference of a struct file went: fuse_release.
void fuse_release(Model &m, FileId f);
// Drops one reference of a FUSE struct file; the last runs fuse_release.
void fuse_file_fput(Model &m, FileId f, const char *where);

// The direct_io_waitq wake-up of fuse_inode_uncached_io_end.
void wake_up_direct_io_waitq(Model &m, InodeId i);
// unlock_page after a write-through WRITE: wakes opens invalidating the page cache.
void wake_up_page(Model &m, InodeId i);
// Whether a write-through WRITE in flight keeps the inode's folio locked.
bool folio_locked_by_write(const Model &m, InodeId i);
// invalidate_inode_pages2 once the folio is unlocked: the folio leaves the mapping, so a WRITE
// still holding it no longer touches the inode's copy.
void invalidate_folio(Model &m, InodeId i);
// fuse_send_write_pages after the answer (or the abort): a failed WRITE clears the uptodate bit
// of a folio still in the mapping; the folio is unlocked.
void fuse_send_write_pages_end(Model &m, Write &w);
// inode_unlock / inode_unlock_shared, waking lock waiters.
void inode_unlock(Model &m, InodeId i, bool exclusive);
// Marks every call queued on the inode lock to try again.
void wake_inode_lock_waiters(Model &m, InodeId i);

// Drops the calls that have returned from Model::unfinished_writes / unfinished_tasks.
void skip_finished(Model &m);

// Something still holds the mount: an open FUSE file, or a backing_file (its user path).
bool sb_pinned(const Model &m);
// The superblock went away: evict every inode (fuse_evict_inode + fuse_free_inode).
void fuse_kill_sb(Model &m);
// Drops a fuse_conn reference (superblock or dev fd); the last frees the backing ids.
void fuse_conn_put(Model &m);
// fuse_backing_files_free: every fb still in the idr is freed unconditionally.
void fuse_backing_files_free(Model &m);

bool file_readable(const FuseFile &ff);
bool file_writable(const FuseFile &ff);

} // namespace fpsim::model::detail
