// Progress reporting: the human log line on stdout and the same figures as
// JSON lines in <out>/metrics.jsonl.
#pragma once

#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "cllm/kernels/matmul.h"
#include "cllm/train/trainer.h"

namespace cllm {

struct LogRecord {
  int step = 0;  // 1-based: steps completed
  int total_steps = 0;
  double loss = 0;
  float lr = 0;
  double grad_norm = 0;
  double tokens_per_s = 0;
  double ms_per_step = 0;
  double eta_s = 0;
  std::optional<double> val_loss;
  kernels::Precision precision = kernels::Precision::fp32;  // of the matrix products
  // Seconds per step the rank that waited most spent waiting for the others
  // in collectives (0 on one rank), and the rank that waited least: the
  // slowest, which the others wait for.
  double comm_wait_s = 0;
  int ranks = 1;
  int slowest_rank = 0;
};

std::string format_log_line(const LogRecord& r);
std::string format_json_line(const LogRecord& r);

class MetricsFile {
 public:
  // Starts path afresh, keeping the records of steps up to keep_through_step
  // from an earlier run (a resumed run continues the file; records past the
  // checkpoint, which the resumed run repeats, are dropped). The kept lines
  // are written to a temporary file, fsync'd and renamed into place, so the
  // history survives a kill at any moment. Throws std::runtime_error naming
  // the file on failure.
  explicit MetricsFile(const std::filesystem::path& path, std::int64_t keep_through_step = 0);
  ~MetricsFile();
  MetricsFile(const MetricsFile&) = delete;
  MetricsFile& operator=(const MetricsFile&) = delete;
  // Appends one record as one line, in one write.
  void write(const LogRecord& r);

 private:
  int fd_ = -1;
  std::string path_;
};

}  // namespace cllm
