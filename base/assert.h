// fpsim's own invariants: a broken one is a bug in fpsim, never in the kernel or in the user's
// input, so it stops the program with a message naming what broke, in every build (NDEBUG does
// not turn it off). The kernel's WARN_ONs are not this: the model records them (Model::warn) and
// the checker reports them as findings. User errors stay values.
#pragma once

namespace fpsim {

// Prints "fpsim: internal error at FILE:LINE: EXPR: WHAT" on stderr and aborts.
[[noreturn]] void assert_fail(const char *expr, const char *file, int line, const char *what);

} // namespace fpsim

// FPSIM_ASSERT(cond, "what must hold"): checked in every build.
#define FPSIM_ASSERT(cond, what)                                                                   \
  ((cond) ? static_cast<void>(0) : ::fpsim::assert_fail(#cond, __FILE__, __LINE__, what))

// A path that a correct program never reaches (the value that got there is named in `what`).
#define FPSIM_UNREACHABLE(what) ::fpsim::assert_fail("unreachable", __FILE__, __LINE__, what)
