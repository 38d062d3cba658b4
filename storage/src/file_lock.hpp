// An exclusive advisory lock on a file (flock), held for the object's lifetime. Private to storage.
#pragma once

#include <filesystem>

namespace prefstore::storage::detail {

class FileLock {
 public:
  // Creates the file if needed and blocks until the lock is held. Throws UnavailableError.
  explicit FileLock(const std::filesystem::path& path);
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int m_fd = -1;
};

}  // namespace prefstore::storage::detail
