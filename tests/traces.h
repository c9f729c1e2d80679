// What the tests share to get at traces: the corpus, texts or files that must parse, texts that
// must not (at a line:col, with a message), substrings, and a temporary directory.
#pragma once

#include "sim/trace/parser.h"

#include <algorithm>
#include <filesystem>
#include <gtest/gtest.h>
#include <stdlib.h>
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

// Text fails to parse (as path) at line:col, as one line "path:line:col: message" whose message
// contains fragment.
inline void expect_error(const std::string &text, int line, int col, const std::string &fragment,
                         const std::string &path = "bad.trace") {
  SCOPED_TRACE("input:\n" + (text.size() > 2000 ? text.substr(0, 2000) + "..." : text));
  sim::ParseResult r = sim::parse_trace(text, path);
  auto *e = std::get_if<sim::ParseError>(&r);
  ASSERT_NE(e, nullptr) << "parsed, but expected an error at " << line << ":" << col << " ("
                        << fragment << ")";
  EXPECT_EQ(e->path, path);
  EXPECT_EQ(e->line, line) << e->str();
  EXPECT_EQ(e->col, col) << e->str();
  EXPECT_NE(e->message.find(fragment), std::string::npos)
      << "message '" << e->message << "' lacks '" << fragment << "'";
  const std::string prefix = path + ":" + std::to_string(line) + ":" + std::to_string(col) + ": ";
  EXPECT_EQ(e->str().rfind(prefix, 0), 0u) << e->str();
  EXPECT_EQ(e->str().find('\n'), std::string::npos) << "a parse error is one line";
}

// EXPECT_TRUE(contains(s, what)) says what s was when it fails.
inline ::testing::AssertionResult contains(const std::string &s, const std::string &what) {
  if (s.find(what) != std::string::npos)
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << what << "' not in:\n" << s;
}

// The Names tables, table by table.
inline void expect_same_names(const sim::Names &a, const sim::Names &b) {
  EXPECT_EQ(a.mount_files, b.mount_files);
  EXPECT_EQ(a.mount_file_created, b.mount_file_created);
  EXPECT_EQ(a.backing_files, b.backing_files);
  EXPECT_EQ(a.backings, b.backings);
  EXPECT_EQ(a.handles, b.handles);
  EXPECT_EQ(a.mappings, b.mappings);
  EXPECT_EQ(a.writes, b.writes);
}

// A fresh directory under /tmp (mkdtemp), removed with what it holds when this goes.
class TempDir {
public:
  TempDir() {
    char tmpl[] = "/tmp/fpsim-test-XXXXXX";
    if (mkdtemp(tmpl) == nullptr)
      ADD_FAILURE() << "mkdtemp failed";
    else
      path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty())
      std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir &) = delete;
  TempDir &operator=(const TempDir &) = delete;
  const std::filesystem::path &path() const { return path_; }

private:
  std::filesystem::path path_;
};

} // namespace fpsim::test
