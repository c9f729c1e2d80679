// libFuzzer target: arbitrary bytes as a trace file, through parse -> replay -> annotate ->
// explain (fuzz/parse_replay.h). ASan and UBSan catch memory errors, undefined behaviour and
// leaks; libFuzzer's -timeout and -rss_limit_mb catch hangs and unbounded growth. The two
// properties below are checked here, not only by the sanitizers, because breaking them is
// silent: --annotate would write back a trace that no longer parses, or explain would tell a
// different verdict than replay.
#include "fuzz/parse_replay.h"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char *>(data), size);
  const fpsim::sim::ParseReplayOutcome o = fpsim::sim::parse_and_replay(bytes);
  if (!o.annotation_reparses) {
    std::fputs("parse_replay_fuzzer: the --annotate rewrite of this trace does not parse back\n",
               stderr);
    std::abort();
  }
  if (!o.explain_agrees) {
    std::fputs("parse_replay_fuzzer: explain and replay disagree on this trace\n", stderr);
    std::abort();
  }
  return 0;
}
