// Errors raised at the native boundary. Kernel code throws these; the pybind11 module turns them into
// Python's TypeError / ValueError / RuntimeError. Messages are built only when a check fails.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace fastdream {

struct TypeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct ValueError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// A CUDA call failed (launch error, no device...).
struct DeviceError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <typename... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

}  // namespace fastdream

#define FD_CHECK(cond, ...)                                                 \
  do {                                                                      \
    if (!(cond)) throw ::fastdream::ValueError(::fastdream::str_cat(__VA_ARGS__)); \
  } while (0)

#define FD_CHECK_TYPE(cond, ...)                                            \
  do {                                                                      \
    if (!(cond)) throw ::fastdream::TypeError(::fastdream::str_cat(__VA_ARGS__)); \
  } while (0)
