#include "file_store.h"

#include "wire.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace fpsim::harness {

namespace fattr = proto::fattr;

// ---- MemoryFiles ------------------------------------------------------------------------------------

void MemoryFiles::add(const std::string &name, std::string content) {
  if (content_.count(name) == 0)
    order_.push_back(name);
  content_[name] = std::move(content);
}

int MemoryFiles::create(const std::string &name, std::uint32_t) {
  if (content_.count(name) != 0)
    return EEXIST;
  add(name, options_.created_content.empty() ? "FUSE:" + name + "\n" : options_.created_content);
  return 0;
}

void MemoryFiles::remove(const std::string &name) {
  content_.erase(name);
  std::erase(order_, name);
}

int MemoryFiles::attr(const std::string &name, proto::fuse_attr &attr) const {
  auto it = content_.find(name);
  if (it == content_.end())
    return ENOENT;
  attr.size = it->second.size();
  attr.blocks = (attr.size + 511) / 512;
  attr.mode = S_IFREG | 0666;
  return 0;
}

int MemoryFiles::setattr(const std::string &name, const proto::fuse_setattr_in &set) {
  auto it = content_.find(name);
  if (it == content_.end())
    return ENOENT;
  if ((set.valid & fattr::SIZE) && !options_.keep_size_on_truncate)
    it->second.resize(set.size);
  return 0;
}

int MemoryFiles::read(const std::string &name, std::uint64_t offset, std::uint32_t size,
                      std::string &data) const {
  auto it = content_.find(name);
  if (it == content_.end())
    return ENOENT;
  data = offset >= it->second.size() ? std::string() : it->second.substr(offset, size);
  return 0;
}

int MemoryFiles::write(const std::string &name, std::uint64_t offset, std::string_view data,
                       std::uint32_t &written) {
  auto it = content_.find(name);
  if (it == content_.end())
    return ENOENT;
  std::string &content = it->second;
  if (content.size() < offset + data.size())
    content.resize(offset + data.size());
  content.replace(offset, data.size(), data);
  written = static_cast<std::uint32_t>(data.size());
  return 0;
}

// ---- DirectoryFiles ---------------------------------------------------------------------------------

std::unique_ptr<DirectoryFiles> DirectoryFiles::open(std::string dir, const std::vector<std::string> &names,
                                                     std::string &err) {
  std::unique_ptr<DirectoryFiles> files(new DirectoryFiles(std::move(dir)));
  for (const std::string &name : names) {
    const std::string path = files->dir_ + "/" + name;
    const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
      err = wire::errno_text("open " + path, errno);
      return nullptr;
    }
    files->fds_[name] = fd;
    files->initial_.push_back(name);
  }
  return files;
}

DirectoryFiles::~DirectoryFiles() {
  for (const auto &[name, fd] : fds_)
    ::close(fd);
}

int DirectoryFiles::fd_of(const std::string &name) const {
  auto it = fds_.find(name);
  return it == fds_.end() ? -1 : it->second;
}

int DirectoryFiles::backing_fd(const std::string &name) const { return fd_of(name); }

int DirectoryFiles::create(const std::string &name, std::uint32_t mode) {
  // The kernel sends only plain names; anything else must not escape the directory.
  if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
    return EINVAL;
  const std::string path = dir_ + "/" + name;
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode & 07777);
  if (fd < 0)
    return errno;
  fds_[name] = fd;
  return 0;
}

void DirectoryFiles::remove(const std::string &name) {
  auto it = fds_.find(name);
  if (it == fds_.end())
    return;
  ::close(it->second);
  fds_.erase(it);
  unlink((dir_ + "/" + name).c_str());
}

int DirectoryFiles::attr(const std::string &name, proto::fuse_attr &attr) const {
  struct stat st {};
  const int fd = fd_of(name);
  if (fd < 0)
    return ENOENT;
  if (fstat(fd, &st) != 0)
    return errno;
  attr.size = static_cast<std::uint64_t>(st.st_size);
  attr.blocks = static_cast<std::uint64_t>(st.st_blocks);
  attr.atime = static_cast<std::uint64_t>(st.st_atim.tv_sec);
  attr.mtime = static_cast<std::uint64_t>(st.st_mtim.tv_sec);
  attr.ctime = static_cast<std::uint64_t>(st.st_ctim.tv_sec);
  attr.atimensec = static_cast<std::uint32_t>(st.st_atim.tv_nsec);
  attr.mtimensec = static_cast<std::uint32_t>(st.st_mtim.tv_nsec);
  attr.ctimensec = static_cast<std::uint32_t>(st.st_ctim.tv_nsec);
  attr.mode = S_IFREG | (st.st_mode & 07777);
  attr.uid = st.st_uid;
  attr.gid = st.st_gid;
  return 0;
}

namespace {

// UTIME_OMIT for a time SETATTR does not set.
timespec time_of(const proto::fuse_setattr_in &set, std::uint32_t given, std::uint32_t now,
                 std::uint64_t sec, std::uint32_t nsec) {
  if (set.valid & now)
    return {0, UTIME_NOW};
  if (set.valid & given)
    return {static_cast<time_t>(sec), static_cast<long>(nsec)};
  return {0, UTIME_OMIT};
}

} // namespace

int DirectoryFiles::setattr(const std::string &name, const proto::fuse_setattr_in &set) {
  const int fd = fd_of(name);
  if (fd < 0)
    return ENOENT;
  if ((set.valid & fattr::SIZE) && ftruncate(fd, static_cast<off_t>(set.size)) != 0)
    return errno;
  if ((set.valid & fattr::MODE) && fchmod(fd, set.mode & 07777) != 0)
    return errno;
  if (set.valid & (fattr::UID | fattr::GID)) {
    const uid_t uid = (set.valid & fattr::UID) ? set.uid : static_cast<uid_t>(-1);
    const gid_t gid = (set.valid & fattr::GID) ? set.gid : static_cast<gid_t>(-1);
    if (fchown(fd, uid, gid) != 0)
      return errno;
  }
  if (set.valid & (fattr::ATIME | fattr::MTIME | fattr::ATIME_NOW | fattr::MTIME_NOW)) {
    const timespec ts[2] = {time_of(set, fattr::ATIME, fattr::ATIME_NOW, set.atime, set.atimensec),
                            time_of(set, fattr::MTIME, fattr::MTIME_NOW, set.mtime, set.mtimensec)};
    if (futimens(fd, ts) != 0)
      return errno;
  }
  return 0;
}

int DirectoryFiles::read(const std::string &name, std::uint64_t offset, std::uint32_t size,
                         std::string &data) const {
  const int fd = fd_of(name);
  if (fd < 0)
    return ENOENT;
  data.assign(size, '\0');
  const ssize_t n = pread(fd, data.data(), data.size(), static_cast<off_t>(offset));
  if (n < 0)
    return errno;
  data.resize(static_cast<std::size_t>(n));
  return 0;
}

int DirectoryFiles::write(const std::string &name, std::uint64_t offset, std::string_view data,
                          std::uint32_t &written) {
  const int fd = fd_of(name);
  if (fd < 0)
    return ENOENT;
  const ssize_t n = pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset));
  if (n < 0)
    return errno;
  written = static_cast<std::uint32_t>(n);
  return 0;
}

} // namespace fpsim::harness
