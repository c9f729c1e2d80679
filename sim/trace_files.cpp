#include "sim/trace_files.h"

#include "sim/parser.h"

#include <algorithm>
#include <filesystem>

namespace fpsim::sim {

namespace fs = std::filesystem;

std::variant<std::vector<Trace>, LoadFailure> load_traces(const std::vector<std::string> &paths) {
  std::vector<std::string> files;
  for (const auto &p : paths) {
    std::error_code ec;
    const auto st = fs::status(p, ec);
    if (ec || !fs::exists(st))
      return LoadFailure{false, p + ": cannot open: No such file or directory"};
    if (!fs::is_directory(st)) {
      files.push_back(p);
      continue;
    }
    std::vector<std::string> found;
    for (auto it = fs::recursive_directory_iterator(p, ec); !ec && it != fs::end(it);
         it.increment(ec))
      if (it->is_regular_file() && it->path().extension() == ".trace")
        found.push_back(it->path().string());
    if (ec)
      return LoadFailure{false, p + ": cannot read directory: " + ec.message()};
    std::sort(found.begin(), found.end());
    files.insert(files.end(), found.begin(), found.end());
  }
  if (files.empty())
    return LoadFailure{true, "no *.trace files found"};
  std::vector<Trace> traces;
  for (const auto &f : files) {
    ParseResult r = load_trace(f);
    if (auto *e = std::get_if<ParseError>(&r))
      return LoadFailure{false, e->str()};
    traces.push_back(std::move(std::get<Trace>(r)));
  }
  return traces;
}

} // namespace fpsim::sim
