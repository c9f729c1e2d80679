#include "vm_kernels.h"

#include "subprocess.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

namespace fpsim::harness::vm {

namespace fs = std::filesystem;
using Stop = std::function<bool()>;

namespace {

constexpr auto kUpdateTimeout = std::chrono::seconds(300);
constexpr auto kDownloadTimeout = std::chrono::seconds(900);
constexpr auto kToolTimeout = std::chrono::seconds(300);
// Suites whose kernels the private configuration sees (real-kernels.md): Debian 13's, sid's,
// experimental's and the backports of the machine's own release.
const char *const kSuites[] = {"trixie", "sid", "experimental", "bookworm-backports"};
const char *const kKeyring = "/usr/share/keyrings/debian-archive-keyring.gpg";
// apt's lists are refreshed when older than this (Debian moves its kernels every few weeks).
constexpr auto kListsMaxAge = std::chrono::hours(24);

const std::regex kVersionRequest(R"(^([0-9]+\.[0-9]+)(\.[0-9]+)?(-rc[0-9]+)?$)");

bool is_version_request(const std::string &request) {
  return std::regex_match(request, kVersionRequest) && !fs::exists(request);
}

std::string read_text(const fs::path &p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool write_text(const fs::path &p, const std::string &text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
  return static_cast<bool>(out.flush());
}

// ---- the private apt configuration ----------------------------------------------------------------

// The archive URI the machine's own apt sources use: its mirror (or proxy) is the one that works.
std::optional<std::string> debian_mirror() {
  std::istringstream deb822(read_text("/etc/apt/sources.list.d/debian.sources"));
  for (std::string line; std::getline(deb822, line);)
    if (line.rfind("URIs:", 0) == 0) {
      std::istringstream words(line.substr(5));
      std::string uri;
      if (words >> uri)
        return uri;
    }
  std::istringstream classic(read_text("/etc/apt/sources.list"));
  for (std::string line; std::getline(classic, line);) {
    std::istringstream words(line);
    std::string type, uri;
    if (!(words >> type >> uri) || type != "deb")
      continue;
    if (uri.front() == '[' && !(words >> uri)) // "deb [options] URI"
      continue;
    if (uri.find("security") == std::string::npos)
      return uri;
  }
  return std::nullopt;
}

class PrivateApt {
public:
  PrivateApt(fs::path dir, Stop stop) : dir_(std::move(dir)), stop_(std::move(stop)) {}

  // Writes sources.list; false with *why when the machine has no Debian mirror or keyring.
  bool prepare(std::string *why) {
    const std::optional<std::string> mirror = debian_mirror();
    if (!mirror) {
      *why = "no Debian archive in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list";
      return false;
    }
    if (access(kKeyring, R_OK) != 0) {
      *why = fmt::format("{}: {} (package debian-archive-keyring)", kKeyring, std::strerror(errno));
      return false;
    }
    std::error_code ec;
    fs::create_directories(dir_ / "lists" / "partial", ec);
    fs::create_directories(dir_ / "cache" / "archives" / "partial", ec);
    std::string sources;
    for (const char *suite : kSuites)
      sources += fmt::format("deb [signed-by={}] {} {} main\n", kKeyring, *mirror, suite);
    if (read_text(dir_ / "sources.list") != sources && !write_text(dir_ / "sources.list", sources)) {
      *why = fmt::format("cannot write {}", (dir_ / "sources.list").string());
      return false;
    }
    return true;
  }

  bool lists_fresh() const {
    std::error_code ec;
    const auto stamp = fs::last_write_time(dir_ / "updated", ec);
    if (ec || fs::last_write_time(dir_ / "sources.list", ec) > stamp)
      return false;
    return fs::file_time_type::clock::now() - stamp < kListsMaxAge;
  }

  bool update(std::string *why) {
    std::string out;
    const proc::Exit e = run({"apt-get", "-q", "update"}, &out, kUpdateTimeout);
    if (!e.exited || e.code != 0) {
      *why = fmt::format("apt-get update ({}): {}", e.describe(), proc::last_line(out));
      return false;
    }
    write_text(dir_ / "updated", "");
    updated_ = true;
    return true;
  }
  bool updated_this_run() const { return updated_; }

  // apt-get/apt-cache ARGS with the private configuration; output in *out.
  proc::Exit run(std::vector<std::string> args, std::string *out, std::chrono::seconds timeout,
                 const std::string &cwd = "") const {
    std::vector<std::string> argv{args.front()};
    for (const std::string &o : options()) {
      argv.push_back("-o");
      argv.push_back(o);
    }
    argv.insert(argv.end(), args.begin() + 1, args.end());
    return proc::run(argv, out, timeout, stop_, cwd);
  }

private:
  std::vector<std::string> options() const {
    std::vector<std::string> o{"Dir::Etc::sourcelist=" + (dir_ / "sources.list").string(),
                               "Dir::Etc::sourceparts=-",
                               "Dir::State::Lists=" + (dir_ / "lists").string(),
                               "Dir::Cache=" + (dir_ / "cache").string()};
    // apt drops to _apt for downloads, who cannot write into root's cache: it warns, then
    // downloads as root anyway. Say so up front.
    if (geteuid() == 0)
      o.push_back("APT::Sandbox::User=root");
    return o;
  }

  fs::path dir_;
  Stop stop_;
  bool updated_ = false;
};

// ---- resolving a version to a package -------------------------------------------------------------

struct Candidate {
  std::string name;
  std::string version;
  std::string abi; // "7.2.13+deb14", "7.3": the part of the name between the prefix and -amd64
  bool binary = false; // linux-binary-* (7.x: the image; linux-image-* there is a meta package)
};

// The upstream part of a Debian version: no epoch, no Debian revision.
std::string upstream_of(const std::string &version) {
  std::string v = version.substr(version.find(':') == std::string::npos ? 0 : version.find(':') + 1);
  const std::size_t dash = v.rfind('-');
  return dash == std::string::npos ? v : v.substr(0, dash);
}

bool version_matches(const std::string &request, const std::string &version) {
  std::smatch m;
  std::regex_match(request, m, kVersionRequest);
  const std::string upstream = upstream_of(version);
  if (m[2].matched || m[3].matched) { // an exact version; Debian spells -rc7 as ~rc7
    std::string want = request;
    if (const std::size_t rc = want.find("-rc"); rc != std::string::npos)
      want.replace(rc, 1, "~");
    return upstream == want;
  }
  const std::string line = m[1];
  return upstream == line || upstream.rfind(line + ".", 0) == 0 || upstream.rfind(line + "~", 0) == 0;
}

std::vector<std::string> split_words(const std::string &text) {
  std::istringstream in(text);
  std::vector<std::string> out;
  for (std::string w; in >> w;)
    out.push_back(w);
  return out;
}

std::string trim(std::string s) {
  s.erase(0, s.find_first_not_of(" \t"));
  s.erase(s.find_last_not_of(" \t\r") + 1);
  return s;
}

// Every (package, version) of the plain amd64 flavour (no cloud, rt, dbg or unsigned) of the line.
std::optional<std::vector<Candidate>> candidates(const PrivateApt &apt, const std::string &line, std::string *why) {
  static const std::regex name_re(R"(^linux-(image|binary)-([0-9][^-]*)-amd64$)");
  std::vector<std::string> names;
  for (const char *prefix : {"linux-image-", "linux-binary-"}) {
    std::string out;
    const proc::Exit e = apt.run({"apt-cache", "pkgnames", prefix}, &out, kToolTimeout);
    if (!e.exited || e.code > 1) {
      *why = fmt::format("apt-cache pkgnames ({}): {}", e.describe(), proc::last_line(out));
      return std::nullopt;
    }
    for (const std::string &n : split_words(out)) {
      std::smatch m;
      if (std::regex_match(n, m, name_re) && version_matches(line, m[2].str() + "-0"))
        names.push_back(n);
    }
  }
  std::vector<Candidate> out;
  if (names.empty())
    return out;
  std::vector<std::string> args{"apt-cache", "madison"};
  args.insert(args.end(), names.begin(), names.end());
  std::string text;
  const proc::Exit e = apt.run(args, &text, kToolTimeout);
  if (!e.exited || e.code != 0) {
    *why = fmt::format("apt-cache madison ({}): {}", e.describe(), proc::last_line(text));
    return std::nullopt;
  }
  std::set<std::pair<std::string, std::string>> seen;
  std::istringstream lines(text);
  for (std::string l; std::getline(lines, l);) {
    // " linux-binary-7.3-amd64 | 7.3~rc7-1~exp1 | http://... experimental/main amd64 Packages"
    const std::size_t a = l.find('|');
    const std::size_t b = a == std::string::npos ? a : l.find('|', a + 1);
    if (b == std::string::npos)
      continue;
    Candidate c{trim(l.substr(0, a)), trim(l.substr(a + 1, b - a - 1)), "", false};
    std::smatch m;
    if (!std::regex_match(c.name, m, name_re) || !seen.insert({c.name, c.version}).second)
      continue;
    c.binary = m[1] == "binary";
    c.abi = m[2];
    out.push_back(std::move(c));
  }
  return out;
}

// a > b as Debian orders versions.
bool newer(const std::string &a, const std::string &b, const Stop &stop) {
  std::string out;
  const proc::Exit e = proc::run({"dpkg", "--compare-versions", a, "gt", b}, &out, kToolTimeout, stop);
  return e.exited && e.code == 0;
}

std::optional<Candidate> best_match(const std::vector<Candidate> &all, const std::string &request, const Stop &stop) {
  std::optional<Candidate> best;
  for (const Candidate &c : all) {
    if (!version_matches(request, c.version))
      continue;
    if (!best || newer(c.version, best->version, stop) ||
        (c.version == best->version && c.binary && !best->binary))
      best = c;
  }
  return best;
}

std::string line_of(const std::string &request) {
  std::smatch m;
  std::regex_match(request, m, kVersionRequest);
  return m[1];
}

std::optional<Candidate> resolve(PrivateApt &apt, const std::string &request, std::string *why) {
  for (;;) {
    std::optional<std::vector<Candidate>> all = candidates(apt, line_of(request), why);
    if (!all)
      return std::nullopt;
    if (std::optional<Candidate> c = best_match(*all, request, {}))
      return c;
    if (!apt.updated_this_run()) { // maybe newer than our lists
      if (!apt.update(why))
        return std::nullopt;
      continue;
    }
    std::set<std::string> versions;
    for (const Candidate &c : *all)
      versions.insert(c.version);
    std::string have;
    for (const std::string &v : versions)
      have += (have.empty() ? "" : ", ") + v;
    std::string suites;
    for (const char *s : kSuites)
      suites += (suites.empty() ? "" : ", ") + std::string(s);
    *why = fmt::format("no amd64 kernel package of version {} in Debian {} (line {}: {})", request, suites,
                       line_of(request), have.empty() ? "none" : have);
    return std::nullopt;
  }
}

// ---- unpacking ------------------------------------------------------------------------------------

struct Unpacked {
  fs::path vmlinuz;
  fs::path config;
  fs::path fuse_ko; // possibly compressed (.ko.xz, .ko.zst, .ko.gz)
};

void scan(const fs::path &root, Unpacked *u) {
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (!it->is_regular_file(ec))
      continue;
    const fs::path &p = it->path();
    const std::string name = p.filename().string();
    const std::string parent = p.parent_path().filename().string();
    if (name == "vmlinuz" || name.rfind("vmlinuz-", 0) == 0)
      u->vmlinuz = p;
    else if ((parent == "boot" && name.rfind("config-", 0) == 0) || (name == "config" && p.string().find("/modules/") != std::string::npos))
      u->config = p;
    else if (parent == "fuse" && name.rfind("fuse.ko", 0) == 0)
      u->fuse_ko = p;
  }
}

// "y", "m", "not set", or "" when the config does not mention it.
std::string fuse_setting(const std::string &config) {
  std::istringstream in(config);
  for (std::string line; std::getline(in, line);) {
    if (line == "CONFIG_FUSE_FS=y")
      return "y";
    if (line == "CONFIG_FUSE_FS=m")
      return "m";
    if (line == "# CONFIG_FUSE_FS is not set")
      return "not set";
  }
  return "";
}

bool extract(const fs::path &deb, const fs::path &into, const Stop &stop, std::string *why) {
  std::string out;
  const proc::Exit e = proc::run({"dpkg-deb", "-x", deb.string(), into.string()}, &out, kToolTimeout, stop);
  if (!e.exited || e.code != 0) {
    *why = fmt::format("dpkg-deb -x {} ({}): {}", deb.string(), e.describe(), proc::last_line(out));
    return false;
  }
  return true;
}

// Writes `ko` uncompressed to `to` (the guest's busybox insmod takes a plain module).
bool decompress_module(const fs::path &ko, const fs::path &to, const Stop &stop, std::string *why) {
  std::error_code ec;
  const std::string ext = ko.extension().string();
  if (ext == ".ko") {
    fs::copy_file(ko, to, fs::copy_options::overwrite_existing, ec);
    if (ec)
      *why = fmt::format("copy {}: {}", ko.string(), ec.message());
    return !ec;
  }
  const char *tool = ext == ".xz" ? "xz" : ext == ".zst" ? "zstd" : ext == ".gz" ? "gzip" : nullptr;
  if (tool == nullptr) {
    *why = fmt::format("{}: unknown module compression", ko.string());
    return false;
  }
  const int fd = open(to.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    *why = fmt::format("{}: {}", to.string(), std::strerror(errno));
    return false;
  }
  proc::Spawn s;
  s.argv = {tool, "-dc", ko.string()};
  s.stdout_fd = fd;
  std::string err;
  std::optional<pid_t> pid = proc::spawn(s, &err);
  close(fd);
  if (!pid) {
    *why = err;
    return false;
  }
  const proc::Exit e = proc::wait(*pid, std::chrono::steady_clock::now() + kToolTimeout, stop);
  if (!e.exited || e.code != 0) {
    *why = fmt::format("{} -dc {}: {}", tool, ko.string(), e.describe());
    return false;
  }
  return true;
}

// The files a guest needs, from the unpacked tree into `entry` (a fresh directory).
bool stage_entry(const Unpacked &u, const fs::path &entry, const Stop &stop, std::string *why) {
  std::error_code ec;
  fs::create_directories(entry, ec);
  fs::copy_file(u.vmlinuz, entry / "vmlinuz", ec);
  if (!ec && !u.config.empty())
    fs::copy_file(u.config, entry / "config", ec);
  if (ec) {
    *why = fmt::format("{}: {}", entry.string(), ec.message());
    return false;
  }
  if (!u.fuse_ko.empty() && fuse_setting(read_text(u.config)) == "m")
    return decompress_module(u.fuse_ko, entry / "fuse.ko", stop, why);
  return true;
}

// The image of a complete cache entry; nullopt with *why when FUSE is off in its config.
std::optional<KernelImage> from_entry(const fs::path &entry, KernelImage img, std::string *why) {
  img.vmlinuz = (entry / "vmlinuz").string();
  const std::string setting = fuse_setting(read_text(entry / "config"));
  img.fuse_config = setting.empty() ? "unknown (no config)" : "CONFIG_FUSE_FS=" + setting;
  if (setting == "not set") {
    *why = fmt::format("{}: CONFIG_FUSE_FS is not set", img.package);
    return std::nullopt;
  }
  if (setting == "m") {
    if (!fs::exists(entry / "fuse.ko")) {
      *why = fmt::format("{}: CONFIG_FUSE_FS=m but the package has no fuse.ko", img.package);
      return std::nullopt;
    }
    img.fuse_module = (entry / "fuse.ko").string();
  }
  std::istringstream meta(read_text(entry / "complete"));
  meta >> img.download_bytes >> img.download_seconds;
  return img;
}

// Only one harness at a time fetches into the cache; the others wait (polling `stop`).
class CacheLock {
public:
  bool acquire(const fs::path &root, const Stop &stop, std::string *why) {
    fd_ = open((root / "lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) {
      *why = fmt::format("{}: {}", (root / "lock").string(), std::strerror(errno));
      return false;
    }
    while (flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      if (stop && stop()) {
        *why = "interrupted";
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return true;
  }
  ~CacheLock() {
    if (fd_ >= 0)
      close(fd_);
  }

private:
  int fd_ = -1;
};

// Removes a directory tree on every path out (a fetch interrupted half-way leaves nothing).
struct ScopedDir {
  fs::path path;
  ~ScopedDir() {
    std::error_code ec;
    if (!path.empty())
      fs::remove_all(path, ec);
  }
};

// apt-get download NAME=VERSION into `dir`; the .deb's path, its size and the time it took.
std::optional<fs::path> download(const PrivateApt &apt, const std::string &name, const std::string &version,
                                 const fs::path &dir, KernelImage *img, std::string *why) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  const auto t0 = std::chrono::steady_clock::now();
  std::string out;
  const proc::Exit e = apt.run({"apt-get", "-q", "download", name + "=" + version}, &out, kDownloadTimeout, dir.string());
  if (!e.exited || e.code != 0) {
    *why = fmt::format("apt-get download {}={} ({}): {}", name, version, e.describe(), proc::last_line(out));
    return std::nullopt;
  }
  img->download_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (const auto &f : fs::directory_iterator(dir, ec))
    if (f.path().extension() == ".deb" && f.path().filename().string().rfind(name + "_", 0) == 0) {
      img->download_bytes += fs::file_size(f.path(), ec);
      return f.path();
    }
  *why = fmt::format("apt-get download {}={}: no .deb appeared", name, version);
  return std::nullopt;
}

// Downloads and unpacks a resolved package (and, for 7.x's split packages, linux-base for the
// config and linux-modules when FUSE is a module) into a new cache entry.
bool fetch(const PrivateApt &apt, const Candidate &c, const fs::path &work, const fs::path &entry, const Stop &stop,
           KernelImage *img, std::string *why) {
  const fs::path tree = work / "tree";
  Unpacked u;
  std::optional<fs::path> deb = download(apt, c.name, c.version, work / "deb", img, why);
  if (!deb || !extract(*deb, tree, stop, why))
    return false;
  scan(tree, &u);
  if (u.config.empty() && c.binary) {
    deb = download(apt, "linux-base-" + c.abi + "-amd64", c.version, work / "deb", img, why);
    if (!deb || !extract(*deb, tree, stop, why))
      return false;
    scan(tree, &u);
  }
  if (u.fuse_ko.empty() && c.binary && fuse_setting(read_text(u.config)) == "m") {
    deb = download(apt, "linux-modules-" + c.abi + "-amd64", c.version, work / "deb", img, why);
    if (!deb || !extract(*deb, tree, stop, why))
      return false;
    scan(tree, &u);
  }
  if (u.vmlinuz.empty()) {
    *why = fmt::format("{} {}: no vmlinuz in the package", c.name, c.version);
    return false;
  }
  return stage_entry(u, entry, stop, why);
}

// Makes `staged` the cache entry `entry`, with its "complete" file written last.
bool publish(const fs::path &staged, const fs::path &entry, const KernelImage &img, std::string *why) {
  if (!write_text(staged / "complete", fmt::format("{} {:.2f}\n", img.download_bytes, img.download_seconds))) {
    *why = fmt::format("cannot write {}", (staged / "complete").string());
    return false;
  }
  std::error_code ec;
  fs::remove_all(entry, ec);
  fs::rename(staged, entry, ec);
  if (ec)
    *why = fmt::format("rename {} -> {}: {}", staged.string(), entry.string(), ec.message());
  return !ec;
}

std::string entry_name(const std::string &name, const std::string &version) {
  std::string v = version;
  std::replace(v.begin(), v.end(), ':', '_');
  return name + "_" + v;
}

// The newest complete cache entry of the request, for when Debian has moved on (or is out of reach).
std::optional<Candidate> cached_match(const fs::path &root, const std::string &request, const Stop &stop) {
  static const std::regex entry_re(R"(^(linux-(image|binary)-([0-9][^-]*)-amd64)_(.+)$)");
  std::vector<Candidate> found;
  std::error_code ec;
  for (const auto &f : fs::directory_iterator(root, ec)) {
    const std::string name = f.path().filename().string();
    std::smatch m;
    if (std::regex_match(name, m, entry_re) && fs::exists(f.path() / "complete"))
      found.push_back(Candidate{m[1], m[4], m[3], m[2] == "binary"});
  }
  return best_match(found, request, stop);
}

std::optional<KernelImage> obtain_version(const fs::path &root, KernelImage img, const Stop &stop, std::string *why) {
  PrivateApt apt(root / "apt", stop);
  if (!apt.prepare(why))
    return std::nullopt;
  // Stale lists are refreshed; when that fails (offline) the old ones still resolve.
  std::string update_why;
  if (!apt.lists_fresh() && !apt.update(&update_why) && !fs::exists(root / "apt" / "updated")) {
    *why = update_why;
    return std::nullopt;
  }
  std::optional<Candidate> c = resolve(apt, img.request, why);
  if (!c && (c = cached_match(root, img.request, stop)))
    img.note = "no longer in Debian's lists";
  if (!c)
    return std::nullopt;
  img.package = c->name + " " + c->version;
  const fs::path entry = root / entry_name(c->name, c->version);
  if (fs::exists(entry / "complete")) {
    img.from_cache = true;
    return from_entry(entry, img, why);
  }
  ScopedDir work{root / fmt::format(".partial-{}", getpid())};
  if (!fetch(apt, *c, work.path, work.path / "entry", stop, &img, why) || !publish(work.path / "entry", entry, img, why))
    return std::nullopt;
  return from_entry(entry, img, why);
}

std::optional<KernelImage> obtain_deb(const fs::path &root, KernelImage img, const Stop &stop, std::string *why) {
  const fs::path deb = fs::absolute(img.request);
  std::string fields;
  const proc::Exit e = proc::run({"dpkg-deb", "-f", deb.string(), "Package", "Version"}, &fields, kToolTimeout, stop);
  if (!e.exited || e.code != 0) {
    *why = fmt::format("{}: not a Debian package ({})", img.request, proc::last_line(fields));
    return std::nullopt;
  }
  std::string package, version;
  std::istringstream in(fields);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("Package: ", 0) == 0)
      package = line.substr(9);
    if (line.rfind("Version: ", 0) == 0)
      version = line.substr(9);
  }
  img.package = package + " " + version;
  struct stat st {};
  stat(deb.c_str(), &st);
  // Keyed by name, size and mtime: a rebuilt .deb of the same name is unpacked again.
  const fs::path entry = root / fmt::format("deb-{}-{}-{}", deb.filename().string(), st.st_size, st.st_mtime);
  std::error_code ec;
  if (fs::exists(entry / "complete")) {
    img.from_cache = true;
    return from_entry(entry, img, why);
  }
  ScopedDir work{root / fmt::format(".partial-{}", getpid())};
  fs::create_directories(work.path, ec);
  Unpacked u;
  if (!extract(deb, work.path / "tree", stop, why))
    return std::nullopt;
  scan(work.path / "tree", &u);
  if (u.vmlinuz.empty()) {
    *why = fmt::format("{}: no vmlinuz in the package", img.request);
    return std::nullopt;
  }
  if (!stage_entry(u, work.path / "entry", stop, why) || !publish(work.path / "entry", entry, img, why))
    return std::nullopt;
  return from_entry(entry, img, why);
}

} // namespace

std::string cache_root() {
  if (const char *xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && xdg[0] == '/')
    return std::string(xdg) + "/fpsim/kernels";
  if (const char *home = std::getenv("HOME"); home != nullptr && home[0] != '\0')
    return std::string(home) + "/.cache/fpsim/kernels";
  return "";
}

bool is_version(const std::string &request) { return is_version_request(request); }

bool valid_request(const std::string &request, std::string *why) {
  if (is_version_request(request))
    return true;
  std::error_code ec;
  if (fs::is_regular_file(request, ec))
    return true;
  *why = fmt::format("--kernel {}: neither a kernel version (7.2.13, 6.12.117, 7.3-rc7, 7.3) nor a .deb or "
                     "vmlinuz file",
                     request);
  return false;
}

std::optional<KernelImage> obtain_kernel(const std::string &request, const Stop &stop, std::string *why) {
  KernelImage img;
  img.request = request;
  const bool version = is_version_request(request);
  if (!version && !fs::path(request).string().ends_with(".deb")) {
    img.package = request;
    img.vmlinuz = fs::absolute(request).string();
    img.fuse_config = "unknown (no config)";
    return img;
  }
  const fs::path root = cache_root();
  if (root.empty()) {
    *why = "no kernel cache: neither XDG_CACHE_HOME nor HOME is set";
    return std::nullopt;
  }
  std::error_code ec;
  fs::create_directories(root, ec);
  CacheLock lock;
  if (!lock.acquire(root, stop, why))
    return std::nullopt;
  // A fetch killed half-way (SIGKILL) left its work directory: nobody else holds the lock.
  for (const auto &f : fs::directory_iterator(root, ec))
    if (f.path().filename().string().rfind(".partial-", 0) == 0)
      fs::remove_all(f.path(), ec);
  return version ? obtain_version(root, img, stop, why) : obtain_deb(root, img, stop, why);
}

} // namespace fpsim::harness::vm
