// Small helpers for reading and answering /dev/fuse requests: the server session's, and the
// recorder's reading of the requests the session shows it.
#pragma once

#include <csignal>
#include <cstddef>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>

namespace fpsim::harness::wire {

// Copies a request struct out of the buffer, which gives no alignment guarantee per struct.
template <class T> bool read_struct(const char *in, std::size_t insize, T &out) {
  if (insize < sizeof(T))
    return false;
  std::memcpy(&out, in, sizeof(T));
  return true;
}

template <class T> std::string bytes_of(const T &value) {
  return std::string(reinterpret_cast<const char *>(&value), sizeof(T));
}

// A NUL-terminated name at `in`, bounded by the request.
inline std::optional<std::string> read_name(const char *in, std::size_t insize) {
  const void *nul = std::memchr(in, '\0', insize);
  if (nul == nullptr)
    return std::nullopt;
  return std::string(in, static_cast<const char *>(nul));
}

inline std::string errno_text(const std::string &what, int e) {
  return what + ": " + std::strerror(e);
}

// Wakes a server thread out of a blocking read(/dev/fuse): that read is interruptible, and a
// handler installed without SA_RESTART turns the signal into EINTR. A real-time signal cannot
// collide with the signals a test program is likely to use itself.
inline int wake_signal() { return SIGRTMIN + 3; }

inline void install_wake_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_handler = [](int) {};
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; // no SA_RESTART: the interrupted read must return EINTR
    // sigaction only fails for an invalid signal number, which wake_signal() is not.
    sigaction(wake_signal(), &sa, nullptr);
  });
}

} // namespace fpsim::harness::wire
