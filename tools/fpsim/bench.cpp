// `fpsim bench`: Google Benchmark measurements of the simulator's throughput.
#include "tools/fpsim/bench.h"

#include "tools/fpsim/bench_figures.h"

#include "sim/trace/parser.h"
#include "sim/exec/replay.h"
#include "sim/exec/sim_executor.h"
#include "tools/exit_codes.h"

#include <benchmark/benchmark.h>
#include <filesystem>
#include <fmt/format.h>

namespace fpsim::tools {
namespace {

std::vector<sim::Trace> g_corpus;

// Replays the whole corpus: statements per second through parse-free replay with the
// invariant checker after every step.
void BM_ReplayCorpus(benchmark::State &state) {
  std::int64_t steps = 0;
  for (auto _ : state) {
    for (const sim::Trace &t : g_corpus) {
      sim::SimExecutor ex;
      const sim::ReplayResult r = sim::replay(t, ex, t.profile);
      steps += static_cast<std::int64_t>(r.steps);
      benchmark::DoNotOptimize(r.failures.size());
    }
  }
  state.SetItemsProcessed(steps);
  state.counters["traces"] = static_cast<double>(g_corpus.size());
}

// Open/close of a passthrough file on the bare model: the cost of the io-mode transitions
// without the checker.
void BM_ModelPassthroughOpenClose(benchmark::State &state) {
  model::Model m;
  model::InitReply init;
  init.passthrough = true;
  init.max_stack_depth = 1;
  model::fuse_mount(m, init);
  const auto id = static_cast<std::int32_t>(model::fuse_dev_ioctl_backing_open(m, {}).value);
  model::OpenReply reply;
  reply.open_flags = model::fopen_passthrough(m.profile);
  reply.backing_id = id;
  const model::InodeId inode = model::fuse_iget(m, 0);
  for (auto _ : state) {
    const model::SysResult r = model::fuse_open(m, inode, {}, reply);
    model::fuse_close_fd(m, *r.file);
  }
  state.SetItemsProcessed(state.iterations() * 2);
}

// Parsing the corpus text.
void BM_ParseCorpus(benchmark::State &state) {
  std::vector<std::pair<std::string, std::string>> texts;
  for (const sim::Trace &t : g_corpus) {
    std::string text;
    for (const auto &l : t.source_lines)
      text += l + "\n";
    texts.emplace_back(t.path, std::move(text));
  }
  std::int64_t bytes = 0;
  for (auto _ : state)
    for (const auto &[path, text] : texts) {
      benchmark::DoNotOptimize(sim::parse_trace(text, path).index());
      bytes += static_cast<std::int64_t>(text.size());
    }
  state.SetBytesProcessed(bytes);
}

// The generated churn of fpsim bench's replay figures, stepped without parsing: range(0) says
// whether the invariant checker runs after every step.
void BM_StepChurn(benchmark::State &state) {
  const sim::Trace t = bench_trace(200'000);
  const bool checks = state.range(0) != 0;
  std::int64_t steps = 0;
  for (auto _ : state) {
    sim::SimExecutor ex;
    ex.set_checks(checks);
    ex.begin(t, t.profile);
    sim::Bindings b;
    for (const sim::Statement &s : t.statements) {
      benchmark::DoNotOptimize(ex.step(s, b).kind);
      benchmark::DoNotOptimize(ex.after_step().size());
    }
    steps += static_cast<std::int64_t>(t.statements.size());
  }
  state.SetItemsProcessed(steps);
}

BENCHMARK(BM_ReplayCorpus)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_StepChurn)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ModelPassthroughOpenClose);
BENCHMARK(BM_ParseCorpus)->Unit(benchmark::kMillisecond);

} // namespace

int run_bench(const std::string &corpus_dir, int argc, char **argv) {
  namespace fs = std::filesystem;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(corpus_dir, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    if (!it->is_regular_file() || it->path().extension() != ".trace")
      continue;
    sim::ParseResult p = sim::load_trace(it->path().string());
    if (auto *e = std::get_if<sim::ParseError>(&p)) {
      fmt::print(stderr, "{}\n", e->str());
      return kExitUsage;
    }
    g_corpus.push_back(std::move(std::get<sim::Trace>(p)));
  }
  if (ec || g_corpus.empty()) {
    fmt::print(stderr, "fpsim bench: no traces under {}\n", corpus_dir);
    return kExitUsage;
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return kExitOk;
}

} // namespace fpsim::tools
