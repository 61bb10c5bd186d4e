// MpiEnvironment: MPI's lifetime as a scope in main. Initialises MPI with
// MPI_THREAD_SERIALIZED (the main thread calls MPI, but for the gradient
// reducer's progress thread while backward runs; OpenMP threads never do)
// and finalises it on scope exit. A run without mpirun is one rank.
#pragma once

namespace cllm {

class MpiEnvironment {
 public:
  MpiEnvironment(int& argc, char**& argv);
  ~MpiEnvironment();
  MpiEnvironment(const MpiEnvironment&) = delete;
  MpiEnvironment& operator=(const MpiEnvironment&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  // Ends every rank of MPI_COMM_WORLD: for errors that only some ranks see.
  [[noreturn]] void abort(int exit_code) const;

 private:
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace cllm
