#include "cllm/metrics.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <stdexcept>

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
  std::string kept;
  if (keep_through_step > 0) {
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
      long long step = 0;
      if (std::sscanf(line.c_str(), "{\"step\": %lld", &step) == 1 && step <= keep_through_step)
        kept += line + "\n";
    }
  }
  file_.reset(std::fopen(path_.c_str(), "w"));
  if (file_ && !kept.empty()) std::fputs(kept.c_str(), file_.get());
  if (!file_) throw std::runtime_error(path_ + ": cannot write metrics: " + std::strerror(errno));
}

void MetricsFile::write(const LogRecord& r) {
  const std::string line = format_json_line(r) + "\n";
  if (std::fputs(line.c_str(), file_.get()) < 0 || std::fflush(file_.get()) != 0)
    throw std::runtime_error(path_ + ": write failed: " + std::strerror(errno));
}

}  // namespace cllm
