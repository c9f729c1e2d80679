// fpsim-harness: runs traces against the running kernel (each trace in its own forked child inside a
// private mount namespace, through a raw /dev/fuse server) and compares them with the simulator.
//
//   fpsim-harness run PATH...         every statement with the kernel's outcome
//   fpsim-harness crosscheck PATH...  simulator vs kernel, statement by statement
//   fpsim-harness fuzz [--seed S] [--seconds N] [--runs N] [--max-ops N] [--out DIR]
//                                     generated traces, simulator vs kernel (fuzz_kernel.h)
//   fpsim-harness record --source DIR [--policy P] -o OUT -- CMD [ARGS...]
//                                     a command's opens and backing ids as a trace (recorder.h)
//   fpsim-harness vm --kernel K [--kernel K ...] [--timeout S] -- SUBCOMMAND ARGS...
//                                     SUBCOMMAND inside each kernel under qemu (vm.h)
//
// Exit codes: 0 agreement; 1 a disagreement or a harness failure; 2 usage, unreadable file or parse
// error; 3 a fault injected with FPSIM_HARNESS_FAULT (fault.h) fired and the harness contained it
// (reported, nothing left behind); 77 the machine cannot run it (not root, no /dev/fuse, no
// passthrough); 130/143 interrupted.
#include "base/assert.h"
#include "base/join.h"
#include "fault.h"
#include "fuse_server.h"
#include "fuzz_kernel.h"
#include "kernel_executor.h"
#include "namespace.h"
#include "recorder.h"
#include "vm.h"

#include "sim/trace/parser.h"
#include "sim/trace/trace_files.h"
#include "sim/trace/printer.h"
#include "sim/exec/replay.h"
#include "sim/exec/sim_executor.h"
#include "tools/exit_codes.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <sstream>

namespace fs = std::filesystem;
using namespace fpsim;
using nlohmann::json;

namespace {

// The user who ran `sudo fpsim-harness record`: SUDO_UID/SUDO_GID, when both are set and not
// root. Malformed values are an error (*why), never a silent fallback to root.
std::optional<harness::RecordOptions::RunAs> invoking_user(std::string *why) {
  const char *uid_text = std::getenv("SUDO_UID");
  const char *gid_text = std::getenv("SUDO_GID");
  if (uid_text == nullptr && gid_text == nullptr)
    return std::nullopt;
  auto parse = [](const char *text, unsigned long *out) {
    if (text == nullptr || *text == '\0')
      return false;
    char *end = nullptr;
    errno = 0;
    *out = std::strtoul(text, &end, 10);
    return errno == 0 && *end == '\0' && *out < 0xffffffffUL;
  };
  unsigned long uid = 0, gid = 0;
  if (!parse(uid_text, &uid) || !parse(gid_text, &gid)) {
    *why = fmt::format("SUDO_UID/SUDO_GID ('{}'/'{}') are not numeric ids; pass --as-root to run the "
                       "command as root",
                       uid_text ? uid_text : "", gid_text ? gid_text : "");
    return std::nullopt;
  }
  if (uid == 0)
    return std::nullopt;
  return harness::RecordOptions::RunAs{static_cast<uid_t>(uid), static_cast<gid_t>(gid)};
}

volatile sig_atomic_t g_signal = 0;

void on_signal(int signo) {
  g_signal = signo;
  harness::cancel_isolated_runs();
}

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

// `where`: the statement the run in progress was at, when there was one.
int interrupted_exit(const std::string &where = "") {
  fmt::print(stderr, "fpsim-harness: interrupted by signal {}{}; the run in progress was killed\n",
             static_cast<int>(g_signal), where.empty() ? "" : " at " + where);
  return kExitSignalBase + g_signal;
}

// ---- traces ---------------------------------------------------------------------------------------

// Parses everything first: a malformed trace stops the run before anything is executed.
std::optional<std::vector<sim::Trace>> load_all(const std::vector<std::string> &paths, const char *cmd) {
  auto loaded = sim::load_traces(paths);
  if (auto *f = std::get_if<sim::LoadFailure>(&loaded)) {
    if (f->no_traces)
      fmt::print(stderr, "fpsim-harness {}: {}\n", cmd, f->message);
    else
      fmt::print(stderr, "{}\n", f->message);
    return std::nullopt;
  }
  return std::get<std::vector<sim::Trace>>(std::move(loaded));
}

// ---- preconditions --------------------------------------------------------------------------------

bool has_cap_sys_admin() {
  __user_cap_header_struct hdr{};
  hdr.version = _LINUX_CAPABILITY_VERSION_3;
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
  if (syscall(SYS_capget, &hdr, data) != 0)
    return false;
  return (data[CAP_TO_INDEX(CAP_SYS_ADMIN)].effective & CAP_TO_MASK(CAP_SYS_ADMIN)) != 0;
}

// What the probe saw of the running kernel: the features a probe can observe, and the protocol
// minor of the kernel's INIT.
struct ProbedKernel {
  int minor = 0;
  std::vector<std::pair<model::Feature, bool>> features;
};

// The probe runs in an isolated child, which reports through its exit status: kProbeSeen plus
// the observed bits, or one of the failures.
constexpr int kProbeNoPassthrough = 11;
constexpr int kProbeFailed = 12;
constexpr int kProbeSeen = 64;
constexpr int kProbeMinorBase = 40; // minors 40..47 fit in three bits
constexpr model::Feature kProbedFeatures[] = {model::Feature::SyncInit,
                                             model::Feature::BackingRejectsNonRegular,
                                             model::Feature::BufferedReadErrorEio};

int probe_failed(const std::string &what) {
  fmt::print(stderr, "fpsim-harness: probe: {}\n", what);
  return kProbeFailed;
}

// Mounts with passthrough, registers a regular file (passthrough works), then a directory
// (backing_rejects_non_regular), then reads a cached file after an abort
// (buffered_read_error_eio). SYNC_INIT is whether the mount could arm it.
int probe_body(const harness::IsolatedDirs &dirs) {
  std::string err;
  std::unique_ptr<harness::FuseServer> server = harness::FuseServer::open(
      harness::ServerParts{harness::memory_files({{"probe", "probe data\n"}}),
                           policy::make_stock(policy::Stock::Cached)},
      dirs.ctl, err);
  if (!server)
    return probe_failed(err);
  const std::string path = dirs.backing + "/probe";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  model::InitReply init;
  init.passthrough = true;
  init.max_stack_depth = 1;
  if (server->mount(dirs.mnt, init, err) != 0)
    return probe_failed(err);
  const int id = server->backing_open(fd);
  ::close(fd);
  if (id == -EPERM)
    return kProbeNoPassthrough;
  if (id < 0)
    return probe_failed(fmt::format("BACKING_OPEN: {}", std::strerror(-id)));
  server->backing_close(static_cast<std::uint32_t>(id));
  const int dir = ::open(dirs.backing.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  const int dir_id = server->backing_open(dir);
  ::close(dir);
  if (dir_id > 0)
    server->backing_close(static_cast<std::uint32_t>(dir_id));
  else if (dir_id != -EISDIR)
    return probe_failed(fmt::format("BACKING_OPEN of a directory: {}", std::strerror(-dir_id)));
  const int file = ::open((dirs.mnt + "/probe").c_str(), O_RDONLY | O_CLOEXEC);
  if (file < 0)
    return probe_failed(fmt::format("open {}/probe: {}", dirs.mnt, std::strerror(errno)));
  if (server->abort(err) != 0)
    return probe_failed(err);
  char byte = 0;
  const bool read_failed = ::read(file, &byte, 1) < 0;
  const int read_err = errno;
  ::close(file);
  if (!read_failed || (read_err != EIO && read_err != ENOTCONN))
    return probe_failed(fmt::format("a cached read after an abort returned {}",
                                    read_failed ? std::strerror(read_err) : "data"));
  const std::optional<harness::KernelInit> k = server->kernel_init();
  const int minor = k ? static_cast<int>(k->minor) - kProbeMinorBase : -1;
  if (minor < 0 || minor > 7)
    return probe_failed(fmt::format("the kernel's INIT has protocol minor {}, outside 40..47",
                                    k ? static_cast<int>(k->minor) : -1));
  return kProbeSeen + (server->sync_init() ? 1 : 0) + (dir_id == -EISDIR ? 2 : 0) +
         (read_err == EIO ? 4 : 0) + (minor << 3);
}

ProbedKernel decode_probe(int code) {
  ProbedKernel k;
  const int bits = code - kProbeSeen;
  k.minor = kProbeMinorBase + (bits >> 3);
  for (std::size_t i = 0; i < std::size(kProbedFeatures); ++i)
    k.features.emplace_back(kProbedFeatures[i], (bits >> i) & 1);
  return k;
}

// The built-in profile the probe matches (protocol minor and every probed feature), else the
// nearest one; *differs names what the nearest one gets wrong.
model::KernelProfile matching_profile(const ProbedKernel &k, std::string *differs) {
  std::size_t best_distance = SIZE_MAX;
  model::KernelProfile best = model::kDefaultProfile;
  for (const model::BaseProfileInfo &b : model::all_base_profiles()) {
    std::vector<std::string> wrong;
    if (b.protocol_minor != k.minor)
      wrong.push_back(fmt::format("protocol minor {} (the kernel's: {})", b.protocol_minor, k.minor));
    for (const auto &[f, has] : k.features)
      if (b.features.has(f) != has)
        wrong.push_back(fmt::format("{}{}", has ? "+" : "-", model::feature_info(f).name));
    if (wrong.size() < best_distance) {
      best_distance = wrong.size();
      best = model::KernelProfile{b.base, b.features};
      *differs = join(wrong);
    }
  }
  return best;
}

// 0 when the machine can run traces; otherwise the exit code, after a one-line message. *seen:
// what the probe observed.
int probe_running_kernel(ProbedKernel *seen) {
  if (geteuid() != 0 || !has_cap_sys_admin()) {
    fmt::print("fpsim-harness: skipped: needs root with CAP_SYS_ADMIN (mount, BACKING_OPEN)\n");
    return kExitSkip;
  }
  if (access("/dev/fuse", R_OK | W_OK) != 0) {
    fmt::print("fpsim-harness: skipped: /dev/fuse: {}\n", std::strerror(errno));
    return kExitSkip;
  }
  harness::IsolatedRun run = harness::run_isolated(probe_body, std::chrono::seconds(30));
  if (harness::isolated_runs_cancelled())
    return interrupted_exit();
  if (!run.started) {
    fmt::print("fpsim-harness: cannot start an isolated run: {}\n", run.error);
    return kExitFailed;
  }
  if (run.exit_code == kProbeNoPassthrough) {
    fmt::print("fpsim-harness: skipped: FUSE passthrough is not available (BACKING_OPEN after an INIT "
               "with passthrough gives EPERM; CONFIG_FUSE_PASSTHROUGH off?)\n");
    return kExitSkip;
  }
  if (run.exit_code < kProbeSeen || run.exit_code >= 2 * kProbeSeen) {
    fmt::print("fpsim-harness: the kernel probe failed (exit {}, signal {}{})\n", run.exit_code,
               run.signal, run.error.empty() ? "" : ", " + run.error);
    return kExitFailed;
  }
  *seen = decode_probe(run.exit_code);
  return kExitOk;
}

std::string kernel_release() {
  utsname u{};
  return uname(&u) == 0 ? u.release : "(uname failed)";
}

// As probe_running_kernel, and *profile the built-in profile the kernel matches (or the nearest),
// said on `says` (stderr for record, whose stdout is the recorded command's).
int preconditions(model::KernelProfile *profile, std::FILE *says = stdout) {
  ProbedKernel seen;
  if (const int rc = probe_running_kernel(&seen); rc != kExitOk)
    return rc;
  std::string differs;
  *profile = matching_profile(seen, &differs);
  const std::string release = kernel_release();
  if (differs.empty())
    fmt::print(says, "fpsim-harness: kernel {}: probed as profile {}\n", release, model::profile_name(*profile));
  else
    fmt::print(says, "fpsim-harness: kernel {}: matches no profile; the nearest, {}, differs in {}\n", release,
               model::profile_name(*profile), differs);
  return kExitOk;
}

// fpsim-harness probe: the features a probe observed, and the profile they match.
int cmd_probe(bool json) {
  ProbedKernel seen;
  if (const int rc = probe_running_kernel(&seen); rc != kExitOk)
    return rc;
  std::string differs;
  const model::KernelProfile p = matching_profile(seen, &differs);
  if (json) {
    nlohmann::json features = nlohmann::json::object();
    for (const auto &[f, has] : seen.features)
      features[std::string(model::feature_info(f).name)] = has;
    fmt::print("{}\n", nlohmann::json{{"kernel", kernel_release()},
                                      {"protocol_minor", seen.minor},
                                      {"features", features},
                                      {"profile", model::profile_name(p)},
                                      {"matches", differs.empty()},
                                      {"differs", differs}}
                           .dump(2));
    return kExitOk;
  }
  fmt::print("kernel {}: protocol 7.{}\n", kernel_release(), seen.minor);
  for (const auto &[f, has] : seen.features)
    fmt::print("  {:<28} {}\n", model::feature_info(f).name, has ? "yes" : "no");
  if (differs.empty())
    fmt::print("profile {}\n", model::profile_name(p));
  else
    fmt::print("no profile matches; the nearest is {}, which differs in {}\n", model::profile_name(p), differs);
  return kExitOk;
}

// ---- one trace on the kernel ----------------------------------------------------------------------

json outcome_to_json(const sim::Outcome &o) {
  return {{"k", static_cast<int>(o.kind)}, {"e", o.err},          {"id", o.id},
          {"r", o.release},               {"i", o.internal_err}, {"m", o.message}};
}

sim::Outcome outcome_from_json(const json &j) {
  sim::Outcome o;
  o.kind = static_cast<sim::Outcome::Kind>(j.at("k").get<int>());
  o.err = j.at("e").get<int>();
  o.id = j.at("id").get<std::int64_t>();
  o.release = j.at("r").get<bool>();
  o.internal_err = j.at("i").get<int>();
  o.message = j.at("m").get<std::string>();
  return o;
}

bool g_verbose = false;

// Shared (MAP_SHARED) with the isolated child, which may die or be killed before it writes its
// result: what it was doing, so that such an end is reported at the statement it hit.
struct RunProgress {
  std::atomic<int> line{-1}; // of the statement in progress; 0: a teardown step; -1: none yet
  char statement[512] = {};
  std::atomic<int> fault_fired{0};
  char fault[1024] = {};
};
static_assert(std::atomic<int>::is_always_lock_free, "shared across processes");

void copy_text(char *dst, std::size_t size, const std::string &text) {
  const std::size_t n = std::min(size - 1, text.size());
  std::memcpy(dst, text.data(), n);
  dst[n] = '\0';
}

// Where a run was: "FILE:LINE: STATEMENT", "FILE: (teardown) STATEMENT", or FILE before any step.
std::string progress_where(const sim::Trace &t, const RunProgress &p) {
  const int line = p.line.load();
  if (line < 0)
    return t.path;
  if (line == 0)
    return fmt::format("{}: (teardown) {}", t.path, p.statement);
  return fmt::format("{}:{}: {}", t.path, line, p.statement);
}

// Wraps the kernel executor in the child: records each step in the shared progress and, with
// --verbose, logs it on stderr as it runs (for runs that hang or crash).
class ChildExecutor final : public sim::Executor {
public:
  ChildExecutor(sim::Executor &inner, const sim::Trace &t, RunProgress &progress)
      : inner_(inner), t_(t), progress_(progress) {}
  void begin(const sim::Trace &t, sim::KernelProfile p) override { inner_.begin(t, p); }
  sim::Outcome step(const sim::Statement &s, const sim::Bindings &bindings) override {
    const std::string text = sim::format_statement(s, t_.names);
    copy_text(progress_.statement, sizeof progress_.statement, text);
    progress_.line.store(s.line);
    if (g_verbose)
      fmt::print(stderr, "[kernel] {}:{}: {} ...\n", t_.path, s.line, text);
    sim::Outcome o = inner_.step(s, bindings);
    if (g_verbose)
      fmt::print(stderr, "[kernel]   => {}\n", sim::format_outcome_detailed(o));
    return o;
  }
  sim::CheckResult check(const sim::Statement &s, const sim::Bindings &bindings) override { return inner_.check(s, bindings); }
  std::vector<sim::Violation> after_step() override { return inner_.after_step(); }
  std::vector<sim::Violation> drain() override {
    if (g_verbose)
      fmt::print(stderr, "[kernel] drain\n");
    return inner_.drain();
  }
  void end() override {
    if (g_verbose)
      fmt::print(stderr, "[kernel] end\n");
    inner_.end();
  }

private:
  sim::Executor &inner_;
  const sim::Trace &t_;
  RunProgress &progress_;
};

struct KernelRun {
  bool ok = false;
  std::string error; // !ok: why there is no result
  std::string where; // the statement the run was at when it ended (see progress_where)
  std::size_t faults_fired = 0; // the injected fault fired (reported in failures or in `error`)
  bool host_clean = true; // the child was reaped and nothing was left in the host namespace
  std::vector<std::optional<sim::Outcome>> outcomes;
  std::vector<sim::ReplayFailure> failures;
  std::size_t steps = 0;
  std::size_t checks_not_observable = 0;
  double seconds = 0;
  std::vector<std::string> teardown; // "statement -> outcome" of the steps replay added at the end
};

// The isolated child's exit status: its result was written, or it could not be.
constexpr int kBodyOk = 0;
constexpr int kBodyWriteFailed = 3;

// In the isolated child: replays `t` on the kernel and writes the result as JSON to `fd`.
int run_in_child(const harness::IsolatedDirs &dirs, const sim::Trace &t, model::KernelProfile profile,
                 const harness::KernelExecutorOptions &options, RunProgress *progress, int fd) {
  // Only the parent decides about signals: it aborts the connections and kills this child.
  signal(SIGINT, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  harness::KernelExecutorOptions child_options = options;
  child_options.on_fault = [progress](const std::string &what) {
    copy_text(progress->fault, sizeof progress->fault, what);
    progress->fault_fired.store(1);
  };
  harness::KernelExecutor kex(dirs, child_options);
  ChildExecutor ex(kex, t, *progress);
  const auto t0 = std::chrono::steady_clock::now();
  const sim::ReplayResult r = sim::replay(t, ex, profile);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  json j;
  j["steps"] = r.steps;
  j["checks_not_observable"] = r.checks_not_observable;
  j["seconds"] = secs;
  j["faults"] = kex.faults_fired();
  j["transcript"] = r.transcript;
  j["outcomes"] = json::array();
  for (const auto &o : r.outcomes)
    j["outcomes"].push_back(o ? outcome_to_json(*o) : json(nullptr));
  j["failures"] = json::array();
  for (const auto &f : r.failures)
    j["failures"].push_back({{"kind", static_cast<int>(f.kind)},
                             {"line", f.line},
                             {"statement", f.statement},
                             {"expected", f.expected},
                             {"actual", f.actual},
                             {"message", f.message}});
  return harness::write_all(fd, j.dump()) ? kBodyOk : kBodyWriteFailed;
}

KernelRun run_on_kernel(const sim::Trace &t, model::KernelProfile profile,
                        const harness::KernelExecutorOptions &options, std::chrono::seconds timeout) {
  KernelRun out;
  out.where = t.path;
  const int fd = harness::child_result_file();
  if (fd < 0) {
    out.error = fmt::format("mkstemp: {}", std::strerror(errno));
    return out;
  }
  void *shared = mmap(nullptr, sizeof(RunProgress), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shared == MAP_FAILED) {
    out.error = fmt::format("mmap (run progress): {}", std::strerror(errno));
    ::close(fd);
    return out;
  }
  auto *progress = new (shared) RunProgress{};
  auto body = [&](const harness::IsolatedDirs &dirs) { return run_in_child(dirs, t, profile, options, progress, fd); };
  std::string overrun_where;
  const harness::IsolatedRun run =
      harness::run_isolated(body, timeout, [&] { overrun_where = progress_where(t, *progress); });
  const std::string text = harness::read_child_result(fd);
  out.where = overrun_where.empty() ? progress_where(t, *progress) : overrun_where;
  const bool fault_fired = progress->fault_fired.load() != 0;
  const std::string fault_text = progress->fault;
  progress->~RunProgress();
  munmap(shared, sizeof(RunProgress));
  out.faults_fired = fault_fired ? 1 : 0;
  out.host_clean = run.cleaned_up && (run.exited || !run.started);
  if (!run.started) {
    out.error = "the isolated run did not start: " + run.error;
    return out;
  }
  if (run.cancelled) {
    out.error = "interrupted";
    return out;
  }
  if (run.timed_out || run.signal || run.exit_code != kBodyOk || text.empty()) {
    out.error = fmt::format("the kernel run {}", run.timed_out ? fmt::format("timed out after {} s", timeout.count())
                                                 : run.signal ? fmt::format("died of signal {}", run.signal)
                                                 : run.exited ? fmt::format("exited {}", run.exit_code)
                                                              : std::string("did not end"));
    // The result, if any, is not used: the fault's description is all that is reported of it.
    if (fault_fired && options.fault)
      out.error += fmt::format(" [fault {}: {}]", options.fault->spec, fault_text);
    if (!run.error.empty())
      out.error += " (" + run.error + ")";
    if (run.emergency_aborts)
      out.error += fmt::format("; {} connection(s) aborted through fusectl to end it", run.emergency_aborts);
    return out;
  }
  // A thread stuck at the child's exit is a call that never returned, even though the result came.
  if (!run.cleaned_up || run.dying_stuck)
    out.failures.push_back(sim::ReplayFailure{sim::ReplayFailure::Kind::Leak, 0, "(end of trace)", "", "",
                                              (run.cleaned_up ? "exit: " : "host namespace: ") + run.error});
  try {
    const json j = json::parse(text);
    out.steps = j.at("steps").get<std::size_t>();
    out.checks_not_observable = j.at("checks_not_observable").get<std::size_t>();
    out.seconds = j.at("seconds").get<double>();
    out.faults_fired = std::max(out.faults_fired, j.at("faults").get<std::size_t>());
    std::istringstream transcript(j.at("transcript").get<std::string>());
    for (std::string line; std::getline(transcript, line);)
      if (line.rfind("0: ", 0) == 0)
        out.teardown.push_back(line.substr(3));
    for (const auto &o : j.at("outcomes"))
      out.outcomes.push_back(o.is_null() ? std::nullopt : std::optional(outcome_from_json(o)));
    for (const auto &f : j.at("failures"))
      out.failures.push_back(sim::ReplayFailure{
          static_cast<sim::ReplayFailure::Kind>(f.at("kind").get<int>()), f.at("line").get<int>(),
          f.at("statement").get<std::string>(), f.at("expected").get<std::string>(),
          f.at("actual").get<std::string>(), f.at("message").get<std::string>()});
  } catch (const std::exception &e) {
    out.error = std::string("unreadable result from the kernel run: ") + e.what();
    return out;
  }
  out.ok = true;
  return out;
}

// Kernel-side failures that the statement comparison does not already show: violations (server
// anomalies, route checks), teardown steps that failed, leaks.
bool harness_failure(const sim::ReplayFailure &f) {
  if (f.line == 0)
    return true;
  return f.kind != sim::ReplayFailure::Kind::Mismatch && f.kind != sim::ReplayFailure::Kind::Invalid;
}

std::string describe_failure(const sim::ReplayFailure &f) {
  if (f.kind == sim::ReplayFailure::Kind::Mismatch)
    return fmt::format("{}: {}{}", f.statement, f.actual, f.message.empty() ? "" : " (" + f.message + ")");
  return fmt::format("{}: {}: {}", f.statement, sim::failure_kind_name(f.kind), f.message);
}

std::string where(const sim::Trace &t, int line) {
  return line ? fmt::format("{}:{}", t.path, line) : t.path;
}

// What crosscheck needs of a kernel run beyond the comparison.
struct KernelRunInfo {
  std::string where;
  std::size_t faults_fired = 0;
  bool host_clean = true;
};

// One trace on the simulator and on the kernel, statement by statement: every disagreement (an
// outcome that differs, or one the trace's expectation does not match), the kernel run's own failures
// and the simulator's failures other than the outcome comparison.
harness::CrossResult crosscheck_trace(const sim::Trace &t, model::KernelProfile kernel,
                                      const harness::KernelExecutorOptions &options,
                                      std::chrono::seconds timeout, bool skip_kernel_if_invalid = false,
                                      KernelRunInfo *info = nullptr) {
  harness::CrossResult out;
  sim::SimExecutor sim_ex;
  const sim::ReplayResult sr = sim::replay(t, sim_ex, kernel);
  for (const auto &o : sr.outcomes)
    if (o && o->kind == sim::Outcome::Kind::Invalid)
      out.sim_invalid = true;
  for (const auto &f : sr.failures)
    if (f.kind == sim::ReplayFailure::Kind::Invalid)
      out.sim_invalid = true;
  if (out.sim_invalid && skip_kernel_if_invalid) {
    out.kernel_ok = true;
    return out;
  }
  const KernelRun k = run_on_kernel(t, kernel, options, timeout);
  if (info != nullptr)
    *info = KernelRunInfo{k.where, k.faults_fired, k.host_clean};
  if (harness::isolated_runs_cancelled() || k.error == "interrupted") {
    out.interrupted = true;
    return out;
  }
  auto add = [&](int line, std::string statement, std::string so, std::string ko, std::string text) {
    out.disagreements.push_back(
        harness::Disagreement{line, std::move(statement), std::move(so), std::move(ko), std::move(text)});
  };
  if (!k.ok) {
    add(0, "", "", k.error, fmt::format("{}: kernel: {}", k.where, k.error));
  } else {
    out.kernel_ok = true;
    out.kernel_outcomes = k.outcomes;
    out.kernel_steps = k.steps;
    out.kernel_seconds = k.seconds;
    out.checks_not_observable = k.checks_not_observable;
    for (std::size_t i = 0; i < t.statements.size(); ++i) {
      const sim::Statement &s = t.statements[i];
      if (s.op == sim::Op::Check)
        continue;
      const std::optional<sim::Outcome> &so = sr.outcomes.at(i);
      const std::optional<sim::Outcome> &ko = i < k.outcomes.size() ? k.outcomes[i] : std::nullopt;
      const std::string stmt = sim::format_statement(s, t.names);
      if (!so || !ko) {
        add(s.line, stmt, so ? sim::format_outcome_detailed(*so) : "(none)",
            ko ? sim::format_outcome_detailed(*ko) : "(none)",
            fmt::format("{}: {}: no outcome from the {}", where(t, s.line), stmt, so ? "kernel" : "simulator"));
        continue;
      }
      const bool agree = sim::same_outcome(*so, *ko) &&
                         (!s.expect || (sim::same_outcome(*s.expect, *ko) && sim::same_outcome(*s.expect, *so)));
      if (agree)
        continue;
      const std::string sim_text = sim::format_outcome_detailed(*so);
      const std::string kernel_text = ko->kind == sim::Outcome::Kind::Invalid ? sim::format_outcome_detailed(*ko)
                                                                             : sim::format_outcome(*ko);
      add(s.line, stmt, sim_text, kernel_text,
          fmt::format("{}: {}: expected {}, sim {}, kernel {}", where(t, s.line), stmt,
                      s.expect ? sim::format_outcome(*s.expect) : std::string("-"), sim_text, kernel_text));
    }
    for (const auto &f : k.failures)
      if (harness_failure(f))
        add(0, "", "", describe_failure(f), fmt::format("{}: kernel {}", where(t, f.line), describe_failure(f)));
  }
  // The simulator's own failures other than the outcome comparison above (checks, invariants, leaks).
  for (const auto &f : sr.failures)
    if (f.kind != sim::ReplayFailure::Kind::Mismatch || f.line == 0)
      add(0, "", describe_failure(f), "", fmt::format("{}: sim {}", where(t, f.line), describe_failure(f)));
  return out;
}

// A trace written for another profile is cross-checked on this kernel when it means the same
// there: the simulator, as this kernel's profile, meets every expectation of the trace. Otherwise
// why not, with the first statement where it differs.
std::optional<std::string> means_otherwise(const sim::Trace &t, model::KernelProfile kernel) {
  if (t.profile == kernel)
    return std::nullopt;
  sim::SimExecutor ex;
  const sim::ReplayResult r = sim::replay(t, ex, kernel);
  if (r.passed())
    return std::nullopt;
  const sim::ReplayFailure &f = r.failures.front();
  return fmt::format("its expectations are {}'s; as {}, line {} gives {}", model::profile_name(t.profile),
                     model::profile_name(kernel), f.line, describe_failure(f));
}

// Why no overlayfs can be mounted here (nullopt: one can), found by mounting one in an isolated
// run the first time a trace needs it: the guests of `fpsim-harness vm` load fuse.ko and no
// other module, and Debian builds overlayfs as one.
std::optional<std::string> overlayfs_unavailable() {
  static const std::optional<std::string> why = []() -> std::optional<std::string> {
    const int fd = harness::child_result_file();
    if (fd < 0)
      return fmt::format("mkstemp: {}", std::strerror(errno));
    const harness::IsolatedRun run = harness::run_isolated(
        [fd](const harness::IsolatedDirs &dirs) {
          const std::string upper = dirs.backing + "/upper";
          std::string err;
          if (mkdir(upper.c_str(), 0700) != 0)
            err = fmt::format("mkdir {}: {}", upper, std::strerror(errno));
          else if (harness::mount_overlay(upper, dirs.backing + "/overlay", err) == 0)
            return 0;
          harness::write_all(fd, err);
          return 1;
        },
        std::chrono::seconds(30));
    const std::string err = harness::read_child_result(fd);
    if (run.started && run.exited && run.exit_code == 0)
      return std::nullopt;
    return err.empty() ? "the isolated run failed: " + run.error : err;
  }();
  return why;
}

struct Rate {
  std::size_t steps = 0;
  double seconds = 0;
  std::string line() const {
    return fmt::format("kernel: {} statements in {:.2f} s ({:.0f} statements/s)", steps, seconds,
                       seconds > 0 ? static_cast<double>(steps) / seconds : 0.0);
  }
};

// ---- commands -------------------------------------------------------------------------------------

// The injected fault across the traces of a run, for the summary and the exit code: 3 once it fired
// in some trace (the outcomes then say nothing about the kernel), unless a run was not contained
// (its child not reaped, or something left in the host namespace), which is a harness failure.
class FaultTally {
public:
  void add(const sim::Trace &t, const harness::KernelExecutorOptions &options, std::size_t fired,
           bool host_clean) {
    host_clean_ = host_clean_ && host_clean;
    if (!options.fault)
      return;
    spec_ = options.fault->spec;
    fired_traces_ += fired != 0;
    if (fired == 0)
      fmt::print("{}: fault {} never fired\n", t.path, spec_);
  }
  void summary() const {
    if (!spec_.empty())
      fmt::print("fault {}: fired in {} trace(s){}\n", spec_, fired_traces_,
                 host_clean_ ? "" : "; a run was NOT contained (see above)");
  }
  int exit_code(int verdict) const {
    if (!host_clean_)
      return kExitFailed;
    return fired_traces_ ? kExitFault : verdict;
  }

private:
  std::string spec_;
  std::size_t fired_traces_ = 0;
  bool host_clean_ = true;
};

int cmd_run(const std::vector<std::string> &paths, const harness::KernelExecutorOptions &options,
            std::chrono::seconds timeout) {
  std::optional<std::vector<sim::Trace>> traces = load_all(paths, "run");
  if (!traces)
    return kExitUsage;
  model::KernelProfile kernel{};
  if (int rc = preconditions(&kernel); rc != 0)
    return rc;
  install_signal_handlers();
  bool failed = false;
  FaultTally faults;
  Rate rate;
  for (const sim::Trace &t : *traces) {
    if (harness::isolated_runs_cancelled())
      return interrupted_exit();
    fmt::print("== {} [{}{}]\n", t.path, model::profile_name(t.profile),
               t.profile == kernel ? "" : fmt::format(", on a {} kernel", model::profile_name(kernel)));
    std::fflush(stdout);
    const KernelRun k = run_on_kernel(t, t.profile, options, timeout);
    if (harness::isolated_runs_cancelled())
      return interrupted_exit(k.where);
    faults.add(t, options, k.faults_fired, k.host_clean);
    if (!k.ok) {
      fmt::print("{}: kernel: {}\n", k.where, k.error);
      failed = true;
      continue;
    }
    rate.steps += k.steps;
    rate.seconds += k.seconds;
    for (std::size_t i = 0; i < t.statements.size() && i < k.outcomes.size(); ++i) {
      const sim::Statement &s = t.statements[i];
      if (!k.outcomes[i])
        continue;
      const sim::Outcome &o = *k.outcomes[i];
      std::string note;
      if (s.expect && !sim::same_outcome(*s.expect, o))
        note = fmt::format("   (trace expects {})", sim::format_outcome(*s.expect));
      fmt::print("{}:{}: {} => {}{}\n", t.path, s.line, sim::format_statement(s, t.names),
                 o.kind == sim::Outcome::Kind::Invalid ? sim::format_outcome_detailed(o)
                                                       : sim::format_outcome(o),
                 note);
    }
    for (const std::string &line : k.teardown)
      fmt::print("{}: (teardown) {}\n", t.path, line);
    for (const auto &f : k.failures) {
      if (!harness_failure(f))
        continue;
      fmt::print("{}: kernel {}\n", where(t, f.line), describe_failure(f));
      failed = true;
    }
  }
  fmt::print("fpsim-harness run: {} traces; {}\n", traces->size(), rate.line());
  faults.summary();
  return faults.exit_code(failed ? kExitFailed : kExitOk);
}

int cmd_crosscheck(const std::vector<std::string> &paths, const harness::KernelExecutorOptions &options,
                   std::chrono::seconds timeout) {
  std::optional<std::vector<sim::Trace>> traces = load_all(paths, "crosscheck");
  if (!traces)
    return kExitUsage;
  model::KernelProfile kernel{};
  if (int rc = preconditions(&kernel); rc != 0)
    return rc;
  install_signal_handlers();
  std::size_t passed = 0;
  std::size_t failed = 0;
  std::size_t skipped = 0;
  std::size_t not_observable = 0;
  std::size_t disagreements = 0;
  FaultTally faults;
  Rate rate;
  const auto t0 = std::chrono::steady_clock::now();
  for (const sim::Trace &t : *traces) {
    if (harness::isolated_runs_cancelled())
      return interrupted_exit();
    if (std::optional<std::string> why = means_otherwise(t, kernel)) {
      fmt::print("SKIP {} [{}]: {}\n", t.path, model::profile_name(t.profile), *why);
      ++skipped;
      continue;
    }
    if (std::optional<std::string> why = harness::needs_overlayfs(t) ? overlayfs_unavailable() : std::nullopt) {
      fmt::print("SKIP {} [{}]: needs an overlayfs (on=overlay), which cannot be mounted here: {}\n", t.path,
                 model::profile_name(t.profile), *why);
      ++skipped;
      continue;
    }
    KernelRunInfo info;
    const harness::CrossResult cr = crosscheck_trace(t, kernel, options, timeout, false, &info);
    if (cr.interrupted || harness::isolated_runs_cancelled())
      return interrupted_exit(info.where);
    faults.add(t, options, info.faults_fired, info.host_clean);
    std::vector<std::string> lines;
    for (const auto &d : cr.disagreements) {
      lines.push_back(d.text);
      if (d.line)
        ++disagreements;
    }
    rate.steps += cr.kernel_steps;
    rate.seconds += cr.kernel_seconds;
    not_observable += cr.checks_not_observable;
    const std::size_t kernel_steps = cr.kernel_steps;
    if (lines.empty()) {
      ++passed;
      fmt::print("PASS {} [{}] {} statements\n", t.path, model::profile_name(t.profile), kernel_steps);
    } else {
      ++failed;
      fmt::print("FAIL {} [{}]\n", t.path, model::profile_name(t.profile));
      for (const auto &l : lines)
        fmt::print("  {}\n", l);
    }
    std::fflush(stdout);
  }
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  fmt::print("fpsim-harness crosscheck: {} passed, {} failed, {} skipped\n", passed, failed, skipped);
  fmt::print("{} statement disagreements; {} check statements not observable on the kernel\n",
             disagreements, not_observable);
  fmt::print("{} ({:.2f} s wall clock with isolation)\n", rate.line(), wall);
  faults.summary();
  return faults.exit_code(failed ? kExitFailed : kExitOk);
}

int cmd_fuzz(const harness::KernelFuzzOptions &fo, const harness::KernelExecutorOptions &options,
             std::chrono::seconds timeout) {
  model::KernelProfile kernel{};
  if (int rc = preconditions(&kernel); rc != 0)
    return rc;
  install_signal_handlers();
  const int rc = harness::fuzz_kernel(
      fo, kernel, [&](const sim::Trace &t) { return crosscheck_trace(t, kernel, options, timeout, true); },
      [] { return harness::isolated_runs_cancelled(); });
  if (rc < 0 || harness::isolated_runs_cancelled())
    return interrupted_exit();
  return rc;
}

} // namespace

// FPSIM_HARNESS_FAULT, if set, into options.fault: kExitOk, or the usage error's exit code (printed).
int take_fault(harness::KernelExecutorOptions &options, bool takes_faults, const char *subcommand) {
  const char *env = std::getenv(harness::kFaultVariable);
  if (env == nullptr || *env == '\0')
    return kExitOk;
  // A fuzz run would write the fault's consequences as regression traces, a recording would
  // record them: only run and crosscheck, whose reports say what the fault did, take it.
  if (!takes_faults) {
    fmt::print(stderr, "fpsim-harness: {} is for run and crosscheck only; unset it for {}\n",
               harness::kFaultVariable, subcommand);
    return kExitUsage;
  }
  std::string err;
  options.fault = harness::parse_fault(env, err);
  if (!options.fault) {
    fmt::print(stderr, "fpsim-harness: {}=\"{}\": {}; expected {}\n", harness::kFaultVariable, env, err,
               harness::fault_forms());
    return kExitUsage;
  }
  fmt::print(stderr, "fpsim-harness: injecting fault {} into every trace run ({})\n", options.fault->spec,
             harness::kFaultVariable);
  return kExitOk;
}

// `record`: its options, and running it.
struct RecordCommand {
  harness::RecordOptions options;
  int timeout_s = 120;
  std::string policy_name = "hp";
  bool as_root = false;

  CLI::App *add_to(CLI::App &app) {
    CLI::App *record = app.add_subcommand(
        "record", "run a command on a passthrough mount of DIR and write what the server saw as a trace");
    record->add_option("--source", options.source_dir, "directory whose regular files the mount serves")
        ->required();
    std::vector<std::string> stocks;
    for (policy::Stock st : policy::kStocks)
      stocks.emplace_back(policy::stock_name(st));
    record->add_option("--policy", policy_name,
                       "how the server answers OPEN/CREATE: " + fmt::format("{}", fmt::join(stocks, ", ")) +
                           " (default hp)")
        ->check(CLI::IsMember(stocks));
    record->add_option("-o,--output", options.output, "the trace to write")->required();
    record->add_option("--timeout", timeout_s, "seconds the command may run before it is killed (default 120)")
        ->check(CLI::Range(1, 86400));
    record->add_flag("--verbose", options.verbose, "log every request the server receives on stderr");
    record->add_flag("--as-root", as_root,
                     "run CMD as root; by default it runs as the user who invoked sudo (SUDO_UID/SUDO_GID)");
    record->add_option("CMD", options.command, "the command and its arguments (after --)")->required();
    return record;
  }

  int run() {
    if (!as_root) {
      std::string why;
      options.run_as = invoking_user(&why);
      if (!why.empty()) {
        fmt::print(stderr, "fpsim-harness record: {}\n", why);
        return kExitUsage;
      }
    }
    options.timeout = std::chrono::seconds(timeout_s);
    const std::optional<policy::Stock> stock = policy::parse_stock(policy_name);
    FPSIM_ASSERT(stock.has_value(), "--policy is checked against the stock policies' names");
    options.policy = *stock;
    const int rc = harness::record(options, [] {
      model::KernelProfile kernel{};
      const int pre = preconditions(&kernel, stderr);
      if (pre == 0)
        install_signal_handlers();
      return pre;
    });
    return rc == harness::kRecordInterrupted ? interrupted_exit() : rc;
  }
};

int main(int argc, char **argv) {
  CLI::App app{"fpsim-harness: run fpsim traces against the real kernel"};
  app.require_subcommand(1);
  std::vector<std::string> paths;
  int deadline_ms = 300;
  int trace_timeout_s = 120;
  auto add_common = [&](CLI::App *cmd) {
    cmd->add_option("PATH", paths, "trace files or directories (recursively *.trace)")->required();
    cmd->add_option("--deadline-ms", deadline_ms,
                    "how long a call may take before it counts as blocked (default 300)")
        ->check(CLI::Range(10, 60000));
    cmd->add_option("--trace-timeout", trace_timeout_s,
                    "seconds one trace may take on the kernel before its run is killed (default 120)")
        ->check(CLI::Range(1, 3600));
    cmd->add_flag("--verbose", g_verbose, "log every kernel step on stderr as it runs");
  };
  CLI::App *run = app.add_subcommand("run", "print every statement with the kernel's outcome");
  add_common(run);
  CLI::App *cross = app.add_subcommand("crosscheck", "compare the simulator with the kernel");
  add_common(cross);
  RecordCommand record_cmd;
  CLI::App *record = record_cmd.add_to(app);
  harness::KernelFuzzOptions fuzz_options;
  std::uint64_t fuzz_runs = 0;
  double fuzz_seconds = 0;
  CLI::App *fuzz = app.add_subcommand("fuzz", "differential fuzzing: generated traces on the simulator and the kernel");
  fuzz->add_option("--seed", fuzz_options.seed, "seed of the run; case 0's seed (default 1)");
  auto *fuzz_runs_opt = fuzz->add_option("--runs", fuzz_runs, "run this many cases")->check(CLI::PositiveNumber);
  auto *fuzz_secs_opt =
      fuzz->add_option("--seconds", fuzz_seconds, "run cases for this many seconds")->check(CLI::PositiveNumber);
  fuzz->add_option("--max-ops", fuzz_options.max_ops, "statements per generated trace, at most (default 40)")
      ->check(CLI::Range(2, 10000));
  fuzz->add_option("--out", fuzz_options.out_dir, "where regression traces go (default traces/regressions)");
  fuzz->add_option("--deadline-ms", deadline_ms,
                   "how long a call may take before it counts as blocked (default 300)")
      ->check(CLI::Range(10, 60000));
  fuzz->add_option("--trace-timeout", trace_timeout_s,
                   "seconds one trace may take on the kernel before its run is killed (default 120)")
      ->check(CLI::Range(1, 3600));
  bool probe_json = false;
  CLI::App *probe = app.add_subcommand("probe", "probe the running kernel's features and name its profile");
  probe->add_flag("--json", probe_json, "print as JSON");
  harness::vm::Options vm_options;
  CLI::App *vm = harness::vm::add_subcommand(app, &vm_options);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp &e) {
    return app.exit(e);
  } catch (const CLI::ParseError &e) {
    app.exit(e);
    return kExitUsage;
  }
  if (vm->parsed())
    return harness::vm::run(vm_options);
  if (probe->parsed())
    return cmd_probe(probe_json);
  harness::KernelExecutorOptions options;
  if (const int rc = take_fault(options, run->parsed() || cross->parsed(), record->parsed() ? "record" : "fuzz");
      rc != kExitOk)
    return rc;
  options.deadline = std::chrono::milliseconds(deadline_ms);
  options.long_deadline = std::max(options.long_deadline, 4 * options.deadline);
  const std::chrono::seconds timeout(trace_timeout_s);
  if (record->parsed())
    return record_cmd.run();
  if (run->parsed())
    return cmd_run(paths, options, timeout);
  if (fuzz->parsed()) {
    if (fuzz_runs_opt->count())
      fuzz_options.runs = fuzz_runs;
    if (fuzz_secs_opt->count())
      fuzz_options.seconds = fuzz_seconds;
    if (!fuzz_options.runs && !fuzz_options.seconds)
      fuzz_options.seconds = 60;
    return cmd_fuzz(fuzz_options, options, timeout);
  }
  return cmd_crosscheck(paths, options, timeout);
}
