// Kernel profiles as sets of named features. Every behaviour that differs between the kernels
// fpsim models is one Feature; a profile is a name and the features it has. The model tests
// features, never a profile's name (docs/kernel-versions.md has the table with the evidence for
// each feature; `fpsim profiles` prints it).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace fpsim::model {

enum class Feature : std::uint8_t {
  PassthroughBit7,
  PassthroughReadWrite,
  PassthroughMmap,
  MmapRefusedOnBackingInode,
  CacheWaitSkipsBackingInode,
  NullFbCountsAsUncached,
  UninstalledDevEperm,
  BackingPaddingChecked,
  BackingAcceptsOPath,
  BackingRequiresRwIter,
  BackingRejectsNonRegular,
  PassthroughOffWithWritebackCache,
  CacheIoModeExclusiveDioLock,
  NoOpenKeepsArgs,
  BackingComparedByInode,
  FlushTakesInodeLock,
  BufferedReadErrorEio,
  SyncInit,
  FuseblkReleaseAsync,
  FopenBit8IoUringZeroCopy,
  DirectReadWaitsForLockedFolio,
};

inline constexpr std::size_t kFeatureCount =
    static_cast<std::size_t>(Feature::DirectReadWaitsForLockedFolio) + 1;

// What a feature is and where it comes from, for `fpsim profiles` and the docs.
struct FeatureInfo {
  Feature feature;
  std::string_view name;     // as written after + or - in a profile: snake_case
  std::string_view behaviour; // what the kernel does when the feature is present
  std::string_view origin;    // the kernel release (or proposal) that brought it
  std::string_view evidence;  // the source read, or the real-kernel run that showed it
  // Whether a trace's outcome can depend on it. A feature that cannot (fuseblk mounts, a FOPEN
  // bit that is refused with passthrough as before, how the harness mounts) still tells kernels
  // apart for `fpsim-harness probe` and the profile table.
  bool in_traces = true;
};

const FeatureInfo &feature_info(Feature f);
const std::array<FeatureInfo, kFeatureCount> &all_features();
std::optional<Feature> parse_feature(std::string_view name);

class FeatureSet {
public:
  constexpr FeatureSet() = default;
  constexpr FeatureSet(std::initializer_list<Feature> fs) {
    for (Feature f : fs)
      bits_ |= bit(f);
  }
  constexpr bool has(Feature f) const { return (bits_ & bit(f)) != 0; }
  constexpr FeatureSet with(Feature f) const { return FeatureSet(bits_ | bit(f)); }
  constexpr FeatureSet without(Feature f) const { return FeatureSet(bits_ & ~bit(f)); }
  constexpr std::uint64_t bits() const { return bits_; }
  friend constexpr bool operator==(FeatureSet, FeatureSet) = default;

private:
  constexpr explicit FeatureSet(std::uint64_t b) : bits_(b) {}
  static constexpr std::uint64_t bit(Feature f) { return std::uint64_t{1} << static_cast<unsigned>(f); }
  std::uint64_t bits_ = 0;
};
static_assert(kFeatureCount <= 64, "FeatureSet holds at most 64 features");

// The profiles fpsim ships, in the order `fpsim profiles` lists them.
enum class BaseProfile : std::uint8_t { V15, V6_9, V6_12_0, V6_12_117, V6_18, V7_2, V7_3 };
inline constexpr std::size_t kBaseProfileCount = 7;

// A built-in profile, or one composed from it on the command line (`6.18+feature-feature`).
struct KernelProfile {
  BaseProfile base = BaseProfile::V6_18;
  FeatureSet features;

  constexpr bool has(Feature f) const { return features.has(f); }
  friend constexpr bool operator==(const KernelProfile &, const KernelProfile &) = default;

  static const KernelProfile V15;
  static const KernelProfile V6_9;
  static const KernelProfile V6_12_0;
  static const KernelProfile V6_12_117;
  static const KernelProfile V6_18;
  static const KernelProfile V7_2;
  static const KernelProfile V7_3;
};

struct BaseProfileInfo {
  BaseProfile base;
  std::string_view name;
  std::string_view what;
  FeatureSet features;
  int protocol_minor; // FUSE_KERNEL_MINOR_VERSION: what the kernel's INIT request says
};
const std::array<BaseProfileInfo, kBaseProfileCount> &all_base_profiles();
const BaseProfileInfo &base_profile_info(BaseProfile b);

// Each profile is its predecessor plus or minus what changed (docs/kernel-versions.md §2).
inline constexpr KernelProfile KernelProfile::V15{
    BaseProfile::V15, {Feature::BackingRequiresRwIter, Feature::FlushTakesInodeLock}};
inline constexpr KernelProfile KernelProfile::V6_9{
    BaseProfile::V6_9, KernelProfile::V15.features.with(Feature::PassthroughBit7)
                           .with(Feature::PassthroughReadWrite)
                           .with(Feature::PassthroughMmap)
                           .with(Feature::MmapRefusedOnBackingInode)
                           .with(Feature::CacheWaitSkipsBackingInode)
                           .with(Feature::NullFbCountsAsUncached)
                           .with(Feature::UninstalledDevEperm)
                           .with(Feature::BackingPaddingChecked)};
inline constexpr KernelProfile KernelProfile::V6_12_0{
    BaseProfile::V6_12_0, KernelProfile::V6_9.features.without(Feature::BackingRequiresRwIter)
                              .with(Feature::BackingAcceptsOPath)
                              .with(Feature::PassthroughOffWithWritebackCache)
                              .with(Feature::CacheIoModeExclusiveDioLock)};
inline constexpr KernelProfile KernelProfile::V6_12_117{
    BaseProfile::V6_12_117, KernelProfile::V6_12_0.features.with(Feature::BackingRejectsNonRegular)
                                .with(Feature::FuseblkReleaseAsync)
                                .with(Feature::NoOpenKeepsArgs)};
inline constexpr KernelProfile KernelProfile::V6_18{
    BaseProfile::V6_18, KernelProfile::V6_12_117.features.without(Feature::FlushTakesInodeLock)
                            .with(Feature::SyncInit)
                            .with(Feature::DirectReadWaitsForLockedFolio)};
inline constexpr KernelProfile KernelProfile::V7_2{
    BaseProfile::V7_2, KernelProfile::V6_18.features.with(Feature::BufferedReadErrorEio)};
inline constexpr KernelProfile KernelProfile::V7_3{
    BaseProfile::V7_3, KernelProfile::V7_2.features.with(Feature::FopenBit8IoUringZeroCopy)};

inline constexpr KernelProfile kDefaultProfile = KernelProfile::V6_18;
inline constexpr std::array<KernelProfile, kBaseProfileCount> kBuiltinProfiles = {
    KernelProfile::V15,  KernelProfile::V6_9, KernelProfile::V6_12_0, KernelProfile::V6_12_117,
    KernelProfile::V6_18, KernelProfile::V7_2, KernelProfile::V7_3};

// The built-in profile's name, then "+feature" for each feature added to it and "-feature" for
// each removed, in feature order: what parse_profile reads back.
std::string profile_name(const KernelProfile &p);

// "6.18", "6.18+backing_compared_by_inode", "6.9-passthrough_mmap+backing_accepts_o_path". On an
// unknown name, *error says which part and what is accepted.
std::optional<KernelProfile> parse_profile(std::string_view text, std::string *error = nullptr);

// "v15, 6.9 or 6.18": the built-in names, for messages.
std::string builtin_profile_names(std::string_view last_separator = " or ");

// FOPEN_* bits as the server sends them in fuse_open_out.open_flags.
namespace fopen {
inline constexpr std::uint32_t DIRECT_IO = 1u << 0;
inline constexpr std::uint32_t KEEP_CACHE = 1u << 1;
inline constexpr std::uint32_t NONSEEKABLE = 1u << 2;
inline constexpr std::uint32_t CACHE_DIR = 1u << 3;
inline constexpr std::uint32_t STREAM = 1u << 4;
inline constexpr std::uint32_t NOFLUSH = 1u << 5;
inline constexpr std::uint32_t PARALLEL_DIRECT_WRITES = 1u << 6;
} // namespace fopen

// The seed put FOPEN_PASSTHROUGH at bit 8 and kept bit 7 as the kernel-internal FOPEN_CACHE_IO;
// 6.9 dropped FOPEN_CACHE_IO and moved FOPEN_PASSTHROUGH to bit 7.
constexpr std::uint32_t fopen_passthrough(const KernelProfile &p) {
  return p.has(Feature::PassthroughBit7) ? (1u << 7) : (1u << 8);
}
inline constexpr std::uint32_t kV15FopenCacheIo = 1u << 7;

// The seed's internal FOPEN_CACHE_IO, a bit a server must not send, exists without bit 7.
constexpr bool fopen_cache_io_forbidden(const KernelProfile &p, std::uint32_t open_flags) {
  return !p.has(Feature::PassthroughBit7) && (open_flags & kV15FopenCacheIo);
}

// The flags that may accompany FOPEN_PASSTHROUGH (FOPEN_PASSTHROUGH_MASK in iomode.c).
constexpr std::uint32_t fopen_passthrough_mask(const KernelProfile &p) {
  return fopen_passthrough(p) | fopen::DIRECT_IO | fopen::PARALLEL_DIRECT_WRITES |
         fopen::NOFLUSH;
}

// FILESYSTEM_MAX_STACK_DEPTH in include/linux/fs.h.
inline constexpr int kFilesystemMaxStackDepth = 2;

} // namespace fpsim::model
