// The trace file (--trace): rank 0's Chrome trace, and the trace's alone.
// It never destroys data. A path that is, or resolves to, a file the run
// reads (the dataset, --init, --resume) or one that cllm writes in --out is
// refused before anything is written, and so is an existing file that is
// not a cllm trace; an existing trace (the interrupted run's, before a
// resume) is kept, renamed FILE.1 (or the first free FILE.N). Events go out
// whole, one write() each time, so a killed run leaves whole events: the
// file plus "]" parses, and Perfetto reads it as it is. A write error, or
// the size bound (--trace-max-mb), ends the trace with one warning and a
// file that parses; the run goes on. What goes into the events is
// timeline.h's business.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "cllm/base/setting_error.h"

namespace cllm {

// A file the trace must not be: the setting that names it, and its path
// (empty: not given).
struct GuardedFile {
  const char* setting;
  std::string path;
};

// Throws SettingError, naming {trace}, when trace is or resolves to (a
// symbolic link, a hard link) one of guarded; when it lies inside out (when
// given) under a name that does not end in .json, the only kind cllm never
// writes there (checkpoint-*.h5 and their temporaries, metrics.jsonl, the
// lock); or when it exists as a regular file that is not a cllm trace.
// Call it on the rank that writes the trace before anything is written.
void check_trace_path(const std::filesystem::path& trace, const std::filesystem::path& out,
                      const std::vector<GuardedFile>& guarded);

// s as a JSON string, quotes included: '"' and '\' escaped, control
// characters as \u00XX, and bytes outside ASCII (a host name is ASCII, and a
// stray byte would make the file invalid UTF-8) as '?'.
std::string json_string(std::string_view s);

// Rank 0's open trace: a JSON array that grows by whole events.
class TraceFile {
 public:
  // Creates path and opens the JSON array; an existing trace there is
  // renamed path.N first. Throws std::runtime_error naming the file when it
  // cannot be created, or when path now holds something that is not a trace.
  // A write error at once is a warning and an ended trace (ended()).
  // max_mb bounds the file (MiB); name_of names settings in the warnings.
  TraceFile(const std::filesystem::path& path, double max_mb,
            SettingNames name_of = recorded_name);
  ~TraceFile();  // closes the array (a failure leaves whole events)
  TraceFile(const TraceFile&) = delete;
  TraceFile& operator=(const TraceFile&) = delete;

  // Appends events: one or more, separated by ",\n", none before the first.
  // Once the file is full (max_bytes) or a write fails, says so in one
  // warning naming step, closes the array, and appends nothing more.
  void append(std::string_view events, int step);
  // True once the trace has ended early (a write error or the bound).
  bool ended() const { return fd_ < 0; }
  // Where the trace that was at path went ("" when there was none).
  const std::filesystem::path& kept_as() const { return kept_as_; }

 private:
  // Writes bytes whole; on failure cuts the file back to the last whole
  // event and returns errno.
  int write_whole(std::string_view bytes);
  void end(const std::string& warning);

  std::filesystem::path path_, kept_as_;
  double max_mb_;
  std::uint64_t max_bytes_;
  SettingNames name_of_;
  int fd_ = -1;
  std::uint64_t written_ = 0;  // bytes in the file, all whole events
  bool first_event_ = true;
};

}  // namespace cllm
