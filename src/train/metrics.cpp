#include "cllm/train/metrics.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <span>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "cllm/io/durable_file.h"
#include "cllm/train/report_format.h"

namespace cllm {

std::string format_log_line(const LogRecord& r) {
  std::string s = printf_string(
      "step %*d/%d | loss %.4f | lr %.2e | grad norm %.3f | %.0f tok/s %s | %.1f ms/step | ETA %s",
      static_cast<int>(std::to_string(r.total_steps).size()), r.step, r.total_steps, r.loss,
      r.lr, r.grad_norm, r.tokens_per_s, kernels::to_string(r.precision), r.ms_per_step,
      format_duration(r.eta_s).c_str());
  if (r.ranks > 1) {
    s += printf_string(" | comm wait %.1f ms", 1000.0 * r.comm_wait_s);
    // Waits of a tenth of the step are no jitter: the others wait for one rank.
    if (r.comm_wait_s >= 0.1 * r.ms_per_step / 1000.0)
      s += printf_string(" (rank %d slowest)", r.slowest_rank);
  }
  if (r.val_loss) s += printf_string(" | val loss %.4f", *r.val_loss);
  return s;
}

std::string format_json_line(const LogRecord& r) {
  // Digits a reader can use, no more: losses to 8 significant digits, lr
  // and the norm to 6, timings to 0.1 token/s, 1 us and 0.1 s.
  nlohmann::ordered_json j;
  j["step"] = r.step;
  j["loss"] = json_number(r.loss, "%.8g");
  j["lr"] = json_number(r.lr, "%.6g");
  j["grad_norm"] = json_number(r.grad_norm, "%.6g");
  j["tokens_per_s"] = json_number(r.tokens_per_s, "%.1f");
  j["ms_per_step"] = json_number(r.ms_per_step, "%.3f");
  j["eta_s"] = json_number(r.eta_s, "%.1f");
  if (r.val_loss) j["val_loss"] = json_number(*r.val_loss, "%.8g");
  j["precision"] = kernels::to_string(r.precision);
  j["comm_wait_s"] = json_number(r.comm_wait_s, "%.6f");
  if (r.ranks > 1) j["slowest_rank"] = r.slowest_rank;
  return j.dump();
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
      if (in.eof()) break;  // no newline: a record cut short
      // A kept record is copied as it was written, spacing and all.
      const auto record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (!record.is_object()) continue;  // also a line that does not parse (discarded)
      const auto step = record.find("step");
      if (step == record.end() || !step->is_number_integer()) continue;
      // nlohmann reads a non-negative integer as unsigned, one past
      // INT64_MAX included: compare it as unsigned.
      const bool up_to_the_checkpoint =
          step->is_number_unsigned()
              ? step->get<std::uint64_t>() <= static_cast<std::uint64_t>(keep_through_step)
              : step->get<std::int64_t>() <= keep_through_step;
      if (up_to_the_checkpoint) kept += line + "\n";
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
