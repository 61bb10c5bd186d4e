#include "cllm/io/hdf5.h"

#include <cmath>
#include <cstdio>
#include <functional>
#include <numeric>
#include <stdexcept>
#include <type_traits>

#include "cllm/io/file_checksum.h"

namespace cllm::h5 {

namespace {

// The innermost (most specific) description on HDF5's error stack.
std::string innermost_reason() {
  std::string reason;
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_DOWNWARD,
      [](unsigned, const H5E_error2_t* e, void* out) -> herr_t {
        if (e->desc && *e->desc) *static_cast<std::string*>(out) = e->desc;
        return 0;
      },
      &reason);
  H5Eclear2(H5E_DEFAULT);
  // Some of HDF5's descriptions span lines ("file write failed: time = ...\n,
  // filename = ..."): our errors are one line.
  for (char& ch : reason)
    if (ch == '\n' || ch == '\r') ch = ' ';
  return reason.empty() ? "HDF5 error" : reason;
}

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error(what + " (" + innermost_reason() + ")");
}

Handle property_list(hid_t cls) { return Handle(H5Pcreate(cls), "cannot create property list"); }

// File creation with the user block that write_file_checksum fills.
Handle creation_with_checksum_room() {
  Handle fcpl = property_list(H5P_FILE_CREATE);
  check(H5Pset_userblock(fcpl, kChecksumHeaderBytes), "user block");
  check(H5Pset_obj_track_times(fcpl, 0), "track times");  // the root group's, as create_group
  return fcpl;
}

Handle open_attr(hid_t object, const std::string& name) {
  return Handle(H5Aopen(object, name.c_str(), H5P_DEFAULT), "no attribute '" + name + "'");
}

void write_attr(hid_t object, const std::string& name, hid_t type, hid_t space,
                const void* value) {
  if (H5Aexists(object, name.c_str()) > 0)
    check(H5Adelete(object, name.c_str()), "cannot replace attribute '" + name + "'");
  Handle attr(H5Acreate2(object, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT),
              "cannot create attribute '" + name + "'");
  check(H5Awrite(attr, type, value), "cannot write attribute '" + name + "'");
}

// Reads the one value of an open attribute as mem_type.
void read_scalar(hid_t attr, const std::string& name, hid_t mem_type, void* out) {
  Handle space(H5Aget_space(attr), "attribute '" + name + "'");
  if (H5Sget_simple_extent_npoints(space) != 1)
    throw std::runtime_error("attribute '" + name + "' is not a scalar");
  check(H5Aread(attr, mem_type, out), "cannot read attribute '" + name + "' as a number");
}

void read_scalar_attr(hid_t object, const std::string& name, hid_t mem_type, void* out) {
  read_scalar(open_attr(object, name), name, mem_type, out);
}

std::runtime_error too_long(const std::string& what, std::uint64_t bytes) {
  return std::runtime_error(what + " declares " + std::to_string(bytes) +
                            " bytes, more than the " + std::to_string(kMaxTextBytes >> 20) +
                            " MiB any text of cllm's holds");
}

}  // namespace

Handle::Handle(hid_t id, const std::string& what) : id_(id) {
  if (id < 0) fail(what);
}

static_assert(std::is_same_v<hid_t, Id>, "h5::Id is hid_t");
static_assert(H5I_INVALID_HID == -1, "h5::Handle's invalid id");

void Handle::reset() {
  if (id_ >= 0) H5Idec_ref(id_);  // closes any kind of object when the last reference goes
  id_ = H5I_INVALID_HID;
}

void silence_error_stack() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

void check(herr_t status, const std::string& what) {
  if (status < 0) fail(what);
}

Handle create_memory_file(const std::string& name) {
  Handle fapl = property_list(H5P_FILE_ACCESS);
  check(H5Pset_fapl_core(fapl, 4u << 20, /*backing_store=*/0), "core driver");
  return Handle(H5Fcreate(name.c_str(), H5F_ACC_TRUNC, creation_with_checksum_room(), fapl),
                "cannot create HDF5 file in memory");
}

Handle create_file(const std::filesystem::path& path, bool format_1_10) {
  Handle fapl = property_list(H5P_FILE_ACCESS);
  if (format_1_10) check(H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110), "file format");
  return Handle(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, creation_with_checksum_room(), fapl),
                "cannot create HDF5 file");
}

std::vector<unsigned char> file_image(hid_t file) {
  flush(file);
  const ssize_t size = H5Fget_file_image(file, nullptr, 0);
  if (size < 0) fail("cannot get the file's image");
  // HDF5 leaves the user block out of the image, though its superblock
  // counts it: put it back (zeros), so the bytes are the file's on disk.
  Handle fcpl(H5Fget_create_plist(file), "file creation properties");
  hsize_t user_block = 0;
  check(H5Pget_userblock(fcpl, &user_block), "user block");
  std::vector<unsigned char> image(static_cast<std::size_t>(user_block) + static_cast<std::size_t>(size));
  if (H5Fget_file_image(file, image.data() + user_block, static_cast<std::size_t>(size)) != size)
    fail("cannot get the file's image");
  return image;
}

Handle open_file(const std::filesystem::path& path) {
  return Handle(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "not a readable HDF5 file");
}

Handle open_format(const std::filesystem::path& path, const std::string& format,
                   std::int64_t version) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) throw std::runtime_error("no such file");
  // Before HDF5 reads a byte: HDF5 1.10 has memory bugs on corrupt files.
  verify_file_checksum(path);
  Handle file = open_file(path);
  // "cllm-checkpoint" -> "checkpoint", for messages.
  const std::string kind = format.substr(format.find('-') + 1);
  if (!has_attr(file, "format") || string_attr(file, "format") != format)
    throw std::runtime_error("not a CLLM " + kind + " (no format attribute \"" + format + "\")");
  const auto found = int_attr(file, "format_version");
  if (found != version)
    throw std::runtime_error(kind + " format_version " + std::to_string(found) +
                             ", this cllm reads version " + std::to_string(version));
  return file;
}

void flush(hid_t file) { check(H5Fflush(file, H5F_SCOPE_GLOBAL), "cannot flush HDF5 file"); }

Handle create_group(hid_t parent, const std::string& name) {
  Handle lcpl = property_list(H5P_LINK_CREATE);
  check(H5Pset_create_intermediate_group(lcpl, 1), "link property");
  // No times: the same contents give the same file, byte for byte.
  Handle gcpl = property_list(H5P_GROUP_CREATE);
  check(H5Pset_obj_track_times(gcpl, 0), "track times");
  return Handle(H5Gcreate2(parent, name.c_str(), lcpl, gcpl, H5P_DEFAULT),
                "cannot create group '" + name + "'");
}

Handle open_group(hid_t parent, const std::string& name) {
  return Handle(H5Gopen2(parent, name.c_str(), H5P_DEFAULT), "no group '" + name + "'");
}

bool exists(hid_t parent, const std::string& path) {
  // H5Lexists needs every intermediate link to exist: walk the path.
  std::size_t pos = 0;
  while (true) {
    const std::size_t next = path.find('/', pos);
    const std::string prefix = path.substr(0, next);
    if (!prefix.empty() && H5Lexists(parent, prefix.c_str(), H5P_DEFAULT) <= 0) return false;
    if (next == std::string::npos) return true;
    pos = next + 1;
  }
}

void set_attr(hid_t object, const std::string& name, const std::string& value) {
  Handle type(H5Tcopy(H5T_C_S1), "string type");
  check(H5Tset_size(type, std::max<std::size_t>(value.size(), 1)), "string type");
  check(H5Tset_strpad(type, H5T_STR_NULLPAD), "string type");
  check(H5Tset_cset(type, H5T_CSET_UTF8), "string type");
  Handle space(H5Screate(H5S_SCALAR), "scalar space");
  const std::string padded = value.empty() ? std::string(1, '\0') : value;
  write_attr(object, name, type, space, padded.data());
}

void set_attr(hid_t object, const std::string& name, std::int64_t value) {
  Handle space(H5Screate(H5S_SCALAR), "scalar space");
  write_attr(object, name, H5T_NATIVE_INT64, space, &value);
}

void set_attr(hid_t object, const std::string& name, double value) {
  Handle space(H5Screate(H5S_SCALAR), "scalar space");
  write_attr(object, name, H5T_NATIVE_DOUBLE, space, &value);
}

std::string string_attr(hid_t object, const std::string& name) {
  Handle attr = open_attr(object, name);
  Handle type(H5Aget_type(attr), "attribute '" + name + "'");
  if (H5Tget_class(type) != H5T_STRING)
    throw std::runtime_error("attribute '" + name + "' is not a string");
  // One string: an array of them (h5py writes a list so) would overrun the
  // room for one below.
  Handle space(H5Aget_space(attr), "attribute '" + name + "'");
  if (H5Sget_simple_extent_npoints(space) != 1)
    throw std::runtime_error("attribute '" + name + "' is not a single string");
  if (H5Tis_variable_str(type) > 0) {  // as h5py writes a Python str (UTF-8)
    // HDF5 converts no string between character sets, not even ASCII to
    // UTF-8: the memory type takes the file's, and the bytes come as stored.
    const H5T_cset_t cset = H5Tget_cset(type);
    if (cset == H5T_CSET_ERROR) fail("attribute '" + name + "': character set");
    char* value = nullptr;
    Handle mem(H5Tcopy(H5T_C_S1), "string type");
    check(H5Tset_size(mem, H5T_VARIABLE), "string type");
    check(H5Tset_cset(mem, cset), "string type");
    check(H5Aread(attr, mem, &value), "cannot read attribute '" + name + "'");
    std::string s = value ? value : "";
    H5free_memory(value);
    return s;
  }
  // Fixed length: read with the file's own type, whatever its character set
  // and padding; the string ends at the first NUL, if any.
  const std::size_t bytes = H5Tget_size(type);
  if (bytes > kMaxTextBytes) throw too_long("attribute '" + name + "'", bytes);
  std::string s(bytes, '\0');
  check(H5Aread(attr, type, s.data()), "cannot read attribute '" + name + "'");
  s.resize(s.find('\0') == std::string::npos ? s.size() : s.find('\0'));
  return s;
}

std::int64_t int_attr(hid_t object, const std::string& name, std::int64_t lo, std::int64_t hi) {
  const std::string what = "attribute '" + name + "'";
  const auto out_of_range = [&](const std::string& value) {
    return std::runtime_error(what + " = " + value + " is out of range [" + std::to_string(lo) +
                              ", " + std::to_string(hi) + "]");
  };
  Handle attr = open_attr(object, name);
  Handle type(H5Aget_type(attr), what);
  std::int64_t v = 0;
  switch (H5Tget_class(type)) {
    case H5T_INTEGER:
      if (H5Tget_sign(type) == H5T_SGN_NONE) {
        std::uint64_t u = 0;
        read_scalar(attr, name, H5T_NATIVE_UINT64, &u);
        if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
          throw out_of_range(std::to_string(u));
        v = static_cast<std::int64_t>(u);
      } else {
        read_scalar(attr, name, H5T_NATIVE_INT64, &v);
      }
      break;
    case H5T_FLOAT: {
      double d = 0;
      read_scalar(attr, name, H5T_NATIVE_DOUBLE, &d);
      // 2^63 is the first double past int64's range.
      if (!(std::isfinite(d) && d == std::trunc(d) && std::fabs(d) < 9223372036854775808.0)) {
        char text[64];
        std::snprintf(text, sizeof text, "%.17g", d);
        throw std::runtime_error(what + " must be a whole number, not " + text);
      }
      v = static_cast<std::int64_t>(d);
      break;
    }
    default:
      throw std::runtime_error(what + " is not a number");
  }
  if (v < lo || v > hi) throw out_of_range(std::to_string(v));
  return v;
}

H5T_class_t attr_class(hid_t object, const std::string& name) {
  Handle attr = open_attr(object, name);
  Handle type(H5Aget_type(attr), "attribute '" + name + "'");
  return H5Tget_class(type);
}

double double_attr(hid_t object, const std::string& name) {
  double v = 0;
  read_scalar_attr(object, name, H5T_NATIVE_DOUBLE, &v);
  return v;
}

bool has_attr(hid_t object, const std::string& name) {
  return H5Aexists(object, name.c_str()) > 0;
}

bool has_link(hid_t object, const std::string& name) {
  return H5Lexists(object, name.c_str(), H5P_DEFAULT) > 0;
}

void write_dataset(hid_t parent, const std::string& name, hid_t file_type, hid_t mem_type,
                   const std::vector<hsize_t>& dims, const void* data, const Storage& storage) {
  Handle space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
               "dataspace of '" + name + "'");
  Handle dcpl = property_list(H5P_DATASET_CREATE);
  // No timestamps: the same tensors give the same bytes, so h5diff and
  // cmp can compare two checkpoints.
  check(H5Pset_obj_track_times(dcpl, 0), "track times");
  const hsize_t n = std::accumulate(dims.begin(), dims.end(), hsize_t{1}, std::multiplies<>());
  const bool filtered = storage.fletcher32 || storage.deflate > 0;
  if (filtered && !dims.empty() && n > 0) {
    std::vector<hsize_t> chunk = dims;
    if (storage.chunk_rows > 0) chunk[0] = std::min(storage.chunk_rows, dims[0]);
    check(H5Pset_chunk(dcpl, static_cast<int>(chunk.size()), chunk.data()), "chunk layout");
    if (storage.shuffle) check(H5Pset_shuffle(dcpl), "shuffle filter");
    if (storage.deflate > 0) check(H5Pset_deflate(dcpl, storage.deflate), "deflate filter");
    if (storage.fletcher32) check(H5Pset_fletcher32(dcpl), "fletcher32 filter");
  }
  Handle dset(H5Dcreate2(parent, name.c_str(), file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT),
              "cannot create dataset '" + name + "'");
  if (n > 0)
    check(H5Dwrite(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data),
          "cannot write dataset '" + name + "'");
}

std::vector<hsize_t> dataset_shape(hid_t dataset) {
  Handle space(H5Dget_space(dataset), "dataspace");
  const int rank = H5Sget_simple_extent_ndims(space);
  if (rank < 0) fail("dataspace");
  std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
  check(H5Sget_simple_extent_dims(space, dims.data(), nullptr), "dataspace");
  return dims;
}

void read_dataset(hid_t dataset, hid_t mem_type, void* out) {
  check(H5Dread(dataset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out), "cannot read dataset");
}

void read_range(hid_t dataset, hid_t mem_type, hsize_t start, hsize_t count, void* out) {
  Handle file_space(H5Dget_space(dataset), "dataspace");
  check(H5Sselect_hyperslab(file_space, H5S_SELECT_SET, &start, nullptr, &count, nullptr),
        "cannot select tokens");
  Handle mem_space(H5Screate_simple(1, &count, nullptr), "dataspace");
  check(H5Dread(dataset, mem_type, mem_space, file_space, H5P_DEFAULT, out),
        "cannot read tokens");
}

void write_bytes(hid_t parent, const std::string& name, const std::string& bytes) {
  Storage s;
  s.deflate = 6;
  write_dataset(parent, name, H5T_STD_U8LE, H5T_NATIVE_UCHAR, {bytes.size()}, bytes.data(), s);
}

std::string read_bytes(hid_t parent, const std::string& name) {
  Handle dset(H5Dopen2(parent, name.c_str(), H5P_DEFAULT), "no dataset '" + name + "'");
  const auto shape = dataset_shape(dset);
  if (shape.size() != 1) throw std::runtime_error("dataset '" + name + "' is not 1-D");
  if (shape[0] > kMaxTextBytes) throw too_long("dataset '" + name + "'", shape[0]);
  std::string bytes(shape[0], '\0');
  if (!bytes.empty()) read_dataset(dset, H5T_NATIVE_UCHAR, bytes.data());
  return bytes;
}

}  // namespace cllm::h5
