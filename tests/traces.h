// What the tests share to get at traces: the corpus, and texts or files that must parse.
#pragma once

#include "sim/trace/parser.h"

#include <algorithm>
#include <filesystem>
#include <gtest/gtest.h>
#include <string>
#include <variant>
#include <vector>

namespace fpsim::test {

// The *.trace files below dir, sorted; none if dir is not a directory.
inline std::vector<std::string> traces_in(const std::string &dir) {
  std::vector<std::string> out;
  if (!std::filesystem::is_directory(dir))
    return out;
  for (const auto &e : std::filesystem::recursive_directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ".trace")
      out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

inline std::vector<std::string> corpus() { return traces_in(FPSIM_SOURCE_DIR "/traces"); }

// A parse error fails the test.
inline sim::Trace parse_ok(const std::string &text, const std::string &path = "inline.trace") {
  sim::ParseResult p = sim::parse_trace(text, path);
  if (auto *e = std::get_if<sim::ParseError>(&p))
    ADD_FAILURE() << e->str();
  return std::get<sim::Trace>(std::move(p));
}

inline sim::Trace load_ok(const std::string &path) {
  sim::ParseResult p = sim::load_trace(path);
  if (auto *e = std::get_if<sim::ParseError>(&p))
    ADD_FAILURE() << e->str();
  return std::get<sim::Trace>(std::move(p));
}

} // namespace fpsim::test
