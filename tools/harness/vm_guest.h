// The guest's initramfs for `fpsim-harness vm`: busybox, the init script (guest/init.sh), this
// harness binary with its shared libraries, and the traces, each at its host path, so the guest
// runs `fpsim-harness SUBCOMMAND ARGS...` in the host's working directory and its report names the
// traces as the host's would. The archive is built by Debian's cpio into a memfd: while a guest
// runs, nothing of it is on disk (the staging directory is removed as soon as cpio is done).
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace fpsim::harness::vm {

struct GuestPlan {
  std::string cwd;                       // the guest's working directory: the host's
  std::vector<std::string> harness_args; // SUBCOMMAND ARGS... as the guest's harness gets them
  std::vector<std::string> host_paths;   // files and directories (their *.trace) to carry
};

// Lines the guest's init writes on the harness's serial port around its output.
inline constexpr const char *kInitMarker = "FPSIM-VM-INIT ";
inline constexpr const char *kExitMarker = "FPSIM-VM-EXIT ";

// The initramfs every kernel boots (a memfd, newc), or -1 with *why.
int build_base_initramfs(const GuestPlan &plan, const std::function<bool()> &stop, std::string *why);

// `base` with fuse.ko appended as /fuse.ko when `fuse_module` is set (a second archive: the kernel
// unpacks concatenated archives in turn). A new memfd, or -1 with *why.
int initramfs_for(int base, const std::string &fuse_module, const std::function<bool()> &stop, std::string *why);

} // namespace fpsim::harness::vm
