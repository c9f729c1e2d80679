// fpsim-harness vm --kernel KERNEL [--kernel KERNEL ...] [--timeout S] -- SUBCOMMAND ARGS...
//
// Boots each kernel under qemu (KVM when it works here, else TCG) with an initramfs carrying this
// harness and the traces (vm_guest.h), runs `fpsim-harness SUBCOMMAND ARGS...` inside, and reports
// per kernel: the harness's own report, as on the host, then which package ran, how it booted and
// how long boot and run took. KERNEL is a Debian kernel version (7.2.13, 6.12.117, 7.3-rc7, or a
// line: 7.3), a .deb, or a vmlinuz (vm_kernels.h).
//
// Exit codes, as crosscheck's: 0 every kernel that ran agreed (kernels that cannot run, e.g. no
// SYNC_INIT, are reported as skipped); 1 a disagreement, a guest that hung (killed at --timeout),
// crashed or failed; 2 usage; 77 nothing could run (no qemu, no kernel could be had, every kernel
// skipped), with the reason on one line; 130/143 interrupted. Whatever happens, no qemu process,
// temporary directory or mount is left on the host.
#pragma once

#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace fpsim::harness::vm {

struct Options {
  std::vector<std::string> kernels;
  int timeout_s = 3600;              // for one guest: boot and run
  std::vector<std::string> command;  // SUBCOMMAND ARGS...
  std::string accel = "auto";        // auto (kvm, falling back to tcg), kvm, tcg
  int memory_mb = 1024;
  int deadline_ms = 0;               // --deadline-ms for the guest's harness; 0: its own default
};

// Registers the subcommand; `opts` is filled when it is parsed.
CLI::App *add_subcommand(CLI::App &app, Options *opts);

// Runs it: the exit code above.
int run(const Options &opts);

} // namespace fpsim::harness::vm
