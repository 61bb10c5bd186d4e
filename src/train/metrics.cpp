#include "cllm/metrics.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <span>
#include <stdexcept>

#include "cllm/durable_file.h"

namespace cllm {

namespace {
std::string printf_string(const char* fmt, auto... args) {
  char buf[512];
  std::snprintf(buf, sizeof buf, fmt, args...);
  return buf;
}
// JSON has no NaN or Infinity: non-finite values are written as null.
std::string json_number(double v, const char* fmt = "%.6g") {
  return std::isfinite(v) ? printf_string(fmt, v) : "null";
}
}  // namespace

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const long t = std::lround(s);
  if (t >= 3600) return printf_string("%ldh%02ldm", t / 3600, t % 3600 / 60);
  if (t >= 60) return printf_string("%ldm%02lds", t / 60, t % 60);
  return printf_string("%lds", t);
}

std::string format_log_line(const LogRecord& r) {
  std::string s = printf_string(
      "step %*d/%d | loss %.4f | lr %.2e | grad norm %.3f | %.0f tok/s | %.1f ms/step | ETA %s",
      static_cast<int>(std::to_string(r.total_steps).size()), r.step, r.total_steps, r.loss,
      r.lr, r.grad_norm, r.tokens_per_s, r.ms_per_step, format_duration(r.eta_s).c_str());
  if (r.val_loss) s += printf_string(" | val loss %.4f", *r.val_loss);
  return s;
}

std::string format_json_line(const LogRecord& r) {
  std::string s = "{\"step\": " + std::to_string(r.step) + ", \"loss\": " +
                  json_number(r.loss, "%.8g") + ", \"lr\": " + json_number(r.lr) +
                  ", \"grad_norm\": " + json_number(r.grad_norm) +
                  ", \"tokens_per_s\": " + json_number(r.tokens_per_s, "%.1f") +
                  ", \"ms_per_step\": " + json_number(r.ms_per_step, "%.3f") +
                  ", \"eta_s\": " + json_number(r.eta_s, "%.1f");
  if (r.val_loss) s += ", \"val_loss\": " + json_number(*r.val_loss, "%.8g");
  return s + "}";
}

MetricsFile::MetricsFile(const std::filesystem::path& path, std::int64_t keep_through_step)
    : path_(path.string()) {
  // The kept history becomes a new file, renamed into place like a
  // checkpoint: a kill at any moment leaves the old file or the new one,
  // never a truncated one. A line cut by a kill during a write is dropped.
  std::string kept;
  if (keep_through_step > 0) {
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
      long long step = 0;
      if (in.eof()) break;  // no newline: a record cut short
      if (std::sscanf(line.c_str(), "{\"step\": %lld", &step) == 1 && line.ends_with("}") &&
          step <= keep_through_step)
        kept += line + "\n";
    }
  }
  write_durably(path, std::span(reinterpret_cast<const unsigned char*>(kept.data()), kept.size()));
  fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd_ < 0) throw std::runtime_error(path_ + ": cannot write metrics: " + std::strerror(errno));
}

MetricsFile::~MetricsFile() {
  if (fd_ >= 0) ::close(fd_);
}

void MetricsFile::write(const LogRecord& r) {
  // One write(2) per record, so a kill leaves it whole or absent; a partial
  // write (a full disk) is reported, and the next resume drops the cut line.
  const std::string line = format_json_line(r) + "\n";
  const ssize_t n = ::write(fd_, line.data(), line.size());
  if (n != static_cast<ssize_t>(line.size()))
    throw std::runtime_error(path_ + ": write failed: " +
                             (n < 0 ? std::strerror(errno) : "short write (disk full?)"));
}

}  // namespace cllm
