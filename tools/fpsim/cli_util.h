// Option parsing shared by the fpsim subcommands.
#pragma once

#include "model/fuse.h"

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <cstdio>
#include <cstdint>
#include <optional>
#include <fmt/format.h>
#include <string>
#include <string_view>

namespace fpsim::tools {

template <typename T> bool parse_number(std::string_view s, T *out) {
  if (s.empty())
    return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size();
}

// "I/N" with 0 <= I < N.
template <typename T> bool parse_shard(const std::string &s, T *i, T *n) {
  const std::size_t slash = s.find('/');
  if (slash == std::string::npos)
    return false;
  return parse_number(std::string_view(s).substr(0, slash), i) &&
         parse_number(std::string_view(s).substr(slash + 1), n) && *n >= 1 && *i >= 0 && *i < *n;
}

// "none, parallel-write-sets-iomode, ...": for usage messages.
inline std::string mutant_list() {
  std::string s = "none";
  for (model::Mutant m : model::all_mutants())
    s += fmt::format(", {}", model::mutant_name(m));
  return s;
}

// A --kernel argument: a built-in profile, optionally composed (6.18+FEATURE-FEATURE). On an
// unknown name prints "PROGRAM: why" on `err` and returns nothing.
inline std::optional<model::KernelProfile> profile_arg(std::string_view program,
                                                       std::string_view text, std::FILE *err) {
  std::string why;
  std::optional<model::KernelProfile> p = model::parse_profile(text, &why);
  if (!p)
    fmt::print(err, "{}: {}\n", program, why);
  return p;
}

// A --mutant argument. On an unknown name prints "PROGRAM: unknown mutant ..." on stderr and
// returns nothing.
inline std::optional<model::Mutant> mutant_arg(std::string_view program, const std::string &name) {
  const std::optional<model::Mutant> m = model::parse_mutant(name);
  if (!m)
    fmt::print(stderr, "{}: unknown mutant '{}' (expected one of: {})\n", program, name,
               mutant_list());
  return m;
}

// A --shard argument, empty for none. False, said on stderr as "PROGRAM: bad --shard ...", when
// it is not I/N.
template <typename T> bool shard_arg(std::string_view program, const std::string &s, T *i, T *n) {
  if (s.empty() || parse_shard(s, i, n))
    return true;
  fmt::print(stderr, "{}: bad --shard '{}' (expected I/N with 0 <= I < N)\n", program, s);
  return false;
}

// Writes to PATH + suffix and renames, so an interrupted run never leaves half a trace. The
// error says what failed.
inline std::optional<std::string> write_atomically(const std::string &path, const std::string &text,
                                            const std::string &suffix) {
  const std::string tmp = path + suffix;
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.close();
    if (!out) {
      const std::string why = fmt::format("cannot write {}: {}", tmp, std::strerror(errno));
      std::remove(tmp.c_str());
      return why;
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return fmt::format("cannot rename {} to {}", tmp, path);
  }
  return std::nullopt;
}

inline double rate(double n, double seconds) { return seconds > 0 ? n / seconds : 0; }

} // namespace fpsim::tools
