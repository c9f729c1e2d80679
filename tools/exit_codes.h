// The exit codes of fpsim, fpsim-harness and fuse-selftest, as the README's tables give them;
// the test scripts and ctest (SKIP_RETURN_CODE) compare with the same numbers.
#pragma once

namespace fpsim {

// Every trace passed; the kernel agreed with the simulator; no counterexample.
inline constexpr int kExitOk = 0;
// A mismatch, failed check, violation, invalid statement, leak, disagreement, counterexample
// or surviving mutant, or the harness itself failed.
inline constexpr int kExitFailed = 1;
// A usage error, an unreadable file or a trace that does not parse: nothing was run.
inline constexpr int kExitUsage = 2;
// fpsim-harness: a fault injected with FPSIM_HARNESS_FAULT fired and was contained.
inline constexpr int kExitFault = 3;
// fpsim-harness, fuse-selftest: this machine cannot run it (not root, no /dev/fuse, no
// passthrough); automake's "skipped", which ctest is told to read as such.
inline constexpr int kExitSkip = 77;
// Interrupted by signal N: 128 + N (130 for SIGINT, 143 for SIGTERM), as a shell reports it.
inline constexpr int kExitSignalBase = 128;

} // namespace fpsim
