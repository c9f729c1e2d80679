#include "vm_guest.h"

#include "guest_init_sh.h"
#include "subprocess.h"

#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <sstream>

namespace fpsim::harness::vm {

namespace fs = std::filesystem;
using Stop = std::function<bool()>;

namespace {

constexpr auto kToolTimeout = std::chrono::seconds(120);

// The staging tree: every entry is a directory, a small file written here, or a symlink to the
// host file it stands for (cpio -L archives the file the link points to).
class Staging {
public:
  bool create(std::string *why) {
    char tmpl[] = "/tmp/fpsim-vm.XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
      *why = fmt::format("mkdtemp: {}", std::strerror(errno));
      return false;
    }
    root_ = tmpl;
    return true;
  }
  ~Staging() {
    std::error_code ec;
    if (!root_.empty())
      fs::remove_all(root_, ec);
  }
  const fs::path &root() const { return root_; }

  // `guest` is an absolute guest path.
  fs::path at(const fs::path &guest) const { return root_ / guest.relative_path(); }

  bool dir(const fs::path &guest, std::string *why) {
    std::error_code ec;
    fs::create_directories(at(guest), ec);
    if (ec)
      *why = fmt::format("{}: {}", at(guest).string(), ec.message());
    return !ec;
  }
  bool file(const fs::path &guest, const std::string &text, fs::perms mode, std::string *why) {
    if (!dir(guest.parent_path(), why))
      return false;
    std::ofstream out(at(guest), std::ios::binary | std::ios::trunc);
    out << text;
    std::error_code ec;
    if (out.flush())
      fs::permissions(at(guest), mode, ec);
    if (!out || ec)
      *why = fmt::format("cannot write {}", at(guest).string());
    return out && !ec;
  }
  bool link(const fs::path &guest, const fs::path &host, std::string *why) {
    if (!dir(guest.parent_path(), why))
      return false;
    std::error_code ec;
    if (fs::exists(fs::symlink_status(at(guest))))
      return true; // the same library named twice, or a trace inside a directory also given
    fs::create_symlink(fs::canonical(host, ec), at(guest), ec);
    if (ec)
      *why = fmt::format("{}: {}", host.string(), ec.message());
    return !ec;
  }

private:
  fs::path root_;
};

// The shared libraries and the loader `binary` needs, as ldd lists them (none for a static one).
std::optional<std::vector<std::string>> libraries(const std::string &binary, const Stop &stop, std::string *why) {
  std::string out;
  const proc::Exit e = proc::run({"ldd", binary}, &out, kToolTimeout, stop);
  std::vector<std::string> libs;
  if (out.find("not a dynamic executable") != std::string::npos || out.find("statically linked") != std::string::npos)
    return libs;
  if (!e.exited || e.code != 0) {
    *why = fmt::format("ldd {} ({}): {}", binary, e.describe(), proc::last_line(out));
    return std::nullopt;
  }
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    if (line.find("not found") != std::string::npos) {
      *why = fmt::format("ldd {}: {}", binary, line);
      return std::nullopt;
    }
    // "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "\t/lib64/ld-linux-x86-64.so.2 (0x...)"
    std::istringstream words(line);
    for (std::string w; words >> w;)
      if (w.front() == '/')
        libs.push_back(w);
  }
  return libs;
}

bool add_program(Staging &st, const fs::path &guest, const std::string &host, const Stop &stop, std::string *why) {
  std::optional<std::vector<std::string>> libs = libraries(host, stop, why);
  if (!libs || !st.link(guest, host, why))
    return false;
  for (const std::string &lib : *libs)
    if (!st.link(lib, lib, why))
      return false;
  return true;
}

// This binary, without its debug information (a RelWithDebInfo build is ~30 MB, stripped ~1 MB,
// and the guest unpacks every byte under emulation). Falls back to the unstripped file.
bool add_harness(Staging &st, const Stop &stop, std::string *why) {
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (ec) {
    *why = fmt::format("/proc/self/exe: {}", ec.message());
    return false;
  }
  if (!add_program(st, "/bin/fpsim-harness", self.string(), stop, why))
    return false;
  const fs::path stripped = st.root() / "fpsim-harness.stripped";
  std::string out;
  const proc::Exit e = proc::run({"strip", "--strip-debug", "-o", stripped.string(), self.string()}, &out,
                                 kToolTimeout, stop);
  if (e.exited && e.code == 0) {
    fs::remove(st.at("/bin/fpsim-harness"), ec);
    fs::rename(stripped, st.at("/bin/fpsim-harness"), ec);
  }
  return true;
}

bool add_busybox(Staging &st, const Stop &stop, std::string *why) {
  const std::optional<std::string> busybox = proc::find_program("busybox");
  if (!busybox) {
    *why = "busybox: not found in PATH (package busybox-static)";
    return false;
  }
  return add_program(st, "/bin/busybox", *busybox, stop, why);
}

bool add_traces(Staging &st, const std::vector<std::string> &paths, std::string *why) {
  for (const std::string &p : paths) {
    const fs::path host = fs::absolute(p).lexically_normal();
    std::error_code ec;
    if (fs::is_regular_file(host, ec)) {
      if (!st.link(host, host, why))
        return false;
      continue;
    }
    if (!st.dir(host, why))
      return false;
    for (auto it = fs::recursive_directory_iterator(host, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec))
      if (it->is_regular_file(ec) && it->path().extension() == ".trace" &&
          !st.link(host / it->path().lexically_relative(host), it->path(), why))
        return false;
    if (ec) {
      *why = fmt::format("{}: {}", host.string(), ec.message());
      return false;
    }
  }
  return true;
}

std::string args_file(const GuestPlan &plan) {
  std::string text = plan.cwd + "\n";
  for (const std::string &a : plan.harness_args)
    text += a + "\n";
  return text;
}

// cpio -o of `names` (relative to `dir`), appended to `out`.
bool cpio(const fs::path &dir, const std::vector<std::string> &names, int out, const Stop &stop, std::string *why) {
  const int list = proc::memory_file("fpsim-vm-cpio-list");
  const int err = proc::memory_file("fpsim-vm-cpio-err");
  std::string text;
  for (const std::string &n : names)
    text += n + "\n";
  const bool wrote = list >= 0 && write(list, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
                     lseek(list, 0, SEEK_SET) == 0;
  proc::Spawn s;
  // newc, root-owned in the guest whoever runs the harness, links followed to their files.
  s.argv = {"cpio", "-o", "-H", "newc", "-L", "-R", "0:0", "--quiet"};
  s.cwd = dir.string();
  s.stdin_fd = list;
  s.stdout_fd = out;
  s.stderr_fd = err;
  std::optional<pid_t> pid;
  if (wrote)
    pid = proc::spawn(s, why);
  else
    *why = fmt::format("cpio file list: {}", std::strerror(errno));
  bool ok = false;
  if (pid) {
    const proc::Exit e = proc::wait(*pid, std::chrono::steady_clock::now() + kToolTimeout, stop);
    ok = e.exited && e.code == 0;
    if (!ok)
      *why = fmt::format("cpio ({}): {}", e.describe(), proc::last_line(proc::read_from(err)));
  }
  if (list >= 0)
    close(list);
  if (err >= 0)
    close(err);
  return ok;
}

// Every entry under the staging root, parents before children, as cpio wants them.
std::vector<std::string> entries(const fs::path &root) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec))
    out.push_back(it->path().lexically_relative(root).string());
  return out;
}

} // namespace

int build_base_initramfs(const GuestPlan &plan, const Stop &stop, std::string *why) {
  Staging st;
  if (!st.create(why))
    return -1;
  for (const char *d : {"/dev", "/proc", "/sys", "/tmp", "/bin"})
    if (!st.dir(d, why))
      return -1;
  if (!st.file("/init", kInitScript, fs::perms(0755), why) ||
      !st.file("/fpsim/args", args_file(plan), fs::perms(0644), why) || !st.dir(plan.cwd, why) ||
      !add_busybox(st, stop, why) || !add_harness(st, stop, why) || !add_traces(st, plan.host_paths, why))
    return -1;
  const int out = proc::memory_file("fpsim-vm-initramfs");
  if (out < 0) {
    *why = fmt::format("memfd_create: {}", std::strerror(errno));
    return -1;
  }
  if (!cpio(st.root(), entries(st.root()), out, stop, why)) {
    close(out);
    return -1;
  }
  return out;
}

int initramfs_for(int base, const std::string &fuse_module, const Stop &stop, std::string *why) {
  const int out = proc::memory_file("fpsim-vm-initramfs");
  struct stat st {};
  if (out < 0 || fstat(base, &st) != 0) {
    *why = fmt::format("initramfs: {}", std::strerror(errno));
    if (out >= 0)
      close(out);
    return -1;
  }
  off_t offset = 0;
  while (offset < st.st_size) {
    const ssize_t n = sendfile(out, base, &offset, static_cast<std::size_t>(st.st_size - offset));
    if (n <= 0) {
      *why = fmt::format("initramfs copy: {}", std::strerror(errno));
      close(out);
      return -1;
    }
  }
  if (!fuse_module.empty()) {
    const fs::path module(fuse_module);
    // The cache names it fuse.ko: archived from its directory, it lands at /fuse.ko.
    if (module.filename() != "fuse.ko" || !cpio(module.parent_path(), {"fuse.ko"}, out, stop, why)) {
      if (why->empty())
        *why = fmt::format("{}: expected a file named fuse.ko", fuse_module);
      close(out);
      return -1;
    }
  }
  return out;
}

} // namespace fpsim::harness::vm
