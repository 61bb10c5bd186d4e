// The trace file (include/cllm/dist/trace_file.h).
#include "cllm/dist/trace_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <utility>

namespace cllm {

namespace fs = std::filesystem;

namespace {

// How a file begins: rank 0's process name is every cllm trace's first event.
constexpr std::string_view kTraceStart = "[\n{\"name\":\"process_name\"";

enum class Found { nothing, empty_trace, trace, other };

// What a regular file at path holds: a trace (kept), an empty one or nothing
// (no data to keep), or something else (refused).
Found what_is_at(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_regular_file(fs::status(path, ec))) return Found::nothing;  // none, or a device
  std::ifstream in(path, std::ios::binary);
  std::string start(64, '\0');
  in.read(start.data(), static_cast<std::streamsize>(start.size()));
  start.resize(static_cast<std::size_t>(in.gcount()));
  if (start.starts_with(kTraceStart)) return Found::trace;
  std::string bare;
  for (const char c : start)
    if (c != ' ' && c != '\n' && c != '\t' && c != '\r') bare += c;
  const bool short_file = start.size() < 64;
  return short_file && (bare.empty() || bare == "[" || bare == "[]") ? Found::empty_trace
                                                                    : Found::other;
}

// Resolves every symbolic link of the path's existing part.
fs::path resolved(const fs::path& path) {
  std::error_code ec;
  fs::path p = fs::weakly_canonical(fs::absolute(path, ec), ec);
  if (ec) return fs::absolute(path, ec).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();  // "dir/" names dir
  return p;
}

bool same_file(const fs::path& a, const fs::path& b) {
  if (resolved(a) == resolved(b)) return true;
  std::error_code ec;
  return fs::equivalent(a, b, ec);  // hard links; false when either is missing
}

bool inside(const fs::path& path, const fs::path& folder) {
  const auto [f, p] = std::mismatch(folder.begin(), folder.end(), path.begin(), path.end());
  return f == folder.end();
}

// mb MiB in bytes; beyond 2^63 bytes (or not a number): no bound at all.
std::uint64_t bytes_in(double mb) {
  const double bytes = mb * 1048576.0;
  return bytes < 9.2e18 ? static_cast<std::uint64_t>(std::max(bytes, 0.0)) : UINT64_MAX;
}

std::string as_literal(const fs::path& path) { return SettingError::literal(path.string()); }

}  // namespace

void check_trace_path(const fs::path& trace, const fs::path& out,
                      const std::vector<GuardedFile>& guarded) {
  for (const GuardedFile& g : guarded)
    if (!g.path.empty() && same_file(trace, g.path))
      throw SettingError("{trace} " + as_literal(trace) + " is the file of {" + g.setting + "} " +
                         as_literal(g.path) + ": name a new file for the trace");
  const fs::path where = resolved(trace);  // a link's target's name counts, not the link's
  if (!out.empty() && inside(where, resolved(out)) && where.extension() != ".json")
    throw SettingError("{trace} " + as_literal(trace) + " is inside {out} " + as_literal(out) +
                       ", where cllm writes checkpoints, metrics.jsonl and its lock: name a "
                       ".json file there, or a file elsewhere");
  if (what_is_at(trace) == Found::other)
    throw SettingError("{trace} " + as_literal(trace) +
                       " exists and is not a cllm trace, which cllm would overwrite: name a new "
                       "file, or remove it");
}

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u == 0x7f) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", u);
      out += escaped;
    } else {
      out += u < 0x80 ? c : '?';
    }
  }
  return out + "\"";
}

TraceFile::TraceFile(const fs::path& path, double max_mb, SettingNames name_of)
    : path_(path),
      max_mb_(max_mb),
      max_bytes_(bytes_in(max_mb)),
      name_of_(std::move(name_of)) {
  const auto cannot = [&](const std::string& why) {
    return std::runtime_error(path.string() + ": cannot write the trace: " + why);
  };
  const Found found = what_is_at(path);
  if (found == Found::other) throw cannot("it holds something else (it changed since the start)");
  if (found == Found::trace) {
    std::error_code ec;
    for (int n = 1; kept_as_.empty(); ++n) {
      fs::path next = path.string() + "." + std::to_string(n);
      if (!fs::exists(fs::symlink_status(next, ec))) kept_as_ = std::move(next);
    }
    fs::rename(path, kept_as_, ec);  // a symbolic link moves as itself
    if (ec)
      throw cannot("cannot keep the trace there as " + kept_as_.string() + ": " + ec.message());
  }
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw cannot(std::strerror(errno));
  if (const int error = write_whole("[\n"); error != 0)
    end(path_.string() + ": cannot write the trace: " + std::strerror(error));
}

TraceFile::~TraceFile() {
  if (fd_ < 0) return;
  write_whole("\n]\n");  // on failure: the whole events, which parse with a "]"
  ::close(fd_);
}

int TraceFile::write_whole(std::string_view bytes) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd_, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int error = errno;
      // A part written (a disk that filled up midway) goes: the file ends
      // with whole events. A device (/dev/full) has nothing to cut.
      if (done > 0 && ::ftruncate(fd_, static_cast<off_t>(written_)) == 0)
        ::lseek(fd_, static_cast<off_t>(written_), SEEK_SET);
      return error;
    }
    done += static_cast<std::size_t>(n);
  }
  written_ += bytes.size();
  return 0;
}

void TraceFile::end(const std::string& warning) {
  std::fprintf(stderr, "cllm: warning: %s\n", warning.c_str());
  write_whole("\n]\n");  // may fail too: the file still parses with a "]"
  ::close(fd_);
  fd_ = -1;
}

void TraceFile::append(std::string_view events, int step) {
  if (fd_ < 0 || events.empty()) return;
  const std::string separator = first_event_ ? "" : ",\n";
  constexpr std::uint64_t kClosing = 3;  // "\n]\n"
  if (written_ + separator.size() + events.size() + kClosing > max_bytes_) {
    char bound[64];
    std::snprintf(bound, sizeof bound, "%g", max_mb_);
    end(name_settings("step " + std::to_string(step) + ": " + as_literal(path_) +
                          " would grow past {trace_max_mb} " + bound +
                          "; tracing stops, the file holds the steps before",
                      name_of_));
    return;
  }
  std::string chunk = separator;
  chunk.append(events);
  if (const int error = write_whole(chunk); error != 0) {
    end("step " + std::to_string(step) + ": " + path_.string() + ": cannot write the trace: " +
        std::strerror(error) + "; tracing stops, the run goes on");
    return;
  }
  first_event_ = false;
}

}  // namespace cllm
