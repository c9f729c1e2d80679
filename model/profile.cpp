#include "model/profile.h"

#include "base/assert.h"

#include <fmt/format.h>

namespace fpsim::model {
namespace {

constexpr std::array<FeatureInfo, kFeatureCount> kFeatures = {{
    {Feature::PassthroughBit7, "passthrough_bit7",
     "FOPEN_PASSTHROUGH is bit 7; without it, bit 8, and bit 7 is the seed's internal FOPEN_CACHE_IO, "
     "which fails the open",
     "6.9", "include/uapi/linux/fuse.h, 6.9; passthrough series v15 1/9"},
    {Feature::PassthroughReadWrite, "passthrough_read_write",
     "read(2) and write(2) of a passthrough file go to the backing file", "6.9",
     "fs/fuse/passthrough.c fuse_passthrough_read_iter/write_iter, 6.9; v15 5/9 kept them on FUSE"},
    {Feature::PassthroughMmap, "passthrough_mmap",
     "mmap(2) of a passthrough file maps the backing file (without it: ENODEV)", "6.9",
     "fs/fuse/passthrough.c fuse_passthrough_mmap, 6.9; v15 5/9 left it a TODO"},
    {Feature::MmapRefusedOnBackingInode, "mmap_refused_on_backing_inode",
     "mmap(2) of a file that is not passthrough fails with ENODEV while its inode has a backing "
     "file",
     "6.9", "fs/fuse/file.c fuse_file_mmap, 6.9"},
    {Feature::CacheWaitSkipsBackingInode, "cache_wait_skips_backing_inode",
     "a cached open does not wait for uncached users once the inode has a backing file: it fails",
     "6.9-rc5", "fs/fuse/iomode.c fuse_is_io_cache_wait, 6.9"},
    {Feature::NullFbCountsAsUncached, "null_fb_counts_as_uncached",
     "a parallel direct write on a passthrough inode counts as an uncached user instead of "
     "conflicting with the backing file (EBUSY)",
     "6.9-rc5", "fs/fuse/iomode.c fuse_inode_uncached_io_start, 6.9 (\"fix parallel dio write on "
                "file open in passthrough mode\")"},
    {Feature::UninstalledDevEperm, "uninstalled_dev_eperm",
     "backing ioctls on a /dev/fuse fd not yet mounted fail with EPERM (without it: EINVAL)", "6.9",
     "fs/fuse/dev.c fuse_dev_ioctl_backing_open/close, 6.9"},
    {Feature::BackingPaddingChecked, "backing_padding_checked",
     "BACKING_OPEN fails with EINVAL on a non-zero fuse_backing_map.padding", "6.9",
     "fs/fuse/passthrough.c fuse_backing_open, 6.9; observed on 6.18.44"},
    {Feature::BackingAcceptsOPath, "backing_accepts_opath",
     "BACKING_OPEN takes its fd with fget_raw, so an O_PATH fd registers (without it: EBADF)",
     "6.12", "fs/fuse/passthrough.c fuse_backing_open, 6.12 (\"allow O_PATH fd\"); observed on "
             "6.18.44"},
    {Feature::BackingRequiresRwIter, "backing_requires_rw_iter",
     "BACKING_OPEN fails with EOPNOTSUPP on a file without read_iter and write_iter (a directory)",
     "v15 (removed in 6.12)", "fs/fuse/passthrough.c fuse_backing_open, 6.9 and 6.11"},
    {Feature::BackingRejectsNonRegular, "backing_rejects_non_regular",
     "BACKING_OPEN of a directory fails with EISDIR and of any other non-regular file with EINVAL",
     "6.17, 6.12.48", "fs/fuse/backing.c fuse_backing_open, 6.18; Debian 6.12.48 changelog; "
                      "observed on 6.18.44"},
    {Feature::PassthroughOffWithWritebackCache, "passthrough_off_with_writeback_cache",
     "an INIT reply asking for passthrough and writeback cache leaves passthrough off", "6.11-rc7",
     "fs/fuse/inode.c process_init_reply, 6.11; observed on 6.18.44"},
    {Feature::CacheIoModeExclusiveDioLock, "cache_io_mode_exclusive_dio_lock",
     "a parallel direct write on an inode in cached io mode takes the inode lock exclusively "
     "(without it the test's typo sends it down the counting path)",
     "6.12", "fs/fuse/file.c fuse_dio_wr_exclusive_lock, 6.12"},
    {Feature::NoOpenKeepsArgs, "no_open_keeps_args",
     "a regular file of a server without OPEN keeps its request args, so it takes part in io "
     "modes as a cached open",
     "6.19, 6.12.64, 6.18.y", "fs/fuse/file.c fuse_file_open, 6.19 (\"fix readahead reclaim "
                              "deadlock\"); observed on 6.18.44"},
    {Feature::BackingComparedByInode, "backing_compared_by_inode",
     "an open with a second backing object conflicts only when its backing inode differs from the "
     "attached one's",
     "proposed (2026-01, \"relax backing file validation\"), not merged",
     "docs/kernel-semantics.md §4 column (d); in no released kernel"},
    {Feature::FlushTakesInodeLock, "flush_takes_inode_lock",
     "close(2) of a file that sends FLUSH takes the inode lock first (fuse_flush, to wait for "
     "writeback), so it sleeps while a write holds that lock",
     "long-standing; gone by 6.18",
     "fs/fuse/file.c fuse_flush, Debian 6.12.117 (inode_lock, fuse_sync_writes); observed on "
     "Debian 6.12.95 under qemu; 6.18.44 and 7.2's fuse_flush take no lock"},
    {Feature::BufferedReadErrorEio, "buffered_read_error_eio",
     "a buffered read whose READ fails (ENOTCONN on an aborted connection) returns EIO: folios are "
     "read through iomap, which keeps the request's error",
     "6.19 (fuse iomap buffered reads)",
     "observed on Debian 7.2.13 and 7.3-rc7 under qemu (EIO where 6.18.44 gives ENOTCONN); "
     "fs/fuse/file.c fuse_read_folio -> iomap_read_folio, 7.2"},
    {Feature::SyncInit, "sync_init",
     "FUSE_DEV_IOC_SYNC_INIT exists: INIT is answered inside mount(2) (without it: ENOTTY, and INIT "
     "is answered after mount(2) returns)",
     "6.18", "fs/fuse/dev.c fuse_dev_ioctl_sync_init, 6.18; ENOTTY on Debian 6.12.117", false},
    {Feature::FuseblkReleaseAsync, "fuseblk_release_async",
     "RELEASE at close is sent in the background on fuseblk mounts too (fpsim mounts fuse, where it "
     "always was)",
     "6.18, 6.12.54", "fs/fuse/file.c fuse_file_release, 6.18 (\"fix livelock in synchronous file "
                      "put from fuseblk workers\"); Debian 6.12.117", false},
    {Feature::FopenBit8IoUringZeroCopy, "fopen_bit8_io_uring_zero_copy",
     "FOPEN bit 8 is FOPEN_IO_URING_ZERO_COPY: accepted on an open without passthrough, and with "
     "passthrough refused (EIO) like any bit outside FOPEN_PASSTHROUGH_MASK, as before",
     "7.3", "include/uapi/linux/fuse.h and fs/fuse/iomode.c, Debian 7.3-rc7 (protocol minor 46)",
     false},
    {Feature::DirectReadWaitsForLockedFolio, "direct_read_waits_for_locked_folio",
     "a direct read of a range whose folio a held write-through WRITE keeps locked waits for the "
     "inode lock (fuse_direct_io asks filemap_range_has_writeback; without it fuse's own list of "
     "writeback-cache writes, which has none)",
     "by 6.18",
     "fs/fuse/file.c fuse_direct_io, Debian 6.12.117 (fuse_range_is_writeback); observed on "
     "6.18.44 (blocks) and on Debian 6.12.117 under qemu (returns at once)"},
}};

constexpr std::array<BaseProfileInfo, kBaseProfileCount> kBases = {{
    {BaseProfile::V15, "v15",
     "passthrough series v15 up to 5/9: open in passthrough mode; read/write still go through FUSE",
     KernelProfile::V15.features, 40},
    {BaseProfile::V6_9, "6.9", "Linux 6.9 final", KernelProfile::V6_9.features, 40},
    {BaseProfile::V6_12_0, "6.12.0", "Linux 6.12 as released, without the stable backports",
     KernelProfile::V6_12_0.features, 41},
    {BaseProfile::V6_12_117, "6.12.117",
     "Debian 13's 6.12.117 (with the 6.12.48, 6.12.54 and 6.12.64 backports)",
     KernelProfile::V6_12_117.features, 41},
    {BaseProfile::V6_18, "6.18", "Linux 6.18 (6.18.44, the kernel this project's machines run)",
     KernelProfile::V6_18.features, 45},
    {BaseProfile::V7_2, "7.2", "Debian's 7.2.13", KernelProfile::V7_2.features, 45},
    {BaseProfile::V7_3, "7.3", "Debian's 7.3-rc7 (7.3 until Debian ships the release)",
     KernelProfile::V7_3.features, 46},
}};

constexpr bool tables_in_enum_order() {
  for (std::size_t i = 0; i < kFeatures.size(); ++i)
    if (static_cast<std::size_t>(kFeatures[i].feature) != i)
      return false;
  for (std::size_t i = 0; i < kBases.size(); ++i)
    if (static_cast<std::size_t>(kBases[i].base) != i ||
        kBuiltinProfiles[i].features != kBases[i].features)
      return false;
  return true;
}
static_assert(tables_in_enum_order(), "the feature and profile tables follow their enums");

// One "+name" or "-name" term of a composed profile.
bool apply_term(KernelProfile &p, char sign, std::string_view name, std::string *error) {
  const std::optional<Feature> f = parse_feature(name);
  if (!f) {
    if (error)
      *error = fmt::format("unknown kernel feature '{}' (fpsim profiles lists them)", name);
    return false;
  }
  p.features = sign == '+' ? p.features.with(*f) : p.features.without(*f);
  return true;
}

} // namespace

const FeatureInfo &feature_info(Feature f) {
  const auto i = static_cast<std::size_t>(f);
  FPSIM_ASSERT(i < kFeatures.size(), "a Feature outside the enum");
  return kFeatures[i];
}

const std::array<FeatureInfo, kFeatureCount> &all_features() { return kFeatures; }

std::optional<Feature> parse_feature(std::string_view name) {
  for (const FeatureInfo &fi : kFeatures)
    if (fi.name == name)
      return fi.feature;
  return std::nullopt;
}

const std::array<BaseProfileInfo, kBaseProfileCount> &all_base_profiles() { return kBases; }

const BaseProfileInfo &base_profile_info(BaseProfile b) {
  const auto i = static_cast<std::size_t>(b);
  FPSIM_ASSERT(i < kBases.size(), "a BaseProfile outside the enum");
  return kBases[i];
}

std::string profile_name(const KernelProfile &p) {
  const BaseProfileInfo &base = base_profile_info(p.base);
  std::string out(base.name);
  for (const FeatureInfo &fi : kFeatures) {
    const bool in_base = base.features.has(fi.feature);
    if (p.has(fi.feature) != in_base)
      out += fmt::format("{}{}", in_base ? '-' : '+', fi.name);
  }
  return out;
}

std::string builtin_profile_names(std::string_view last_separator) {
  std::string out;
  for (std::size_t i = 0; i < kBases.size(); ++i) {
    if (i > 0)
      out += i + 1 == kBases.size() ? last_separator : std::string_view(", ");
    out += kBases[i].name;
  }
  return out;
}

std::optional<KernelProfile> parse_profile(std::string_view text, std::string *error) {
  const std::size_t cut = text.find_first_of("+-");
  const std::string_view base_name = text.substr(0, cut);
  std::optional<KernelProfile> p;
  for (const BaseProfileInfo &b : kBases)
    if (b.name == base_name)
      p = KernelProfile{b.base, b.features};
  if (!p) {
    if (error)
      *error = fmt::format("unknown kernel profile '{}' (expected {}, optionally followed by "
                           "+FEATURE or -FEATURE)",
                           text, builtin_profile_names());
    return std::nullopt;
  }
  std::size_t at = cut;
  while (at != std::string_view::npos) {
    const char sign = text[at];
    const std::size_t next = text.find_first_of("+-", at + 1);
    if (!apply_term(*p, sign, text.substr(at + 1, next == std::string_view::npos ? next : next - at - 1),
                    error))
      return std::nullopt;
    at = next;
  }
  return p;
}

} // namespace fpsim::model
