// h5::Handle: an owned HDF5 identifier (file, group, dataset, ...), declared
// without <hdf5.h>: Debian's parallel HDF5 header brings <mpi.h>, which only
// io's sources and dist may see. io's public headers hold Handles; the calls
// that use them are in hdf5.h.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

namespace cllm::h5 {

using Id = std::int64_t;  // hid_t (hdf5.cpp checks that they agree)

class Handle {
 public:
  Handle() = default;
  // Throws std::runtime_error(what + HDF5's reason) when id is negative.
  Handle(Id id, const std::string& what);
  ~Handle() { reset(); }
  Handle(Handle&& o) noexcept : id_(std::exchange(o.id_, kInvalid)) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = std::exchange(o.id_, kInvalid);
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;

  Id get() const { return id_; }
  operator Id() const { return id_; }  // NOLINT: pass straight to the C API
  void reset();

 private:
  static constexpr Id kInvalid = -1;  // H5I_INVALID_HID
  Id id_ = kInvalid;
};

// Stops HDF5 from printing its error stack on stderr: our messages are one
// line. Call once per process, before any other HDF5 call.
void silence_error_stack();

}  // namespace cllm::h5
