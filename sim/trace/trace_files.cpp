#include "sim/trace/trace_files.h"

#include "sim/trace/parser.h"

#include <algorithm>
#include <filesystem>
#include <fmt/format.h>

namespace fpsim::sim {

namespace fs = std::filesystem;

namespace {

LoadFailure too_many_traces(const std::string &file) {
  return LoadFailure{false, fmt::format("{}:1:1: more than {} traces in one run: at most {} trace "
                                        "files per run",
                                        file, kMaxTracesPerRun, kMaxTracesPerRun)};
}

} // namespace

std::variant<std::vector<Trace>, LoadFailure> load_traces(const std::vector<std::string> &paths) {
  std::vector<std::string> files;
  for (const auto &p : paths) {
    std::error_code ec;
    const auto st = fs::status(p, ec);
    if (ec || !fs::exists(st))
      return LoadFailure{false, p + ": cannot open: No such file or directory"};
    if (!fs::is_directory(st)) {
      files.push_back(p);
      if (files.size() > kMaxTracesPerRun)
        return too_many_traces(p);
      continue;
    }
    std::vector<std::string> found;
    for (auto it = fs::recursive_directory_iterator(p, ec); !ec && it != fs::end(it);
         it.increment(ec))
      if (it->is_regular_file() && it->path().extension() == ".trace") {
        found.push_back(it->path().string());
        // Stops the walk too: a huge tree is refused without listing all of it.
        if (files.size() + found.size() > kMaxTracesPerRun)
          return too_many_traces(found.back());
      }
    if (ec)
      return LoadFailure{false, p + ": cannot read directory: " + ec.message()};
    std::sort(found.begin(), found.end());
    files.insert(files.end(), found.begin(), found.end());
  }
  if (files.empty())
    return LoadFailure{true, "no *.trace files found"};
  // Every trace is held in memory until the run starts, so the run's total is bounded by the
  // files' sizes before any is read.
  std::uintmax_t bytes = 0;
  for (const auto &f : files) {
    std::error_code ec;
    const std::uintmax_t size = fs::is_regular_file(f, ec) ? fs::file_size(f, ec) : 0;
    if (ec)
      continue; // load_trace reports what is wrong with it
    bytes += size;
    if (bytes > kMaxBytesPerRun)
      return LoadFailure{false, fmt::format("{}:1:1: the traces of this run add up to more than "
                                            "{} bytes: at most {} MiB of traces per run",
                                            f, kMaxBytesPerRun, kMaxBytesPerRun >> 20)};
  }
  std::vector<Trace> traces;
  std::size_t lines = 0;
  for (const auto &f : files) {
    ParseResult r = load_trace(f);
    if (auto *e = std::get_if<ParseError>(&r))
      return LoadFailure{false, e->str()};
    Trace &t = std::get<Trace>(r);
    if (lines + t.source_lines.size() > kMaxLinesPerRun)
      return LoadFailure{false, fmt::format("{}:{}:1: the traces of this run have more than {} "
                                            "lines: at most {} lines per run",
                                            f, kMaxLinesPerRun - lines + 1, kMaxLinesPerRun,
                                            kMaxLinesPerRun)};
    lines += t.source_lines.size();
    traces.push_back(std::move(t));
  }
  return traces;
}

} // namespace fpsim::sim
