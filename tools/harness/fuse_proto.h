// FUSE kernel protocol 7.45 (Linux 6.18), defined here rather than taken from <linux/fuse.h>:
// Debian bookworm ships protocol 7.38, which has none of the passthrough definitions, and mixing the two
// would silently pick up the old fuse_init_out (no max_stack_depth => passthrough off).
// Every layout below is pinned with static_asserts against docs/kernel-semantics.md §5.
#pragma once

#include <linux/ioctl.h>

#include <cstddef>
#include <iterator>
#include <cstdint>

namespace fpsim::harness::proto {

inline constexpr std::uint32_t kKernelVersion = 7;
inline constexpr std::uint32_t kKernelMinorVersion = 45;
inline constexpr std::uint64_t kRootId = 1;

// Opcodes (enum fuse_opcode).
enum Opcode : std::uint32_t {
  LOOKUP = 1,
  FORGET = 2, // no reply
  GETATTR = 3,
  SETATTR = 4,
  OPEN = 14,
  READ = 15,
  WRITE = 16,
  STATFS = 17,
  RELEASE = 18,
  FSYNC = 20,
  GETXATTR = 22,
  LISTXATTR = 23,
  FLUSH = 25,
  INIT = 26,
  OPENDIR = 27,
  READDIR = 28,
  RELEASEDIR = 29,
  FSYNCDIR = 30,
  ACCESS = 34,
  CREATE = 35,
  INTERRUPT = 36, // no reply
  DESTROY = 38,
  BATCH_FORGET = 42, // no reply
  READDIRPLUS = 44,
  LSEEK = 46,
  SYNCFS = 50,
  TMPFILE = 51,
  STATX = 52,
  COPY_FILE_RANGE_64 = 53,
};

// enum fuse_opcode's names without the FUSE_ prefix, by number (1 to 53; 7 and 19 are unused).
inline constexpr const char *kOpcodeNames[] = {
    nullptr, "LOOKUP", "FORGET", "GETATTR", "SETATTR", "READLINK", "SYMLINK", nullptr, "MKNOD", "MKDIR",
    "UNLINK", "RMDIR", "RENAME", "LINK", "OPEN", "READ", "WRITE", "STATFS", "RELEASE", nullptr, "FSYNC",
    "SETXATTR", "GETXATTR", "LISTXATTR", "REMOVEXATTR", "FLUSH", "INIT", "OPENDIR", "READDIR",
    "RELEASEDIR", "FSYNCDIR", "GETLK", "SETLK", "SETLKW", "ACCESS", "CREATE", "INTERRUPT", "BMAP",
    "DESTROY", "IOCTL", "POLL", "NOTIFY_REPLY", "BATCH_FORGET", "FALLOCATE", "READDIRPLUS", "RENAME2",
    "LSEEK", "COPY_FILE_RANGE", "SETUPMAPPING", "REMOVEMAPPING", "SYNCFS", "TMPFILE", "STATX",
    "COPY_FILE_RANGE_64",
};

// nullptr for a number the protocol does not name.
constexpr const char *opcode_name(std::uint32_t op) {
  return op < std::size(kOpcodeNames) ? kOpcodeNames[op] : nullptr;
}

// fuse_open_out.open_flags.
namespace fopen {
inline constexpr std::uint32_t DIRECT_IO = 1u << 0;
inline constexpr std::uint32_t KEEP_CACHE = 1u << 1;
inline constexpr std::uint32_t NONSEEKABLE = 1u << 2;
inline constexpr std::uint32_t CACHE_DIR = 1u << 3;
inline constexpr std::uint32_t STREAM = 1u << 4;
inline constexpr std::uint32_t NOFLUSH = 1u << 5;
inline constexpr std::uint32_t PARALLEL_DIRECT_WRITES = 1u << 6;
inline constexpr std::uint32_t PASSTHROUGH = 1u << 7;
} // namespace fopen

// INIT flags as one 64-bit set; bits 32..63 travel in flags2 and count only with INIT_EXT.
namespace init_flag {
inline constexpr std::uint64_t ASYNC_READ = 1ull << 0;
inline constexpr std::uint64_t BIG_WRITES = 1ull << 5;
inline constexpr std::uint64_t WRITEBACK_CACHE = 1ull << 16;
inline constexpr std::uint64_t MAX_PAGES = 1ull << 22;
inline constexpr std::uint64_t INIT_EXT = 1ull << 30;
inline constexpr std::uint64_t DIRECT_IO_ALLOW_MMAP = 1ull << 36;
inline constexpr std::uint64_t PASSTHROUGH = 1ull << 37;
inline constexpr std::uint64_t REQUEST_TIMEOUT = 1ull << 42;
} // namespace init_flag

// fuse_setattr_in.valid.
namespace fattr {
inline constexpr std::uint32_t MODE = 1u << 0;
inline constexpr std::uint32_t UID = 1u << 1;
inline constexpr std::uint32_t GID = 1u << 2;
inline constexpr std::uint32_t SIZE = 1u << 3;
inline constexpr std::uint32_t ATIME = 1u << 4;
inline constexpr std::uint32_t MTIME = 1u << 5;
inline constexpr std::uint32_t FH = 1u << 6;
inline constexpr std::uint32_t ATIME_NOW = 1u << 7;
inline constexpr std::uint32_t MTIME_NOW = 1u << 8;
} // namespace fattr

// /dev/fuse ioctls, magic 229 (x86-64 encodings).
inline constexpr unsigned long kDevIocBackingOpen = 0x4010E501ul;  // _IOW(229, 1, fuse_backing_map)
inline constexpr unsigned long kDevIocBackingClose = 0x4004E502ul; // _IOW(229, 2, uint32_t)
inline constexpr unsigned long kDevIocSyncInit = 0xE503ul;         // _IO(229, 3), 6.18+

// The kernel refuses reads of /dev/fuse shorter than this; the server uses max_write + one page.
inline constexpr std::size_t kMinReadBuffer = 8192;

struct fuse_in_header {
  std::uint32_t len;
  std::uint32_t opcode;
  std::uint64_t unique;
  std::uint64_t nodeid;
  std::uint32_t uid;
  std::uint32_t gid;
  std::uint32_t pid;
  std::uint16_t total_extlen;
  std::uint16_t padding;
};

struct fuse_out_header {
  std::uint32_t len;
  std::int32_t error; // -errno
  std::uint64_t unique;
};

struct fuse_init_in {
  std::uint32_t major;
  std::uint32_t minor;
  std::uint32_t max_readahead;
  std::uint32_t flags;
  std::uint32_t flags2;
  std::uint32_t unused[11];
};

struct fuse_init_out {
  std::uint32_t major;
  std::uint32_t minor;
  std::uint32_t max_readahead;
  std::uint32_t flags;
  std::uint16_t max_background;
  std::uint16_t congestion_threshold;
  std::uint32_t max_write;
  std::uint32_t time_gran;
  std::uint16_t max_pages;
  std::uint16_t map_alignment;
  std::uint32_t flags2;
  std::uint32_t max_stack_depth;
  std::uint16_t request_timeout;
  std::uint16_t unused[11];
};

struct fuse_attr {
  std::uint64_t ino;
  std::uint64_t size;
  std::uint64_t blocks;
  std::uint64_t atime;
  std::uint64_t mtime;
  std::uint64_t ctime;
  std::uint32_t atimensec;
  std::uint32_t mtimensec;
  std::uint32_t ctimensec;
  std::uint32_t mode;
  std::uint32_t nlink;
  std::uint32_t uid;
  std::uint32_t gid;
  std::uint32_t rdev;
  std::uint32_t blksize;
  std::uint32_t flags;
};

struct fuse_entry_out {
  std::uint64_t nodeid;
  std::uint64_t generation;
  std::uint64_t entry_valid;
  std::uint64_t attr_valid;
  std::uint32_t entry_valid_nsec;
  std::uint32_t attr_valid_nsec;
  fuse_attr attr;
};

struct fuse_getattr_in {
  std::uint32_t getattr_flags;
  std::uint32_t dummy;
  std::uint64_t fh;
};

struct fuse_attr_out {
  std::uint64_t attr_valid;
  std::uint32_t attr_valid_nsec;
  std::uint32_t dummy;
  fuse_attr attr;
};

struct fuse_setattr_in {
  std::uint32_t valid;
  std::uint32_t padding;
  std::uint64_t fh;
  std::uint64_t size;
  std::uint64_t lock_owner;
  std::uint64_t atime;
  std::uint64_t mtime;
  std::uint64_t ctime;
  std::uint32_t atimensec;
  std::uint32_t mtimensec;
  std::uint32_t ctimensec;
  std::uint32_t mode;
  std::uint32_t unused4;
  std::uint32_t uid;
  std::uint32_t gid;
  std::uint32_t unused5;
};

struct fuse_open_in {
  std::uint32_t flags;
  std::uint32_t open_flags;
};

// Followed by the NUL-terminated name.
struct fuse_create_in {
  std::uint32_t flags;
  std::uint32_t mode;
  std::uint32_t umask;
  std::uint32_t open_flags;
};

struct fuse_open_out {
  std::uint64_t fh;
  std::uint32_t open_flags;
  std::int32_t backing_id;
};

struct fuse_release_in {
  std::uint64_t fh;
  std::uint32_t flags;
  std::uint32_t release_flags;
  std::uint64_t lock_owner;
};

struct fuse_flush_in {
  std::uint64_t fh;
  std::uint32_t unused;
  std::uint32_t padding;
  std::uint64_t lock_owner;
};

struct fuse_fsync_in {
  std::uint64_t fh;
  std::uint32_t fsync_flags;
  std::uint32_t padding;
};

struct fuse_read_in {
  std::uint64_t fh;
  std::uint64_t offset;
  std::uint32_t size;
  std::uint32_t read_flags;
  std::uint64_t lock_owner;
  std::uint32_t flags;
  std::uint32_t padding;
};

// Followed by `size` bytes of data.
struct fuse_write_in {
  std::uint64_t fh;
  std::uint64_t offset;
  std::uint32_t size;
  std::uint32_t write_flags;
  std::uint64_t lock_owner;
  std::uint32_t flags;
  std::uint32_t padding;
};

struct fuse_write_out {
  std::uint32_t size;
  std::uint32_t padding;
};

struct fuse_kstatfs {
  std::uint64_t blocks;
  std::uint64_t bfree;
  std::uint64_t bavail;
  std::uint64_t files;
  std::uint64_t ffree;
  std::uint32_t bsize;
  std::uint32_t namelen;
  std::uint32_t frsize;
  std::uint32_t padding;
  std::uint32_t spare[6];
};

struct fuse_statfs_out {
  fuse_kstatfs st;
};

// READDIR reply entry; the name follows and each entry is padded to 8 bytes.
struct fuse_dirent {
  std::uint64_t ino;
  std::uint64_t off;
  std::uint32_t namelen;
  std::uint32_t type;
};

struct fuse_backing_map {
  std::int32_t fd;
  std::uint32_t flags;   // must be 0
  std::uint64_t padding; // must be 0
};

// ---- layout pins (sizes and offsets) -------------------------------------------------------------

#define FPSIM_FIELD(T, f, off) static_assert(offsetof(T, f) == (off), #T "." #f)

static_assert(sizeof(fuse_in_header) == 40);
FPSIM_FIELD(fuse_in_header, len, 0);
FPSIM_FIELD(fuse_in_header, opcode, 4);
FPSIM_FIELD(fuse_in_header, unique, 8);
FPSIM_FIELD(fuse_in_header, nodeid, 16);
FPSIM_FIELD(fuse_in_header, uid, 24);
FPSIM_FIELD(fuse_in_header, gid, 28);
FPSIM_FIELD(fuse_in_header, pid, 32);
FPSIM_FIELD(fuse_in_header, total_extlen, 36);
FPSIM_FIELD(fuse_in_header, padding, 38);

static_assert(sizeof(fuse_out_header) == 16);
FPSIM_FIELD(fuse_out_header, len, 0);
FPSIM_FIELD(fuse_out_header, error, 4);
FPSIM_FIELD(fuse_out_header, unique, 8);

static_assert(sizeof(fuse_init_in) == 64);
FPSIM_FIELD(fuse_init_in, major, 0);
FPSIM_FIELD(fuse_init_in, minor, 4);
FPSIM_FIELD(fuse_init_in, max_readahead, 8);
FPSIM_FIELD(fuse_init_in, flags, 12);
FPSIM_FIELD(fuse_init_in, flags2, 16);
FPSIM_FIELD(fuse_init_in, unused, 20);

static_assert(sizeof(fuse_init_out) == 64);
FPSIM_FIELD(fuse_init_out, major, 0);
FPSIM_FIELD(fuse_init_out, minor, 4);
FPSIM_FIELD(fuse_init_out, max_readahead, 8);
FPSIM_FIELD(fuse_init_out, flags, 12);
FPSIM_FIELD(fuse_init_out, max_background, 16);
FPSIM_FIELD(fuse_init_out, congestion_threshold, 18);
FPSIM_FIELD(fuse_init_out, max_write, 20);
FPSIM_FIELD(fuse_init_out, time_gran, 24);
FPSIM_FIELD(fuse_init_out, max_pages, 28);
FPSIM_FIELD(fuse_init_out, map_alignment, 30);
FPSIM_FIELD(fuse_init_out, flags2, 32);
FPSIM_FIELD(fuse_init_out, max_stack_depth, 36);
FPSIM_FIELD(fuse_init_out, request_timeout, 40);
FPSIM_FIELD(fuse_init_out, unused, 42);

static_assert(sizeof(fuse_attr) == 88);
FPSIM_FIELD(fuse_attr, ino, 0);
FPSIM_FIELD(fuse_attr, size, 8);
FPSIM_FIELD(fuse_attr, blocks, 16);
FPSIM_FIELD(fuse_attr, atime, 24);
FPSIM_FIELD(fuse_attr, mtime, 32);
FPSIM_FIELD(fuse_attr, ctime, 40);
FPSIM_FIELD(fuse_attr, atimensec, 48);
FPSIM_FIELD(fuse_attr, mtimensec, 52);
FPSIM_FIELD(fuse_attr, ctimensec, 56);
FPSIM_FIELD(fuse_attr, mode, 60);
FPSIM_FIELD(fuse_attr, nlink, 64);
FPSIM_FIELD(fuse_attr, uid, 68);
FPSIM_FIELD(fuse_attr, gid, 72);
FPSIM_FIELD(fuse_attr, rdev, 76);
FPSIM_FIELD(fuse_attr, blksize, 80);
FPSIM_FIELD(fuse_attr, flags, 84);

static_assert(sizeof(fuse_entry_out) == 128);
FPSIM_FIELD(fuse_entry_out, nodeid, 0);
FPSIM_FIELD(fuse_entry_out, generation, 8);
FPSIM_FIELD(fuse_entry_out, entry_valid, 16);
FPSIM_FIELD(fuse_entry_out, attr_valid, 24);
FPSIM_FIELD(fuse_entry_out, entry_valid_nsec, 32);
FPSIM_FIELD(fuse_entry_out, attr_valid_nsec, 36);
FPSIM_FIELD(fuse_entry_out, attr, 40);

static_assert(sizeof(fuse_getattr_in) == 16);
FPSIM_FIELD(fuse_getattr_in, getattr_flags, 0);
FPSIM_FIELD(fuse_getattr_in, dummy, 4);
FPSIM_FIELD(fuse_getattr_in, fh, 8);

static_assert(sizeof(fuse_attr_out) == 104);
FPSIM_FIELD(fuse_attr_out, attr_valid, 0);
FPSIM_FIELD(fuse_attr_out, attr_valid_nsec, 8);
FPSIM_FIELD(fuse_attr_out, dummy, 12);
FPSIM_FIELD(fuse_attr_out, attr, 16);

static_assert(sizeof(fuse_setattr_in) == 88);
FPSIM_FIELD(fuse_setattr_in, valid, 0);
FPSIM_FIELD(fuse_setattr_in, padding, 4);
FPSIM_FIELD(fuse_setattr_in, fh, 8);
FPSIM_FIELD(fuse_setattr_in, size, 16);
FPSIM_FIELD(fuse_setattr_in, lock_owner, 24);
FPSIM_FIELD(fuse_setattr_in, atime, 32);
FPSIM_FIELD(fuse_setattr_in, mtime, 40);
FPSIM_FIELD(fuse_setattr_in, ctime, 48);
FPSIM_FIELD(fuse_setattr_in, atimensec, 56);
FPSIM_FIELD(fuse_setattr_in, mtimensec, 60);
FPSIM_FIELD(fuse_setattr_in, ctimensec, 64);
FPSIM_FIELD(fuse_setattr_in, mode, 68);
FPSIM_FIELD(fuse_setattr_in, unused4, 72);
FPSIM_FIELD(fuse_setattr_in, uid, 76);
FPSIM_FIELD(fuse_setattr_in, gid, 80);
FPSIM_FIELD(fuse_setattr_in, unused5, 84);

static_assert(sizeof(fuse_open_in) == 8);
FPSIM_FIELD(fuse_open_in, flags, 0);
FPSIM_FIELD(fuse_open_in, open_flags, 4);

static_assert(sizeof(fuse_create_in) == 16);
FPSIM_FIELD(fuse_create_in, flags, 0);
FPSIM_FIELD(fuse_create_in, mode, 4);
FPSIM_FIELD(fuse_create_in, umask, 8);
FPSIM_FIELD(fuse_create_in, open_flags, 12);

static_assert(sizeof(fuse_open_out) == 16);
FPSIM_FIELD(fuse_open_out, fh, 0);
FPSIM_FIELD(fuse_open_out, open_flags, 8);
FPSIM_FIELD(fuse_open_out, backing_id, 12);

static_assert(sizeof(fuse_release_in) == 24);
FPSIM_FIELD(fuse_release_in, fh, 0);
FPSIM_FIELD(fuse_release_in, flags, 8);
FPSIM_FIELD(fuse_release_in, release_flags, 12);
FPSIM_FIELD(fuse_release_in, lock_owner, 16);

static_assert(sizeof(fuse_flush_in) == 24);
FPSIM_FIELD(fuse_flush_in, fh, 0);
FPSIM_FIELD(fuse_flush_in, unused, 8);
FPSIM_FIELD(fuse_flush_in, padding, 12);
FPSIM_FIELD(fuse_flush_in, lock_owner, 16);

static_assert(sizeof(fuse_fsync_in) == 16);
FPSIM_FIELD(fuse_fsync_in, fh, 0);
FPSIM_FIELD(fuse_fsync_in, fsync_flags, 8);
FPSIM_FIELD(fuse_fsync_in, padding, 12);

static_assert(sizeof(fuse_read_in) == 40);
FPSIM_FIELD(fuse_read_in, fh, 0);
FPSIM_FIELD(fuse_read_in, offset, 8);
FPSIM_FIELD(fuse_read_in, size, 16);
FPSIM_FIELD(fuse_read_in, read_flags, 20);
FPSIM_FIELD(fuse_read_in, lock_owner, 24);
FPSIM_FIELD(fuse_read_in, flags, 32);
FPSIM_FIELD(fuse_read_in, padding, 36);

static_assert(sizeof(fuse_write_in) == 40);
FPSIM_FIELD(fuse_write_in, fh, 0);
FPSIM_FIELD(fuse_write_in, offset, 8);
FPSIM_FIELD(fuse_write_in, size, 16);
FPSIM_FIELD(fuse_write_in, write_flags, 20);
FPSIM_FIELD(fuse_write_in, lock_owner, 24);
FPSIM_FIELD(fuse_write_in, flags, 32);
FPSIM_FIELD(fuse_write_in, padding, 36);

static_assert(sizeof(fuse_write_out) == 8);
FPSIM_FIELD(fuse_write_out, size, 0);
FPSIM_FIELD(fuse_write_out, padding, 4);

static_assert(sizeof(fuse_kstatfs) == 80);
FPSIM_FIELD(fuse_kstatfs, blocks, 0);
FPSIM_FIELD(fuse_kstatfs, bfree, 8);
FPSIM_FIELD(fuse_kstatfs, bavail, 16);
FPSIM_FIELD(fuse_kstatfs, files, 24);
FPSIM_FIELD(fuse_kstatfs, ffree, 32);
FPSIM_FIELD(fuse_kstatfs, bsize, 40);
FPSIM_FIELD(fuse_kstatfs, namelen, 44);
FPSIM_FIELD(fuse_kstatfs, frsize, 48);
FPSIM_FIELD(fuse_kstatfs, padding, 52);
FPSIM_FIELD(fuse_kstatfs, spare, 56);
static_assert(sizeof(fuse_statfs_out) == 80);
FPSIM_FIELD(fuse_statfs_out, st, 0);

static_assert(sizeof(fuse_dirent) == 24);
FPSIM_FIELD(fuse_dirent, ino, 0);
FPSIM_FIELD(fuse_dirent, off, 8);
FPSIM_FIELD(fuse_dirent, namelen, 16);
FPSIM_FIELD(fuse_dirent, type, 20);

static_assert(sizeof(fuse_backing_map) == 16);
FPSIM_FIELD(fuse_backing_map, fd, 0);
FPSIM_FIELD(fuse_backing_map, flags, 4);
FPSIM_FIELD(fuse_backing_map, padding, 8);

#undef FPSIM_FIELD

// The literal ioctl numbers are the ones the notes were verified with; cross-check them against the
// generic encoding so a typo in either place fails the build.
static_assert(kDevIocBackingOpen == _IOW(229, 1, fuse_backing_map));
static_assert(kDevIocBackingClose == _IOW(229, 2, std::uint32_t));
static_assert(kDevIocSyncInit == _IO(229, 3));

} // namespace fpsim::harness::proto
