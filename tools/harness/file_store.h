// What a FuseServer's regular files hold. The server owns the names and node ids and answers the
// protocol; a store keeps each name's content and attributes. Two stores: MemoryFiles, the
// cross-check's files (content in memory, so reads tell served data from backing data), and
// DirectoryFiles, the recorder's (real files in a private copy of a directory, which passthrough
// policies also register as backing files).
//
// Every call comes with the server's lock held. Errors are positive errno values.
#pragma once

#include "fuse_proto.h"

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace fpsim::harness {

class FileStore {
public:
  virtual ~FileStore() = default;
  // The files there are before the mount, in the order they get their node ids.
  virtual std::vector<std::string> names() const = 0;
  // Makes a new file (CREATE); 0 or an errno.
  virtual int create(const std::string &name, std::uint32_t mode) = 0;
  // Undoes create() for a CREATE the server failed.
  virtual void remove(const std::string &name) = 0;
  // Everything but ino, nlink and blksize, which the server fills in.
  virtual int attr(const std::string &name, proto::fuse_attr &attr) const = 0;
  virtual int setattr(const std::string &name, const proto::fuse_setattr_in &set) = 0;
  virtual int read(const std::string &name, std::uint64_t offset, std::uint32_t size,
                   std::string &data) const = 0;
  virtual int write(const std::string &name, std::uint64_t offset, std::string_view data,
                    std::uint32_t &written) = 0;
  // A descriptor of the file's content for FUSE_DEV_IOC_BACKING_OPEN, or -1 (the ioctl then fails).
  virtual int backing_fd(const std::string &name) const = 0;
};

class MemoryFiles final : public FileStore {
public:
  struct Options {
    // SETATTR(size) (O_TRUNC, ftruncate) is answered but leaves the content as it is, so the files
    // never shrink and an in-place write never goes past EOF.
    bool keep_size_on_truncate = false;
    // What a file made by CREATE holds; empty: "FUSE:<name>\n". Never empty, so reads of it are
    // recognisable as served.
    std::string created_content;
  };
  MemoryFiles() = default;
  explicit MemoryFiles(Options options) : options_(std::move(options)) {}
  // Adds (or replaces) a file.
  void add(const std::string &name, std::string content);

  std::vector<std::string> names() const override { return order_; }
  int create(const std::string &name, std::uint32_t mode) override;
  void remove(const std::string &name) override;
  int attr(const std::string &name, proto::fuse_attr &attr) const override;
  int setattr(const std::string &name, const proto::fuse_setattr_in &set) override;
  int read(const std::string &name, std::uint64_t offset, std::uint32_t size,
           std::string &data) const override;
  int write(const std::string &name, std::uint64_t offset, std::string_view data,
            std::uint32_t &written) override;
  int backing_fd(const std::string &) const override { return -1; }

private:
  Options options_;
  std::map<std::string, std::string> content_;
  std::vector<std::string> order_;
};

class DirectoryFiles final : public FileStore {
public:
  // Serves `names`, files already in `dir`, each opened O_RDWR now; CREATE makes its files there.
  // nullptr, and `err`, when one cannot be opened.
  static std::unique_ptr<DirectoryFiles> open(std::string dir, const std::vector<std::string> &names,
                                              std::string &err);
  ~DirectoryFiles() override;
  DirectoryFiles(const DirectoryFiles &) = delete;
  DirectoryFiles &operator=(const DirectoryFiles &) = delete;

  std::vector<std::string> names() const override { return initial_; }
  int create(const std::string &name, std::uint32_t mode) override;
  void remove(const std::string &name) override;
  int attr(const std::string &name, proto::fuse_attr &attr) const override;
  int setattr(const std::string &name, const proto::fuse_setattr_in &set) override;
  int read(const std::string &name, std::uint64_t offset, std::uint32_t size,
           std::string &data) const override;
  int write(const std::string &name, std::uint64_t offset, std::string_view data,
            std::uint32_t &written) override;
  int backing_fd(const std::string &name) const override;

private:
  explicit DirectoryFiles(std::string dir) : dir_(std::move(dir)) {}
  int fd_of(const std::string &name) const;

  std::string dir_;
  std::vector<std::string> initial_;
  std::map<std::string, int> fds_;
};

} // namespace fpsim::harness
