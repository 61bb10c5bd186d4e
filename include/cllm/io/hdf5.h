// Small RAII layer over the HDF5 C API (the parallel, Open MPI flavour that
// Debian ships). Handles close themselves; every failure throws
// std::runtime_error with HDF5's own innermost reason ("Fletcher32 checksum
// failed", "file signature not found"), which callers prefix with the path.
//
// Its handle type is in hdf5_handle.h, apart: this header brings <mpi.h>
// (parallel HDF5), so only io's sources and tests include it.
//
// Debian's HDF5 is built without thread safety: call this from one thread at
// a time (in CLLM, the main thread, outside parallel regions, or the
// trainer's prefetch thread while the main thread computes a step).
#pragma once

#include <hdf5.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "cllm/io/hdf5_handle.h"

namespace cllm::h5 {

// Throws std::runtime_error(what + HDF5's reason) when status is negative.
void check(herr_t status, const std::string& what);

// When a write fails (a full disk), HDF5 1.10 keeps objects it could not
// close and crashes on them when it shuts down inside MPI_Finalize. So HDF5
// writes only where room is certain: into a file built in memory (HDF5's
// core driver, no backing store; name is for messages only), whose bytes go
// to disk through file_image() and write_durably, or into the temporary of
// a DurableWriter whose room was reserved (create_file).
// Both set aside the file's first kChecksumHeaderBytes (an HDF5 user block)
// for the checksum that write_file_checksum (file_checksum.h) writes once
// HDF5 has closed the file; without it the file reads as one without.
Handle create_memory_file(const std::string& name);
// A new file on disk, replacing any at path: give it DurableWriter's
// temporary_path() once try_reserve() holds room, and flush it before commit().
// format_1_10: HDF5 1.10's file format, whose attributes may pass 64 KiB
// (a dataset's list of thousands of sources) and whose fixed-size chunked
// datasets index their chunks in an array, not in a B-tree that grows in
// memory as they are written; readers need HDF5 1.10 (2016) or later.
Handle create_file(const std::filesystem::path& path, bool format_1_10 = false);
// The bytes of a file made by create_memory_file, flushed, as they would be
// on disk: its user block (zeros) first.
std::vector<unsigned char> file_image(hid_t file);
// open_file fails on a file that is not HDF5.
Handle open_file(const std::filesystem::path& path);  // read-only
// Opens a file written by CLLM read-only, checking its root attributes
// `format` (format) and `format_version` (version); throws
// std::runtime_error saying what is wrong ("no such file", "damaged: its
// checksum does not match (...)", "not a CLLM checkpoint", "format_version 2,
// this cllm reads version 1"). A file with a checksum (file_checksum.h) is
// verified before HDF5 opens it; one without goes through HDF5's checks.
Handle open_format(const std::filesystem::path& path, const std::string& format,
                   std::int64_t version);
// Flushes HDF5's buffers to the operating system.
void flush(hid_t file);

Handle create_group(hid_t parent, const std::string& name);
Handle open_group(hid_t parent, const std::string& name);
bool exists(hid_t parent, const std::string& path);

// Attributes: strings, 64-bit integers, doubles.
void set_attr(hid_t object, const std::string& name, const std::string& value);
void set_attr(hid_t object, const std::string& name, std::int64_t value);
void set_attr(hid_t object, const std::string& name, double value);
// Strings and byte datasets longer than this are refused before they are
// allocated: a corrupt file can declare gigabytes in a few bytes, and no
// attribute or tokenizer file cllm writes comes near it.
constexpr std::size_t kMaxTextBytes = std::size_t{64} << 20;
std::string string_attr(hid_t object, const std::string& name);
// An integer read exactly: an integer attribute of any width and sign, or a
// float holding a whole number. Throws naming the attribute when the value
// is not a whole number in [lo, hi] (HDF5's own conversion would truncate
// 256.7 to 256 and clamp 2^64 - 1 without a word).
std::int64_t int_attr(hid_t object, const std::string& name,
                      std::int64_t lo = std::numeric_limits<std::int64_t>::min(),
                      std::int64_t hi = std::numeric_limits<std::int64_t>::max());
double double_attr(hid_t object, const std::string& name);
// The kind of value an attribute holds (H5T_INTEGER, H5T_FLOAT, H5T_STRING, ...).
H5T_class_t attr_class(hid_t object, const std::string& name);
bool has_attr(hid_t object, const std::string& name);
// Whether object has a link (a group or dataset) of this name.
bool has_link(hid_t object, const std::string& name);

// How a dataset is stored. Filters need a chunked layout; chunk 0 means one
// chunk along the first dimension for the whole dataset.
struct Storage {
  bool fletcher32 = true;  // checksum, verified on every read
  int deflate = 0;         // 0: off, else zlib level 1-9
  bool shuffle = false;    // byte shuffle before deflate
  hsize_t chunk_rows = 0;  // rows (first-dimension entries) per chunk
};

// Writes an N-d dataset; memory and file element types may differ (HDF5
// converts). dims may be empty for a scalar only when storage has no filter.
void write_dataset(hid_t parent, const std::string& name, hid_t file_type, hid_t mem_type,
                   const std::vector<hsize_t>& dims, const void* data, const Storage& storage);
std::vector<hsize_t> dataset_shape(hid_t dataset);
// Reads a whole dataset into memory of mem_type (elements: product of shape).
void read_dataset(hid_t dataset, hid_t mem_type, void* out);
// Reads elements [start, start + count) of a 1-D dataset.
void read_range(hid_t dataset, hid_t mem_type, hsize_t start, hsize_t count, void* out);

// A 1-D byte dataset (file contents such as tokenizer vocabularies), of at
// most kMaxTextBytes.
void write_bytes(hid_t parent, const std::string& name, const std::string& bytes);
std::string read_bytes(hid_t parent, const std::string& name);

}  // namespace cllm::h5
