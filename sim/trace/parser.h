// Trace format v1 parser. Every error is a value with file:line:col; nothing is replayed from a
// trace that does not parse.
#pragma once

#include "sim/trace/statement.h"

#include <cstddef>
#include <string>
#include <string_view>
#include <variant>

namespace fpsim::sim {

// Input bounds (README "Limits"). What parsing and replaying a trace allocates grows with these,
// never with the input alone, and each one that a trace exceeds is its own parse error.
inline constexpr std::size_t kMaxTraceBytes = std::size_t{64} << 20; // a trace file or text
inline constexpr std::size_t kMaxLineBytes = 4096;  // one line, without its line end
inline constexpr std::size_t kMaxLines = 1'048'576; // blank and comment lines included
inline constexpr std::size_t kMaxStatements = 1'000'000; // checks included
inline constexpr std::size_t kMaxNameBytes = 64;       // the grammar's NAME
// Per kind: handles, backing names, mappings, writes, mount file names, backing file names.
// Inodes, files, fbs and mappings are made through names, so this bounds them; calls that
// sleep and unnamed writes are bounded by kMaxStatements. Enough for a million-statement churn
// of open, read, write and close, each open with its own handle.
inline constexpr std::size_t kMaxNamesPerKind = 262'144;

struct ParseError {
  std::string path;
  int line = 0;
  int col = 0;
  std::string message;
  std::string str() const; // "path:line:col: message"
};

using ParseResult = std::variant<Trace, ParseError>;

// The grammar's NAME: [A-Za-z][A-Za-z0-9_.-]{0,63}.
bool valid_name(std::string_view s);

ParseResult parse_trace(std::string_view text, const std::string &path);
// Reads and parses a file; an unreadable file is a ParseError at line 0. A file larger than
// kMaxTraceBytes is refused by its size, before it is read.
ParseResult load_trace(const std::string &path);

} // namespace fpsim::sim
