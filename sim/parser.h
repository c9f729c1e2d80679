// Trace format v1 parser. Every error is a value with file:line:col; nothing is replayed from a
// trace that does not parse.
#pragma once

#include "sim/statement.h"

#include <string>
#include <string_view>
#include <variant>

namespace fpsim::sim {

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
// Reads and parses a file; an unreadable file is a ParseError at line 0.
ParseResult load_trace(const std::string &path);

} // namespace fpsim::sim
