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
#include <memory>
#include <string>
#include <string_view>
#include <utility>
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

struct MemoryFilesOptions {
  // SETATTR(size) (O_TRUNC, ftruncate) is answered but leaves the content as it is, so the files
  // never shrink and an in-place write never goes past EOF.
  bool keep_size_on_truncate = false;
  // What a file made by CREATE holds; empty: "FUSE:<name>\n". Never empty, so reads of it are
  // recognisable as served.
  std::string created_content;
};

// The cross-check's files: `files` (name, content), in this order, their content kept in memory.
std::unique_ptr<FileStore> memory_files(const std::vector<std::pair<std::string, std::string>> &files,
                                        MemoryFilesOptions options = {});

// The recorder's: `names`, files already in `dir`, each opened O_RDWR now; CREATE makes its files
// there. nullptr, and `err`, when one cannot be opened.
std::unique_ptr<FileStore> directory_files(const std::string &dir, const std::vector<std::string> &names,
                                           std::string &err);

} // namespace fpsim::harness
