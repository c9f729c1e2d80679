#pragma once

#include <string>

namespace fpsim::tools {
// Runs the Google Benchmark suite over the corpus under corpus_dir; argv holds benchmark flags.
int run_bench(const std::string &corpus_dir, int argc, char **argv);
} // namespace fpsim::tools
