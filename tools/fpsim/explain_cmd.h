// `fpsim explain`: replays traces like `fpsim replay` and says, for every statement, which
// kernel rule decided its outcome and why, with the state after each step (sim/teach/explain.h).
#pragma once

#include "sim/teach/explain.h"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>
#include <vector>

namespace fpsim::tools {

struct ExplainArgs {
  std::vector<std::string> paths;
  std::string kernel;
  bool json = false;
  std::string color = "auto"; // auto (a terminal, and NO_COLOR unset), always, never
  std::FILE *out = stdout;    // tests redirect these
  std::FILE *err = stderr;
};

CLI::App *add_explain_command(CLI::App &app, ExplainArgs &args);
// Exit codes: 0 every trace explained and passed, 1 a trace failed its expectations (it is still
// explained), 2 usage, unreadable file or parse error (file:line:col: message).
int run_explain(const ExplainArgs &args);

// The text report of one trace: colour (ANSI) when color is set; why-lines wrapped at width
// columns when width > 0, one line each otherwise.
std::string render_explanation_text(const sim::Explanation &e, bool color, int width);
// One JSON object (one line): {path, kernel, title, passed, failures, steps: [{line, statement,
// outcome, rule, why, effects, state, ...}]}.
std::string render_explanation_json(const sim::Explanation &e);

} // namespace fpsim::tools
