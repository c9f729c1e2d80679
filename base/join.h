// The one way fpsim joins words in the texts it prints.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace fpsim {

inline std::string join(const std::vector<std::string> &v, std::string_view sep = ", ") {
  std::string s;
  for (const auto &x : v) {
    if (!s.empty())
      s += sep;
    s += x;
  }
  return s;
}

} // namespace fpsim
