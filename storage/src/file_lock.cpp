#include "file_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "prefstore/errors.hpp"

namespace prefstore::storage::detail {

FileLock::FileLock(const std::filesystem::path& path) {
  m_fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (m_fd < 0) {
    throw UnavailableError("cannot open lock file " + path.string() + ": " + std::strerror(errno));
  }
  while (::flock(m_fd, LOCK_EX) != 0) {
    if (errno != EINTR) {
      const int err = errno;
      ::close(m_fd);
      throw UnavailableError("cannot lock " + path.string() + ": " + std::strerror(err));
    }
  }
}

FileLock::~FileLock() {
  if (m_fd >= 0) ::close(m_fd);  // closing releases the flock
}

}  // namespace prefstore::storage::detail
