#include "file_store.h"

#include "wire.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <map>

namespace fpsim::harness {
namespace {

namespace fattr = proto::fattr;

class MemoryFiles final : public FileStore {
public:
  explicit MemoryFiles(MemoryFilesOptions options) : options_(std::move(options)) {}

  void add(const std::string &name, std::string content) {
    if (content_.count(name) == 0)
      order_.push_back(name);
    content_[name] = std::move(content);
  }
  std::vector<std::string> names() const override { return order_; }
  int create(const std::string &name, std::uint32_t) override {
    if (content_.count(name) != 0)
      return EEXIST;
    add(name, options_.created_content.empty() ? "FUSE:" + name + "\n" : options_.created_content);
    return 0;
  }
  void remove(const std::string &name) override {
    content_.erase(name);
    std::erase(order_, name);
  }
  int attr(const std::string &name, proto::fuse_attr &attr) const override {
    const std::string *content = find(name);
    if (content == nullptr)
      return ENOENT;
    attr.size = content->size();
    attr.blocks = (attr.size + 511) / 512;
    attr.mode = S_IFREG | 0666;
    return 0;
  }
  int setattr(const std::string &name, const proto::fuse_setattr_in &set) override {
    std::string *content = find(name);
    if (content == nullptr)
      return ENOENT;
    if ((set.valid & fattr::SIZE) && !options_.keep_size_on_truncate)
      content->resize(set.size);
    return 0;
  }
  int read(const std::string &name, std::uint64_t offset, std::uint32_t size, std::string &data) const override {
    const std::string *content = find(name);
    if (content == nullptr)
      return ENOENT;
    data = offset >= content->size() ? std::string() : content->substr(offset, size);
    return 0;
  }
  int write(const std::string &name, std::uint64_t offset, std::string_view data, std::uint32_t &written) override {
    std::string *content = find(name);
    if (content == nullptr)
      return ENOENT;
    if (content->size() < offset + data.size())
      content->resize(offset + data.size());
    content->replace(offset, data.size(), data);
    written = static_cast<std::uint32_t>(data.size());
    return 0;
  }
  int backing_fd(const std::string &) const override { return -1; }

private:
  std::string *find(const std::string &name) {
    auto it = content_.find(name);
    return it == content_.end() ? nullptr : &it->second;
  }
  const std::string *find(const std::string &name) const { return const_cast<MemoryFiles *>(this)->find(name); }

  MemoryFilesOptions options_;
  std::map<std::string, std::string> content_;
  std::vector<std::string> order_;
};

// UTIME_OMIT for a time SETATTR does not set.
timespec time_of(const proto::fuse_setattr_in &set, std::uint32_t given, std::uint32_t now, std::uint64_t sec,
                 std::uint32_t nsec) {
  if (set.valid & now)
    return {0, UTIME_NOW};
  if (set.valid & given)
    return {static_cast<time_t>(sec), static_cast<long>(nsec)};
  return {0, UTIME_OMIT};
}

class DirectoryFiles final : public FileStore {
public:
  explicit DirectoryFiles(std::string dir) : dir_(std::move(dir)) {}
  ~DirectoryFiles() override {
    for (const auto &[name, fd] : fds_)
      ::close(fd);
  }
  DirectoryFiles(const DirectoryFiles &) = delete;
  DirectoryFiles &operator=(const DirectoryFiles &) = delete;

  int add(const std::string &name) {
    const int fd = ::open((dir_ + "/" + name).c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0)
      return errno;
    fds_[name] = fd;
    initial_.push_back(name);
    return 0;
  }
  std::vector<std::string> names() const override { return initial_; }
  int create(const std::string &name, std::uint32_t mode) override {
    // The kernel sends only plain names; anything else must not escape the directory.
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
      return EINVAL;
    const int fd = ::open((dir_ + "/" + name).c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                          mode & 07777);
    if (fd < 0)
      return errno;
    fds_[name] = fd;
    return 0;
  }
  void remove(const std::string &name) override {
    auto it = fds_.find(name);
    if (it == fds_.end())
      return;
    ::close(it->second);
    fds_.erase(it);
    unlink((dir_ + "/" + name).c_str());
  }
  int attr(const std::string &name, proto::fuse_attr &attr) const override;
  int setattr(const std::string &name, const proto::fuse_setattr_in &set) override;
  int read(const std::string &name, std::uint64_t offset, std::uint32_t size, std::string &data) const override {
    const int fd = backing_fd(name);
    if (fd < 0)
      return ENOENT;
    data.assign(size, '\0');
    const ssize_t n = pread(fd, data.data(), data.size(), static_cast<off_t>(offset));
    if (n < 0)
      return errno;
    data.resize(static_cast<std::size_t>(n));
    return 0;
  }
  int write(const std::string &name, std::uint64_t offset, std::string_view data, std::uint32_t &written) override {
    const int fd = backing_fd(name);
    if (fd < 0)
      return ENOENT;
    const ssize_t n = pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset));
    if (n < 0)
      return errno;
    written = static_cast<std::uint32_t>(n);
    return 0;
  }
  int backing_fd(const std::string &name) const override {
    auto it = fds_.find(name);
    return it == fds_.end() ? -1 : it->second;
  }

private:
  std::string dir_;
  std::vector<std::string> initial_;
  std::map<std::string, int> fds_;
};

int DirectoryFiles::attr(const std::string &name, proto::fuse_attr &attr) const {
  struct stat st {};
  const int fd = backing_fd(name);
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

int DirectoryFiles::setattr(const std::string &name, const proto::fuse_setattr_in &set) {
  const int fd = backing_fd(name);
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

} // namespace

std::unique_ptr<FileStore> memory_files(const std::vector<std::pair<std::string, std::string>> &files,
                                        MemoryFilesOptions options) {
  auto store = std::make_unique<MemoryFiles>(std::move(options));
  for (const auto &[name, content] : files)
    store->add(name, content);
  return store;
}

std::unique_ptr<FileStore> directory_files(const std::string &dir, const std::vector<std::string> &names,
                                           std::string &err) {
  auto store = std::make_unique<DirectoryFiles>(dir);
  for (const std::string &name : names) {
    if (const int e = store->add(name); e != 0) {
      err = wire::errno_text("open " + dir + "/" + name, e);
      return nullptr;
    }
  }
  return store;
}

} // namespace fpsim::harness
