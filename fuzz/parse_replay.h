// Untrusted bytes through everything `fpsim replay` does with a trace file: parse, replay on the
// simulator (invariant checker after every step, teardown, drain check), the text of each
// failure and --annotate's rewrite; and `fpsim explain` when the trace is small. The libFuzzer
// target (fuzz/parse_replay_fuzzer.cpp) and the fuzz regression test share it, so an input the
// fuzzer found runs the same code in the test.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace fpsim::sim {

// explain keeps the state tables of every step, so its cost is steps x live objects: beyond this
// many statements the fuzzer would spend its time there instead of finding new paths.
inline constexpr std::size_t kFuzzExplainMaxStatements = 512;

struct ParseReplayOutcome {
  bool parsed = false;
  std::string parse_error; // "path:line:col: message" when it did not parse
  bool passed = false;     // replay's verdict
  std::size_t steps = 0;   // replayed statements, teardown included
  std::size_t failures = 0;
  std::size_t report_bytes = 0; // the failure lines `fpsim replay` would print
  bool explained = false;
  // Whether explain reached the same verdict as replay (true when not explained).
  bool explain_agrees = true;
  // Whether --annotate's rewrite parses again with the same statements (true when it cannot be
  // expected to: a line that annotation would lengthen past kMaxLineBytes).
  bool annotation_reparses = true;
};

ParseReplayOutcome parse_and_replay(std::string_view bytes,
                                    const std::string &path = "fuzz-input.trace");

} // namespace fpsim::sim
