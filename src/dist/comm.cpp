#include "cllm/dist/comm.h"

#include <algorithm>

#include <cstring>
#include <stdexcept>

#include "mpi_check.h"

namespace cllm {

Comm Comm::duplicate(MPI_Comm parent) {
  Comm c;
  check_mpi(MPI_Comm_dup(parent, &c.comm_), "MPI_Comm_dup");
  MPI_Comm_rank(c.comm_, &c.rank_);
  MPI_Comm_size(c.comm_, &c.size_);
  return c;
}

Comm Comm::world() { return duplicate(MPI_COMM_WORLD); }

Comm& Comm::operator=(Comm&& o) noexcept {
  if (this != &o) {
    if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
    comm_ = std::exchange(o.comm_, MPI_COMM_NULL);
    rank_ = o.rank_;
    size_ = o.size_;
  }
  return *this;
}

Comm::~Comm() {
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

bool Comm::all_ok(bool ok) const {
  if (comm_ == MPI_COMM_NULL) return ok;
  int mine = ok ? 1 : 0, all = 0;
  check_mpi(MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_LAND, comm_), "MPI_Allreduce");
  return all != 0;
}

void Comm::sum(std::span<double> v) const {
  if (comm_ == MPI_COMM_NULL || v.empty()) return;
  check_mpi(MPI_Allreduce(MPI_IN_PLACE, v.data(), static_cast<int>(v.size()), MPI_DOUBLE,
                          MPI_SUM, comm_),
            "MPI_Allreduce");
}

void Comm::sum(std::span<float> v) const {
  if (comm_ == MPI_COMM_NULL || v.empty()) return;
  check_mpi(MPI_Allreduce(MPI_IN_PLACE, v.data(), static_cast<int>(v.size()), MPI_FLOAT,
                          MPI_SUM, comm_),
            "MPI_Allreduce");
}

namespace {
// MPI counts are int: send long buffers in pieces.
template <typename T>
void broadcast_pieces(MPI_Comm comm, std::span<T> v, MPI_Datatype type) {
  constexpr std::size_t kPiece = std::size_t{1} << 28;
  for (std::size_t off = 0; off < v.size(); off += kPiece)
    check_mpi(MPI_Bcast(v.data() + off, static_cast<int>(std::min(kPiece, v.size() - off)), type,
                        0, comm),
              "MPI_Bcast");
}
}  // namespace

void Comm::broadcast(std::span<float> v) const {
  if (comm_ != MPI_COMM_NULL) broadcast_pieces(comm_, v, MPI_FLOAT);
}

void Comm::broadcast(std::span<std::int64_t> v) const {
  if (comm_ != MPI_COMM_NULL) broadcast_pieces(comm_, v, MPI_INT64_T);
}

void Comm::broadcast(std::span<std::byte> v) const {
  if (comm_ != MPI_COMM_NULL) broadcast_pieces(comm_, v, MPI_BYTE);
}

std::vector<std::uint64_t> Comm::all_gather(std::uint64_t value) const {
  std::vector<std::uint64_t> all(size_, value);
  if (comm_ != MPI_COMM_NULL)
    check_mpi(MPI_Allgather(&value, 1, MPI_UINT64_T, all.data(), 1, MPI_UINT64_T, comm_),
              "MPI_Allgather");
  return all;
}

std::uint64_t checksum(std::span<const float> values) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  const std::size_t words = values.size() / 2;
  const auto* p = reinterpret_cast<const unsigned char*>(values.data());
  for (std::size_t i = 0; i < words; ++i) {
    std::uint64_t w;
    std::memcpy(&w, p + 8 * i, 8);
    h = (h ^ w) * 0x100000001b3ULL;
  }
  if (values.size() % 2) {
    std::uint32_t w;
    std::memcpy(&w, p + 8 * words, 4);
    h = (h ^ w) * 0x100000001b3ULL;
  }
  return h;
}

}  // namespace cllm
