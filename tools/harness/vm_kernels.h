// Kernels for `fpsim-harness vm`: a Debian kernel package version (resolved and fetched through a
// private apt configuration into a cache, never the system's sources), a .deb, or a vmlinuz.
//
// The cache ($XDG_CACHE_HOME/fpsim/kernels, default ~/.cache/fpsim/kernels) holds apt/ (the
// private sources.list, lists and apt cache) and one directory per package version with what a
// guest needs: vmlinuz, config when the package has one, and fuse.ko (uncompressed) when
// CONFIG_FUSE_FS=m. A directory is used only once its "complete" file exists.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace fpsim::harness::vm {

struct KernelImage {
  std::string request;     // as given on the command line
  std::string package;     // "linux-binary-7.2.13+deb14-amd64 7.2.13-1", or the path given
  std::string vmlinuz;
  std::string fuse_module; // uncompressed fuse.ko to insmod; empty when FUSE is built in (or unknown)
  std::string fuse_config; // "CONFIG_FUSE_FS=y", "=m", or "unknown (no config)"
  bool from_cache = false;
  std::string note;        // e.g. a cached kernel Debian no longer has
  std::uint64_t download_bytes = 0;
  double download_seconds = 0;
};

// What the request names: a version (7.2.13, 6.12.117, 7.3-rc7, or a line: 7.3, 6.12), a .deb or
// a vmlinuz path. False: none of these (a usage error, with *why).
bool valid_request(const std::string &request, std::string *why);

// A version to resolve through apt (rather than a file).
bool is_version(const std::string &request);

// Resolves and fetches (or finds in the cache) the kernel. nullopt with *why (one line) when it
// cannot be had: the caller reports the kernel as skipped. `stop` is polled while tools run.
std::optional<KernelImage> obtain_kernel(const std::string &request, const std::function<bool()> &stop,
                                         std::string *why);

// The cache directory (for messages and tests).
std::string cache_root();

} // namespace fpsim::harness::vm
