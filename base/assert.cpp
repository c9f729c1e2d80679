#include "base/assert.h"

#include <cstdio>
#include <cstdlib>

namespace fpsim {

void assert_fail(const char *expr, const char *file, int line, const char *what) {
  std::fprintf(stderr, "fpsim: internal error at %s:%d: %s: %s\n", file, line, expr, what);
  std::fflush(stderr);
  std::abort();
}

} // namespace fpsim
