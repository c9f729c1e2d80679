// Kernel profiles: the per-version differences of kernel-semantics.md §4.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace fpsim::model {

enum class KernelProfile : std::uint8_t {
  V15,   // passthrough series v15 up to 5/9: the seed
  V6_9,  // Linux 6.9 final (with the 6.9-rc5 io-mode fixes)
  V6_18, // Linux 6.18: what the machines this project runs on have
};

inline constexpr KernelProfile kDefaultProfile = KernelProfile::V6_18;

std::string_view profile_name(KernelProfile p);
std::optional<KernelProfile> parse_profile(std::string_view s);

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
constexpr std::uint32_t fopen_passthrough(KernelProfile p) {
  return p == KernelProfile::V15 ? (1u << 8) : (1u << 7);
}
inline constexpr std::uint32_t kV15FopenCacheIo = 1u << 7;

// The flags that may accompany FOPEN_PASSTHROUGH (FOPEN_PASSTHROUGH_MASK in iomode.c).
constexpr std::uint32_t fopen_passthrough_mask(KernelProfile p) {
  return fopen_passthrough(p) | fopen::DIRECT_IO | fopen::PARALLEL_DIRECT_WRITES |
         fopen::NOFLUSH;
}

// FILESYSTEM_MAX_STACK_DEPTH in include/linux/fs.h.
inline constexpr int kFilesystemMaxStackDepth = 2;

} // namespace fpsim::model
