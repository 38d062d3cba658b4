#include "prefstore/errors.hpp"

#include <utility>

namespace prefstore {

Error::Error(const std::string& message, std::string sqlstate)
    : std::runtime_error(message), m_sqlstate(std::move(sqlstate)) {}

}  // namespace prefstore
