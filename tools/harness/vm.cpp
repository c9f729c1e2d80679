#include "vm.h"

#include "subprocess.h"
#include "vm_guest.h"
#include "vm_kernels.h"

#include "base/assert.h"
#include "sim/trace/trace_files.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fmt/format.h>
#include <optional>
#include <set>
#include <sstream>

namespace fpsim::harness::vm {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;
constexpr int kExitSkip = 77;

// After its exit line the guest powers off at once; past this it is killed (its result stands).
constexpr auto kPoweroffGrace = std::chrono::seconds(10);
// A guest under KVM that has not reached init by then is taken as KVM not working here.
constexpr auto kKvmBootLimit = std::chrono::seconds(60);
const char *const kQemu = "qemu-system-x86_64";

volatile sig_atomic_t g_signal = 0;
void on_signal(int signo) { g_signal = signo; }
bool stopped() { return g_signal != 0; }

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// An fd closed on every path out.
struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd &) = delete;
  Fd &operator=(const Fd &) = delete;
  Fd(Fd &&o) noexcept : fd(o.fd) { o.fd = -1; }
  ~Fd() {
    if (fd >= 0)
      close(fd);
  }
  std::string proc_path() const { return fmt::format("/proc/self/fd/{}", fd); }
};

// ---- the command run inside -----------------------------------------------------------------------

const std::set<std::string> kGuestCommands = {"crosscheck", "run", "fuzz", "probe"};
// Options of those subcommands that take a value (which is then not a trace path).
const std::set<std::string> kValueOptions = {"--deadline-ms", "--trace-timeout", "--seed", "--runs",
                                             "--seconds",     "--max-ops",       "--out"};

// The trace paths among the subcommand's arguments (run and crosscheck; fuzz generates its own).
std::vector<std::string> trace_paths(const std::vector<std::string> &command) {
  std::vector<std::string> paths;
  if (command.front() == "fuzz" || command.front() == "probe")
    return paths;
  for (std::size_t i = 1; i < command.size(); ++i) {
    const std::string &a = command[i];
    if (kValueOptions.count(a)) {
      ++i;
      continue;
    }
    if (!a.starts_with("-"))
      paths.push_back(a);
  }
  return paths;
}

bool has_option(const std::vector<std::string> &command, const std::string &name) {
  for (const std::string &a : command)
    if (a == name || a.starts_with(name + "="))
      return true;
  return false;
}

// Usage errors found on the host, before any kernel is fetched or booted: 0 or kExitUsage.
int check_command(const Options &opts) {
  const std::string &sub = opts.command.front();
  if (!kGuestCommands.count(sub)) {
    fmt::print(stderr, "fpsim-harness vm: '{}' cannot run in a guest; SUBCOMMAND is crosscheck, run, probe or fuzz\n", sub);
    return kExitUsage;
  }
  for (const std::string &a : opts.command)
    if (a.find('\n') != std::string::npos) {
      fmt::print(stderr, "fpsim-harness vm: an argument with a newline cannot be passed to the guest\n");
      return kExitUsage;
    }
  for (const std::string &k : opts.kernels) {
    std::string why;
    if (!valid_request(k, &why)) {
      fmt::print(stderr, "fpsim-harness vm: {}\n", why);
      return kExitUsage;
    }
  }
  const std::vector<std::string> paths = trace_paths(opts.command);
  if (paths.empty() && (sub == "fuzz" || sub == "probe"))
    return 0;
  if (paths.empty()) {
    fmt::print(stderr, "fpsim-harness vm: {} needs trace paths\n", sub);
    return kExitUsage;
  }
  // A malformed trace stops the run here, as it would on the host, not once per guest.
  auto loaded = sim::load_traces(paths);
  if (auto *f = std::get_if<sim::LoadFailure>(&loaded)) {
    fmt::print(stderr, "{}{}\n", f->no_traces ? "fpsim-harness vm: " : "", f->message);
    return kExitUsage;
  }
  return 0;
}

// What the guest's harness gets: the subcommand as given, plus --guest-deadline-ms as its
// --deadline-ms unless it has one. By default none is added: 4 corpus runs under TCG gave the same
// verdicts with the harness's 300 ms, whose "blocks" also waits for every other thread to sleep.
std::vector<std::string> guest_command(const Options &opts) {
  std::vector<std::string> cmd = opts.command;
  if (opts.deadline_ms > 0 && !has_option(cmd, "--deadline-ms"))
    cmd.insert(cmd.begin() + 1, {"--deadline-ms", std::to_string(opts.deadline_ms)});
  return cmd;
}

// ---- one guest ------------------------------------------------------------------------------------

struct Boot {
  std::string accel;             // what it ran under: "kvm", "tcg"
  std::string accel_note;        // why not KVM, when it fell back
  bool started = false;
  bool init_seen = false;
  bool exit_seen = false;
  bool timed_out = false;
  bool interrupted = false;
  bool kvm_failed = false;       // KVM could not run it: retry under TCG
  int harness_exit = -1;
  double boot_s = 0;             // qemu start to init
  double run_s = 0;              // init to the harness's end
  double total_s = 0;
  std::string qemu_exit;
  std::string error;             // the guest could not start
  std::vector<std::string> output; // the harness's lines
  std::string console;           // the kernel's messages
  std::string qemu_stderr;
};

// Reads the harness's serial port as it grows: prints each line as it comes, notes the markers.
class SerialReader {
public:
  SerialReader(int fd, Boot &boot, Clock::time_point t0) : fd_(fd), boot_(boot), t0_(t0) {}

  void poll() {
    const std::string chunk = proc::read_from(fd_, offset_);
    offset_ += static_cast<off_t>(chunk.size());
    pending_ += chunk;
    for (std::size_t nl; (nl = pending_.find('\n')) != std::string::npos;) {
      std::string line = pending_.substr(0, nl);
      pending_.erase(0, nl + 1);
      if (!line.empty() && line.back() == '\r')
        line.pop_back();
      take(line);
    }
  }
  void finish() {
    poll();
    if (!pending_.empty())
      take(pending_);
    pending_.clear();
  }
  Clock::time_point exit_time() const { return exit_time_; }

private:
  void take(const std::string &line) {
    if (line.starts_with(kInitMarker) && !boot_.init_seen) {
      boot_.init_seen = true;
      boot_.boot_s = seconds_since(t0_);
      init_time_ = Clock::now();
      return;
    }
    if (line.starts_with(kExitMarker) && !boot_.exit_seen) {
      boot_.exit_seen = true;
      boot_.harness_exit = std::atoi(line.c_str() + std::strlen(kExitMarker));
      exit_time_ = Clock::now();
      boot_.run_s = std::chrono::duration<double>(exit_time_ - init_time_).count();
      return;
    }
    fmt::print("{}\n", line);
    std::fflush(stdout);
    boot_.output.push_back(line);
  }

  int fd_;
  Boot &boot_;
  Clock::time_point t0_;
  Clock::time_point init_time_;
  Clock::time_point exit_time_;
  off_t offset_ = 0;
  std::string pending_;
};

std::vector<std::string> qemu_argv(const std::string &accel, const Options &opts, const Fd &kernel, const Fd &initrd,
                                   const Fd &console, const Fd &serial) {
  // Two serial ports: ttyS0 the kernel's console, ttyS1 only the harness's output (init.sh).
  // mitigations=off: the emulated guest need not defend against itself, and page-table
  // isolation costs a lot under TCG; nothing of FUSE depends on it.
  return {kQemu, "-name", fmt::format("fpsim-harness-vm-{}", getpid()), "-accel", accel, "-cpu", "max", "-smp", "2",
          "-m", std::to_string(opts.memory_mb), "-nodefaults", "-nic", "none", "-display", "none",
          "-no-reboot", "-kernel", kernel.proc_path(), "-initrd", initrd.proc_path(),
          "-append", "console=ttyS0 quiet panic=-1 mitigations=off",
          "-serial", "file:" + console.proc_path(), "-serial", "file:" + serial.proc_path()};
}

// Under KVM, the signs that KVM cannot run the guest here (real-kernels.md: the nested
// "kvm-pvm" host stops a guest at once with an internal error and qemu stays paused).
bool kvm_broken(const std::string &qemu_stderr) {
  return qemu_stderr.find("KVM internal error") != std::string::npos ||
         qemu_stderr.find("failed to initialize kvm") != std::string::npos ||
         qemu_stderr.find("failed to set MSR") != std::string::npos;
}

Boot boot_once(const std::string &accel, const Options &opts, const std::string &vmlinuz, int initramfs) {
  Boot b;
  b.accel = accel;
  Fd kernel(open(vmlinuz.c_str(), O_RDONLY | O_CLOEXEC));
  Fd console(proc::memory_file("fpsim-vm-console"));
  Fd serial(proc::memory_file("fpsim-vm-serial"));
  Fd err(proc::memory_file("fpsim-vm-qemu"));
  if (kernel.fd < 0 || console.fd < 0 || serial.fd < 0 || err.fd < 0) {
    b.error = fmt::format("{}: {}", kernel.fd < 0 ? vmlinuz : "memfd_create", std::strerror(errno));
    return b;
  }
  const Fd initrd(fcntl(initramfs, F_DUPFD_CLOEXEC, 0));
  proc::Spawn s;
  s.argv = qemu_argv(accel, opts, kernel, initrd, console, serial);
  s.stdout_fd = err.fd;
  s.stderr_fd = err.fd;
  s.inherit = {kernel.fd, initrd.fd, console.fd, serial.fd};
  const Clock::time_point t0 = Clock::now();
  const std::optional<pid_t> pid = proc::spawn(s, &b.error);
  if (!pid)
    return b;
  b.started = true;
  SerialReader reader(serial.fd, b, t0);
  auto tick = [&] {
    reader.poll();
    if (b.exit_seen)
      return Clock::now() - reader.exit_time() > kPoweroffGrace;
    if (accel != "kvm")
      return false;
    b.kvm_failed = kvm_broken(proc::read_from(err.fd)) || (!b.init_seen && Clock::now() - t0 > kKvmBootLimit);
    return b.kvm_failed;
  };
  const proc::Exit e = proc::wait(*pid, t0 + std::chrono::seconds(opts.timeout_s), stopped, tick);
  reader.finish();
  b.total_s = seconds_since(t0);
  if (b.init_seen && !b.exit_seen) // killed mid-run: it ran until now
    b.run_s = b.total_s - b.boot_s;
  b.timed_out = e.timed_out;
  b.interrupted = e.cancelled;
  b.qemu_exit = e.describe();
  b.console = proc::read_from(console.fd);
  b.qemu_stderr = proc::read_from(err.fd);
  // qemu itself failed under KVM (e.g. "-cpu max" refused) before the guest got anywhere.
  if (accel == "kvm" && !b.init_seen && !b.interrupted && !b.timed_out && (e.exited && e.code != 0))
    b.kvm_failed = true;
  return b;
}

// The line of qemu's that says why KVM failed.
std::string kvm_reason(const Boot &b) {
  std::istringstream in(b.qemu_stderr);
  for (std::string line; std::getline(in, line);)
    if (kvm_broken(line))
      return line;
  if (!b.init_seen && b.qemu_exit.starts_with("exit"))
    return fmt::format("qemu {}: {}", b.qemu_exit, proc::last_line(b.qemu_stderr));
  return fmt::format("the guest did not reach init within {} s", kKvmBootLimit.count());
}

bool kvm_usable(std::string *why) {
  const int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    *why = fmt::format("/dev/kvm: {}", std::strerror(errno));
    return false;
  }
  close(fd);
  return true;
}

// KVM first (unless it already failed in this run, or --accel says otherwise), TCG after it.
void print_failure_context(const Boot &b);

Boot boot(const Options &opts, const std::string &vmlinuz, int initramfs) {
  static std::string kvm_failure; // the host does not change between kernels
  std::string note = kvm_failure;
  if (opts.accel != "tcg" && note.empty() && kvm_usable(&note)) {
    Boot b = boot_once("kvm", opts, vmlinuz, initramfs);
    if (!b.kvm_failed || opts.accel == "kvm")
      return b;
    note = kvm_failure = "kvm: " + kvm_reason(b);
    fmt::print("fpsim-harness vm: {}; falling back to tcg\n", note);
  }
  if (opts.accel == "kvm") {
    Boot b;
    b.error = "--accel kvm: " + note;
    return b;
  }
  Boot b = boot_once("tcg", opts, vmlinuz, initramfs);
  // Under emulation Debian's 7.2.13 has crashed before init (a fault in enqueue_task_fair, about one
  // boot in seven). Nothing has run then, so one more boot changes no verdict; it is said, not hidden.
  if (!b.init_seen && !b.interrupted && !b.timed_out && b.error.empty()) {
    print_failure_context(b);
    fmt::print("fpsim-harness vm: the guest's kernel died before init; booting it once more\n");
    std::fflush(stdout);
    b = boot_once("tcg", opts, vmlinuz, initramfs);
  }
  b.accel_note = note.empty() ? "--accel tcg" : note;
  return b;
}

// ---- reporting ------------------------------------------------------------------------------------

enum class Verdict { Passed, Failed, Skipped, Usage, Interrupted };

struct KernelResult {
  std::string request;
  std::string package;
  Verdict verdict = Verdict::Failed;
  std::string detail; // one line
};

const char *verdict_name(Verdict v) {
  switch (v) {
  case Verdict::Passed:
    return "passed";
  case Verdict::Failed:
    return "FAILED";
  case Verdict::Skipped:
    return "skipped";
  case Verdict::Usage:
    return "usage";
  case Verdict::Interrupted:
    return "interrupted";
  }
  FPSIM_UNREACHABLE("Verdict");
}

std::string last_lines(const std::string &text, std::size_t n) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);)
    if (!l.empty() && l != "\r")
      lines.push_back(l);
  std::string out;
  for (std::size_t i = lines.size() > n ? lines.size() - n : 0; i < lines.size(); ++i)
    out += "    " + lines[i] + "\n";
  return out;
}

// The harness's reason for exit 77 ("fpsim-harness: skipped: ..."), or its last line.
std::string skip_reason(const std::vector<std::string> &output) {
  for (const std::string &l : output)
    if (const std::size_t at = l.find("skipped: "); at != std::string::npos)
      return l.substr(at + 9);
  return output.empty() ? "(no reason given)" : output.back();
}

std::string timing(const Boot &b, const std::string &sub) {
  return fmt::format("{}{}, boot {:.1f} s, {} {:.1f} s, guest {:.1f} s", b.accel,
                     b.accel_note.empty() ? "" : " (" + b.accel_note + ")", b.boot_s, sub, b.run_s, b.total_s);
}

KernelResult judge(const KernelImage &img, const Boot &b, const Options &opts) {
  KernelResult r{img.request, img.package, Verdict::Failed, ""};
  const std::string &sub = opts.command.front();
  if (b.interrupted) {
    r.verdict = Verdict::Interrupted;
    r.detail = "interrupted";
  } else if (!b.started || !b.error.empty()) {
    r.detail = "qemu did not start: " + b.error;
  } else if (b.timed_out) {
    r.detail = fmt::format("the guest was killed at the --timeout deadline of {} s ({}; {})", opts.timeout_s,
                           b.init_seen ? "it had booted, the harness had not ended" : "it had not reached init",
                           timing(b, sub));
  } else if (!b.exit_seen) {
    r.detail = fmt::format("the guest ended without the harness's exit status (qemu {}, {})", b.qemu_exit, timing(b, sub));
  } else if (b.harness_exit == kExitOk) {
    r.verdict = Verdict::Passed;
    r.detail = fmt::format("{} exit 0; {}", sub, timing(b, sub));
  } else if (b.harness_exit == kExitSkip) {
    r.verdict = Verdict::Skipped;
    r.detail = skip_reason(b.output);
  } else if (b.harness_exit == kExitUsage) {
    r.verdict = Verdict::Usage;
    r.detail = fmt::format("{} exit 2 (usage) in the guest", sub);
  } else {
    r.detail = fmt::format("{} exit {}; {}", sub, b.harness_exit, timing(b, sub));
  }
  return r;
}

void print_failure_context(const Boot &b) {
  if (!b.console.empty())
    fmt::print("fpsim-harness vm: the guest's last kernel messages:\n{}", last_lines(b.console, 8));
  if (!b.qemu_stderr.empty())
    fmt::print("fpsim-harness vm: qemu said:\n{}", last_lines(b.qemu_stderr, 4));
}

std::string fetched(const KernelImage &img) {
  if (img.from_cache)
    return img.note.empty() ? "cached" : "cached, " + img.note;
  if (img.download_bytes == 0)
    return "local file";
  return fmt::format("downloaded {:.1f} MB in {:.1f} s", static_cast<double>(img.download_bytes) / 1e6,
                     img.download_seconds);
}

KernelResult run_kernel(const std::string &request, const Options &opts, int base) {
  if (is_version(request)) {
    fmt::print("== vm {}: resolving and fetching (cache {})\n", request, cache_root());
    std::fflush(stdout);
  }
  std::string why;
  const std::optional<KernelImage> img = obtain_kernel(request, stopped, &why);
  if (stopped())
    return {request, "", Verdict::Interrupted, "interrupted"};
  if (!img)
    return {request, "", Verdict::Skipped, "the kernel cannot be had: " + why};
  fmt::print("== vm {}: {} ({}; {}{})\n", request, img->package, fetched(*img), img->fuse_config,
             img->fuse_module.empty() ? "" : ", fuse.ko loaded by init");
  std::fflush(stdout);
  const Fd initramfs(initramfs_for(base, img->fuse_module, stopped, &why));
  if (initramfs.fd < 0)
    return {request, img->package, Verdict::Failed, "initramfs: " + why};
  const Boot b = boot(opts, img->vmlinuz, initramfs.fd);
  KernelResult r = judge(*img, b, opts);
  if (r.verdict == Verdict::Failed && !b.exit_seen)
    print_failure_context(b);
  fmt::print("== vm {}: {}: {}\n", request, verdict_name(r.verdict), r.detail);
  std::fflush(stdout);
  return r;
}

int summarize(const std::vector<KernelResult> &results) {
  std::size_t passed = 0, failed = 0, skipped = 0, usage = 0;
  for (const KernelResult &r : results) {
    fmt::print("fpsim-harness vm: {} {}{}: {}\n", verdict_name(r.verdict), r.request,
               r.package.empty() || r.package == r.request ? "" : " (" + r.package + ")", r.detail);
    passed += r.verdict == Verdict::Passed;
    failed += r.verdict == Verdict::Failed;
    skipped += r.verdict == Verdict::Skipped;
    usage += r.verdict == Verdict::Usage;
  }
  fmt::print("fpsim-harness vm: {} kernels: {} passed, {} failed, {} skipped\n", results.size(), passed, failed + usage,
             skipped);
  if (usage)
    return kExitUsage;
  if (failed)
    return kExitFailed;
  return passed ? kExitOk : kExitSkip;
}

// The host tools a guest needs; false after a one-line "skipped" message.
bool host_tools() {
  for (const auto &[tool, package] : {std::pair{kQemu, "qemu-system-x86"}, std::pair{"busybox", "busybox-static"},
                                      std::pair{"cpio", "cpio"}})
    if (!proc::find_program(tool)) {
      fmt::print("fpsim-harness vm: skipped: {} not found (package {})\n", tool, package);
      return false;
    }
  return true;
}

int interrupted_exit() {
  fmt::print(stderr, "fpsim-harness vm: interrupted by signal {}; the guest was killed\n", static_cast<int>(g_signal));
  return 128 + g_signal;
}

} // namespace

CLI::App *add_subcommand(CLI::App &app, Options *opts) {
  CLI::App *vm = app.add_subcommand(
      "vm", "boot kernels under qemu and run a harness subcommand inside each (vm --kernel K -- crosscheck PATH...)");
  vm->add_option("--kernel", opts->kernels,
                 "a Debian kernel version (7.2.13, 6.12.117, 7.3-rc7, a line: 7.3), a .deb or a vmlinuz; repeatable")
      ->required()
      ->expected(1)
      // One value per --kernel: otherwise CLI11 reads a `--` right after it as the end of this
      // option's values and the subcommand's own options as the vm's.
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  vm->add_option("--timeout", opts->timeout_s, "seconds a guest may take, boot and run, before it is killed (default 3600)")
      ->check(CLI::Range(1, 86400));
  vm->add_option("--accel", opts->accel, "auto (kvm, else tcg; default), kvm or tcg")
      ->check(CLI::IsMember({"auto", "kvm", "tcg"}));
  vm->add_option("--memory", opts->memory_mb, "guest memory in MiB (default 1024)")->check(CLI::Range(128, 16384));
  vm->add_option("--guest-deadline-ms", opts->deadline_ms,
                 "--deadline-ms for the guest's harness, unless the subcommand has one (default: its own)")
      ->check(CLI::Range(10, 60000));
  vm->add_option("SUBCOMMAND", opts->command, "after --: crosscheck, run or fuzz, and its arguments")->required();
  return vm;
}

int run(const Options &opts) {
  FPSIM_ASSERT(!opts.command.empty() && !opts.kernels.empty(), "CLI11 requires both");
  if (int rc = check_command(opts); rc != 0)
    return rc;
  if (!host_tools())
    return kExitSkip;
  install_signal_handlers();
  GuestPlan plan;
  plan.cwd = fs::current_path().string();
  plan.harness_args = guest_command(opts);
  plan.host_paths = trace_paths(opts.command);
  std::string why;
  const Fd base(build_base_initramfs(plan, stopped, &why));
  if (stopped())
    return interrupted_exit();
  if (base.fd < 0) {
    fmt::print("fpsim-harness vm: cannot build the initramfs: {}\n", why);
    return kExitFailed;
  }
  std::vector<KernelResult> results;
  for (const std::string &k : opts.kernels) {
    results.push_back(run_kernel(k, opts, base.fd));
    if (stopped())
      return interrupted_exit();
  }
  return summarize(results);
}

} // namespace fpsim::harness::vm
