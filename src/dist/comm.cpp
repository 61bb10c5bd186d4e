#include "cllm/dist/comm.h"

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <thread>
#include <utility>

#include "cllm/dist/collective.h"
#include "comm_mpi.h"
#include "mpi_check.h"

namespace cllm {

Comm::Comm() : mpi_(std::make_unique<Mpi>()) {}

Comm Comm::world() {
  Comm c;
  check_mpi(MPI_Comm_dup(MPI_COMM_WORLD, &c.mpi_->comm), "MPI_Comm_dup");
  MPI_Comm_rank(c.mpi_->comm, &c.rank_);
  MPI_Comm_size(c.mpi_->comm, &c.size_);
  MPI_Comm node = MPI_COMM_NULL;
  check_mpi(MPI_Comm_split_type(c.mpi_->comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node),
            "MPI_Comm_split_type");
  MPI_Comm_size(node, &c.node_size_);
  MPI_Comm_free(&node);
  return c;
}

Comm::Comm(Comm&&) noexcept = default;
Comm& Comm::operator=(Comm&&) noexcept = default;
Comm::~Comm() = default;

Comm::Mpi::~Mpi() {
  inspector.reset();  // it frees a duplicate of comm
  if (comm != MPI_COMM_NULL) MPI_Comm_free(&comm);
}

void Comm::watch_stalls(const StallConfig& policy, SettingNames name_of) {
  collectively(*this, [&] { policy.validate(); });
  mpi_->inspector.reset();
  if (mpi_->comm != MPI_COMM_NULL && size_ > 1 && policy.on())
    mpi_->inspector = std::make_unique<StallInspector>(mpi_->comm, policy, std::move(name_of));
}

void Comm::label_step(int step) const { mpi_->step = step; }

std::vector<CollectiveWait> Comm::take_waits() const { return std::exchange(mpi_->waits, {}); }

void Comm::arrive(Collective what) const {
  mpi_->current = what;
  if (mpi_->inspector) mpi_->inspector->arrive(what, mpi_->step);
}

void Comm::Mpi::complete(std::span<MPI_Request> requests, std::span<double> completed_at) {
  if (comm == MPI_COMM_NULL) return;
  const double begin = omp_get_wtime();
  if (!inspector && completed_at.empty()) {
    check_mpi(MPI_Waitall(static_cast<int>(requests.size()), requests.data(), MPI_STATUSES_IGNORE),
              "MPI_Waitall");
  } else {
    // MPI_Waitall's own loop, with the inspector's look every few
    // milliseconds. A wait past a millisecond (another rank is late) yields
    // the core between tests, as Open MPI does when ranks share cores; it
    // never sleeps: a nonblocking collective progresses only while tested.
    std::vector<int> done(requests.size());
    std::size_t open = 0;
    for (const MPI_Request& r : requests) open += r != MPI_REQUEST_NULL;
    double next_look = begin;
    while (open > 0) {
      int n = 0;
      check_mpi(MPI_Testsome(static_cast<int>(requests.size()), requests.data(), &n, done.data(),
                             MPI_STATUSES_IGNORE),
                "MPI_Testsome");
      if (n == MPI_UNDEFINED) break;
      const double now = omp_get_wtime();
      if (!completed_at.empty())
        for (int i = 0; i < n; ++i) completed_at[done[i]] = now;
      open -= static_cast<std::size_t>(n);
      if (open == 0) break;
      if (inspector && now >= next_look) {
        inspector->poll();
        next_look = now + 0.005;
      }
      if (now - begin > 0.001) std::this_thread::yield();
    }
  }
  waits.push_back({current, step, begin, omp_get_wtime()});
}

namespace {

// One nonblocking collective's request, started by start(request), then
// completed through the Comm.
template <typename Start>
void run_collective(const Comm& comm, Collective what, Start start) {
  comm.arrive(what);
  MPI_Request request = MPI_REQUEST_NULL;
  start(&request);
  comm.mpi().complete(std::span(&request, 1));
}

}  // namespace

bool Comm::all_ok(bool ok, Collective what) const {
  if (mpi_->comm == MPI_COMM_NULL) return ok;
  int mine = ok ? 1 : 0, all = 0;
  run_collective(*this, what, [&](MPI_Request* r) {
    check_mpi(MPI_Iallreduce(&mine, &all, 1, MPI_INT, MPI_LAND, mpi_->comm, r), "MPI_Iallreduce");
  });
  return all != 0;
}

void Comm::sum(std::span<double> v, Collective what) const {
  if (mpi_->comm == MPI_COMM_NULL || v.empty()) return;
  run_collective(*this, what, [&](MPI_Request* r) {
    check_mpi(MPI_Iallreduce(MPI_IN_PLACE, v.data(), static_cast<int>(v.size()), MPI_DOUBLE,
                             MPI_SUM, mpi_->comm, r),
              "MPI_Iallreduce");
  });
}

void Comm::sum(std::span<float> v, Collective what) const {
  if (mpi_->comm == MPI_COMM_NULL || v.empty()) return;
  run_collective(*this, what, [&](MPI_Request* r) {
    check_mpi(MPI_Iallreduce(MPI_IN_PLACE, v.data(), static_cast<int>(v.size()), MPI_FLOAT,
                             MPI_SUM, mpi_->comm, r),
              "MPI_Iallreduce");
  });
}

namespace {
// MPI counts are int: send long buffers in pieces, each broadcast started
// at once and all completed together.
template <typename T>
void broadcast_pieces(const Comm& comm, std::span<T> v, MPI_Datatype type, Collective what) {
  constexpr std::size_t kPiece = std::size_t{1} << 28;
  comm.arrive(what);
  std::vector<MPI_Request> requests;
  for (std::size_t off = 0; off < v.size(); off += kPiece) {
    MPI_Request& r = requests.emplace_back(MPI_REQUEST_NULL);
    check_mpi(MPI_Ibcast(v.data() + off, static_cast<int>(std::min(kPiece, v.size() - off)), type,
                         0, comm.mpi().comm, &r),
              "MPI_Ibcast");
  }
  comm.mpi().complete(requests);
}
}  // namespace

void Comm::broadcast(std::span<float> v, Collective what) const {
  if (mpi_->comm != MPI_COMM_NULL) broadcast_pieces(*this, v, MPI_FLOAT, what);
}

void Comm::broadcast(std::span<std::byte> v, Collective what) const {
  if (mpi_->comm != MPI_COMM_NULL) broadcast_pieces(*this, v, MPI_BYTE, what);
}

std::vector<std::uint64_t> Comm::all_gather(std::uint64_t value, Collective what) const {
  std::vector<std::uint64_t> all(size_, value);
  if (mpi_->comm != MPI_COMM_NULL)
    run_collective(*this, what, [&](MPI_Request* r) {
      check_mpi(MPI_Iallgather(&value, 1, MPI_UINT64_T, all.data(), 1, MPI_UINT64_T, mpi_->comm, r),
                "MPI_Iallgather");
    });
  return all;
}

std::vector<double> Comm::all_gather(double value, Collective what) const {
  std::vector<double> all(size_, value);
  if (mpi_->comm != MPI_COMM_NULL)
    run_collective(*this, what, [&](MPI_Request* r) {
      check_mpi(MPI_Iallgather(&value, 1, MPI_DOUBLE, all.data(), 1, MPI_DOUBLE, mpi_->comm, r),
                "MPI_Iallgather");
    });
  return all;
}

std::vector<std::string> Comm::gather_text(const std::string& mine, Collective what) const {
  std::string all;
  const std::vector<std::string_view> views = gather_text(mine, all, what);
  return {views.begin(), views.end()};
}

std::vector<std::string_view> Comm::gather_text(std::string_view mine, std::string& all, Collective what) const {
  if (mpi_->comm == MPI_COMM_NULL) {
    all.assign(mine);
    return {all};
  }
  // Sizes first, then the texts, into one buffer on rank 0.
  if (mine.size() > static_cast<std::size_t>(INT32_MAX))
    throw std::runtime_error("gather_text: " + std::to_string(mine.size()) + " bytes on rank " +
                             std::to_string(rank_) + " (at most 2 GiB)");
  int size = static_cast<int>(mine.size());
  std::vector<int> sizes(is_root() ? size_ : 0), offsets(sizes.size());
  run_collective(*this, what, [&](MPI_Request* r) {
    check_mpi(MPI_Igather(&size, 1, MPI_INT, sizes.data(), 1, MPI_INT, 0, mpi_->comm, r),
              "MPI_Igather");
  });
  std::size_t total = 0;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    offsets[i] = static_cast<int>(total);
    total += static_cast<std::size_t>(sizes[i]);
  }
  if (total > static_cast<std::size_t>(INT32_MAX))
    throw std::runtime_error("gather_text: " + std::to_string(total) + " bytes (at most 2 GiB)");
  all.resize(total);  // a buffer used again keeps its room
  run_collective(*this, what, [&](MPI_Request* r) {
    check_mpi(MPI_Igatherv(mine.data(), size, MPI_CHAR, all.data(), sizes.data(), offsets.data(),
                           MPI_CHAR, 0, mpi_->comm, r),
              "MPI_Igatherv");
  });
  std::vector<std::string_view> texts;
  for (std::size_t i = 0; i < sizes.size(); ++i)
    texts.push_back(std::string_view(all).substr(static_cast<std::size_t>(offsets[i]), static_cast<std::size_t>(sizes[i])));
  return texts;
}

double Comm::synchronized_now(Collective what) const {
  if (mpi_->comm != MPI_COMM_NULL)
    run_collective(*this, what, [&](MPI_Request* r) {
      check_mpi(MPI_Ibarrier(mpi_->comm, r), "MPI_Ibarrier");
    });
  return omp_get_wtime();
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
