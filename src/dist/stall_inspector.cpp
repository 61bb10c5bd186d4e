// The stall inspector (src/dist/stall_inspector.h; its settings: stall.h).
#include "stall_inspector.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <system_error>
#include <utility>

#include "mpi_check.h"

namespace cllm {

namespace {

constexpr int kQuestionTag = 1;  // "are you there?"
constexpr int kAnswerTag = 2;
constexpr int kNoticeTag = 3;    // "I give up: end"

// A rank that waits answers within a few milliseconds (it polls every 5 ms,
// and so does a busy rank's answering thread): a question goes out this
// long before its check.
constexpr double kAnswerSeconds = 0.25;
constexpr auto kBusyPollInterval = std::chrono::milliseconds(5);
// How long a rank that gives up lets its notices travel before it ends.
constexpr double kNoticeSeconds = 1.0;
// How much longer than abort_s a rank other than 0 waits before it gives up
// on a silent rank 0: a rank 0 that is there names the missing ranks first.
constexpr double kVerdictGraceSeconds = 1.0;

}  // namespace

const char* to_string(Collective what) {
  switch (what) {
    case Collective::agreement: return "the set-up agreement";
    case Collective::gradient_allreduce: return "the gradient allreduce";
    case Collective::loss_sum: return "the loss sum";
    case Collective::evaluation: return "the evaluation";
    case Collective::replica_check: return "the replica check";
    case Collective::stop_agreement: return "the stop agreement";
    case Collective::checkpoint_agreement: return "the checkpoint agreement";
    case Collective::resume: return "the resume broadcast";
    case Collective::prepare: return "prepare's exchange";
    case Collective::log: return "the log gather";
    case Collective::trace: return "the trace gather";
  }
  return "a collective";
}

const char* to_string(Busy what) {
  switch (what) {
    case Busy::nothing: return "with nothing";
    case Busy::writing_checkpoint: return "writing a checkpoint";
    case Busy::reading_checkpoint: return "reading a checkpoint";
    case Busy::evaluating: return "evaluating";
  }
  return "with its own work";
}

void StallConfig::validate() const {
  require_setting(std::isfinite(warn_s) && warn_s >= 0, "{stall_warn} must be 0 (off) or positive");
  require_setting(std::isfinite(abort_s) && abort_s >= 0,
                  "{stall_abort} must be 0 (off) or positive");
}

std::string rank_list(const std::vector<int>& ranks) {
  constexpr std::size_t kNamed = 16;
  if (ranks.empty()) return "no rank";
  std::string s = ranks.size() == 1 ? "rank " : "ranks ";
  const std::size_t named = std::min(ranks.size(), kNamed);
  for (std::size_t i = 0; i < named; ++i) {
    if (i > 0) s += i + 1 == named && named == ranks.size() ? " and " : ", ";
    s += std::to_string(ranks[i]);
  }
  if (named < ranks.size()) s += " and " + std::to_string(ranks.size() - named) + " more";
  return s;
}

StallInspector::StallInspector(MPI_Comm parent, StallConfig policy, SettingNames name_of)
    : policy_(policy), name_of_(std::move(name_of)) {
  check_mpi(MPI_Comm_dup(parent, &comm_), "MPI_Comm_dup");
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
  // Ranks above 1 never warn: rank 0 names the missing ranks, rank 1 a missing rank 0.
  warns_ = policy_.warn_s > 0 && rank_ <= 1;
  aborts_ = policy_.abort_s > 0;
  answered_.assign(size_, 0);
  replies_.assign(size_, {});
  check_mpi(MPI_Irecv(&question_in_, 1, MPI_INT64_T, MPI_ANY_SOURCE, kQuestionTag, comm_,
                      &question_request_),
            "MPI_Irecv");
  check_mpi(MPI_Irecv(answer_in_.data(), kAnswerWords, MPI_INT64_T, MPI_ANY_SOURCE, kAnswerTag,
                      comm_, &answer_request_),
            "MPI_Irecv");
  check_mpi(MPI_Irecv(notice_, kNoticeWords, MPI_INT64_T, MPI_ANY_SOURCE, kNoticeTag, comm_,
                      &notice_request_),
            "MPI_Irecv");
}

StallInspector::~StallInspector() {
  if (answerer_.joinable()) {  // a BusyScope left by an exception, past its Comm
    answerer_.request_stop();
    answerer_.join();
  }
  // No throwing here: the receives still posted are cancelled, and the
  // answers in flight delivered (a few words each: MPI sends them eagerly).
  MPI_Request open[] = {question_request_, answer_request_, notice_request_};
  for (MPI_Request& r : open)
    if (r != MPI_REQUEST_NULL) MPI_Cancel(&r);
  MPI_Waitall(3, open, MPI_STATUSES_IGNORE);
  for (Send& s : sends_) MPI_Wait(&s.request, MPI_STATUS_IGNORE);
  MPI_Comm_free(&comm_);
}

std::string StallInspector::where(int step) const {
  return step > 0 ? "step " + std::to_string(step) : "setting up";
}

std::string StallInspector::setting(const char* name, double seconds) const {
  char value[32];
  std::snprintf(value, sizeof value, "%g", seconds);
  return name_settings(std::string("{") + name + "} " + value, name_of_);
}

void StallInspector::send(int to, int tag, const Words& words, int count) {
  Send& s = sends_.emplace_back();
  s.words = words;
  check_mpi(MPI_Isend(s.words.data(), count, MPI_INT64_T, to, tag, comm_, &s.request),
            "MPI_Isend");
}

void StallInspector::reap_sends() {
  while (!sends_.empty()) {
    int done = 0;
    check_mpi(MPI_Test(&sends_.front().request, &done, MPI_STATUS_IGNORE), "MPI_Test");
    if (!done) return;
    sends_.pop_front();
  }
}

void StallInspector::arrive(Collective what, int step) {
  if (busy_.load() != Busy::nothing)
    throw std::logic_error(std::string("a collective (") + to_string(what) +
                           ") inside a BusyScope (" + to_string(busy_.load()) + ")");
  what_ = what;
  step_ = step;
  arrived_at_ = omp_get_wtime();
  asking_ = false;
  noted_busy_ = false;
  next_warning_ = policy_.warn_s;
  next_abort_ = policy_.abort_s + (rank_ == 0 ? 0.0 : kVerdictGraceSeconds);
  schedule_next_check();
}

void StallInspector::schedule_next_check() {
  check_is_abort_ = aborts_ && (!warns_ || next_abort_ <= next_warning_);
  check_at_ = check_is_abort_ ? next_abort_ : next_warning_;
}

// Each message that has come in on a receive always posted (word, from
// any rank, with tag): on_message(source), then the receive again.
template <typename OnMessage>
void StallInspector::drain(MPI_Request& request, std::int64_t* words, int count, int tag,
                           OnMessage on_message) {
  for (;;) {
    int done = 0;
    MPI_Status status;
    check_mpi(MPI_Test(&request, &done, &status), "MPI_Test");
    if (!done) return;
    on_message(status.MPI_SOURCE);
    check_mpi(MPI_Irecv(words, count, MPI_INT64_T, MPI_ANY_SOURCE, tag, comm_, &request),
              "MPI_Irecv");
  }
}

void StallInspector::answer_questions() {
  drain(question_request_, &question_in_, 1, kQuestionTag, [&](int from) {
    const Busy busy = busy_.load();
    const double busy_s = busy == Busy::nothing ? 0.0 : omp_get_wtime() - busy_since_;
    send(from, kAnswerTag,
         {question_in_, static_cast<std::int64_t>(busy), std::llround(busy_s * 1000)},
         kAnswerWords);
  });
}

void StallInspector::read_answers() {
  drain(answer_request_, answer_in_.data(), kAnswerWords, kAnswerTag, [&](int from) {
    if (answer_in_[kQuestion] < answered_[from]) return;  // an older question's
    answered_[from] = answer_in_[kQuestion];
    const std::int64_t busy = answer_in_[kBusy];
    replies_[from] = {busy >= 0 && busy <= static_cast<std::int64_t>(Busy::evaluating)
                          ? static_cast<Busy>(busy)
                          : Busy::nothing,
                      static_cast<double>(answer_in_[kBusyMs]) / 1000.0, omp_get_wtime()};
  });
}

void StallInspector::end_if_noticed() {
  int noticed = 0;
  check_mpi(MPI_Test(&notice_request_, &noticed, MPI_STATUS_IGNORE), "MPI_Test");
  if (noticed) end_on_notice();
}

Busy StallInspector::set_busy(Busy what) {
  const Busy outer = busy_.exchange(what);
  if (outer == Busy::nothing && what != Busy::nothing) {
    busy_since_ = omp_get_wtime();
    try {
      answerer_ = std::jthread([this](std::stop_token stop) { answer_while_busy(stop); });
    } catch (const std::system_error&) {
      // No thread to be had: this rank stays silent while busy, as a
      // computing rank does, and may be named.
    }
  } else if (what == Busy::nothing && answerer_.joinable()) {
    answerer_.request_stop();
    answerer_.join();
  }
  return outer;
}

void StallInspector::answer_while_busy(const std::stop_token& stop) {
  // The main thread makes no MPI call meanwhile (arrive refuses), so this
  // thread's calls are serialized with the rest, as MPI_THREAD_SERIALIZED
  // asks; joining it hands MPI back.
  try {
    while (!stop.stop_requested()) {
      answer_questions();
      end_if_noticed();
      reap_sends();
      std::this_thread::sleep_for(kBusyPollInterval);
    }
  } catch (const std::exception& e) {
    // An MPI error: stop answering (the rank may then be named), and let
    // the main thread's next collective meet the error itself.
    std::fprintf(stderr, "cllm: warning: rank %d: the stall inspector stopped answering: %s\n",
                 rank_, e.what());
  }
}

std::vector<int> StallInspector::asked() const {
  std::vector<int> ranks;
  if (rank_ != 0) return {0};
  for (int r = 1; r < size_; ++r) ranks.push_back(r);
  return ranks;
}

std::vector<int> StallInspector::silent() const {
  std::vector<int> ranks;
  for (int r : asked())
    if (answered_[r] < question_) ranks.push_back(r);
  return ranks;
}

std::vector<int> StallInspector::busy() const {
  std::vector<int> ranks;
  for (int r : asked())
    if (answered_[r] == question_ && replies_[r].busy != Busy::nothing) ranks.push_back(r);
  return ranks;
}

// Once a wait: the ranks are there, busy with their own long work. It says
// what the wait is for, and how long that work has lasted (a file system
// that hangs shows here, not as a stall).
void StallInspector::note_busy(double waited, const std::vector<int>& ranks) const {
  const double now = omp_get_wtime();
  const auto so_far = [&](const Reply& r) { return r.busy_s + (now - r.received_at); };
  const Reply* longest = &replies_[ranks.front()];
  for (int r : ranks)
    if (so_far(replies_[r]) > so_far(*longest)) longest = &replies_[r];
  std::fprintf(stderr, "cllm: note: %s%s: waiting %.1f s in %s for %s, busy %s (%.1f s so far)\n",
               rank_ == 0 ? "" : "rank 1: ", where(step_).c_str(), waited, to_string(what_),
               rank_list(ranks).c_str(), to_string(longest->busy), so_far(*longest));
  std::fflush(stderr);
}

void StallInspector::poll() {
  answer_questions();
  end_if_noticed();
  read_answers();
  reap_sends();
  if (!warns_ && !aborts_) return;  // this rank only answers
  const double waited = omp_get_wtime() - arrived_at_;
  if (!asking_ && waited >= check_at_ - kAnswerSeconds) {
    ++question_;
    for (int r : asked()) send(r, kQuestionTag, {question_}, 1);
    asking_ = true;
    asked_at_ = waited;
  }
  // The ranks get their time to answer, also when this rank itself comes
  // back late (stopped, it asks only now).
  if (!asking_ || waited < std::max(check_at_, asked_at_ + kAnswerSeconds)) return;
  asking_ = false;
  const std::vector<int> missing = silent();
  if (check_is_abort_) {
    // A busy rank answered: it is there, so no rank gives up on it.
    if (!missing.empty()) give_up(waited, missing);
    next_abort_ = waited + policy_.abort_s;  // everyone answered: ask again later
  } else {
    const std::vector<int> working = busy();
    if (missing.empty() && !working.empty() && !noted_busy_) {
      note_busy(waited, working);
      noted_busy_ = true;
    }
    if (!missing.empty()) {
      std::fprintf(stderr, "cllm: warning: %s%s: waiting %.1f s in %s for %s, which %s not answer (%s)\n",
                   rank_ == 0 ? "" : "rank 1: ", where(step_).c_str(), waited, to_string(what_),
                   rank_list(missing).c_str(), missing.size() == 1 ? "does" : "do",
                   setting("stall_warn", policy_.warn_s).c_str());
      std::fflush(stderr);
    }
    next_warning_ = waited + policy_.warn_s;
  }
  schedule_next_check();
}

void StallInspector::give_up(double waited, const std::vector<int>& missing) {
  std::int64_t notice[kNoticeWords] = {};
  notice[kSender] = rank_;
  notice[kWhat] = static_cast<std::int64_t>(what_);
  notice[kStep] = step_;
  notice[kMissing] = static_cast<std::int64_t>(missing.size());
  for (std::size_t i = 0; i < missing.size() && i < static_cast<std::size_t>(kMaxNamed); ++i)
    notice[kFirstMissing + i] = missing[i];
  std::fprintf(stderr,
               "cllm: error: rank %d: %s: gave up after %.1f s waiting in %s for %s, which %s "
               "not answer (%s); every rank ends with exit code %d\n",
               rank_, where(step_).c_str(), waited, to_string(what_), rank_list(missing).c_str(),
               missing.size() == 1 ? "does" : "do", setting("stall_abort", policy_.abort_s).c_str(),
               kExitStalled);
  std::fflush(nullptr);
  // Every other rank learns it, the missing ones too when they come back.
  // The notices are small, so MPI delivers them without the receiver's
  // help; give them a moment, then end whatever became of them.
  std::vector<MPI_Request> told;
  for (int r = 0; r < size_; ++r) {
    if (r == rank_) continue;
    MPI_Request q = MPI_REQUEST_NULL;
    if (MPI_Isend(notice, kNoticeWords, MPI_INT64_T, r, kNoticeTag, comm_, &q) == MPI_SUCCESS)
      told.push_back(q);
  }
  const double sent_at = omp_get_wtime();
  int done = 0;
  while (!done && omp_get_wtime() - sent_at < kNoticeSeconds)
    MPI_Testall(static_cast<int>(told.size()), told.data(), &done, MPI_STATUSES_IGNORE);
  std::fflush(nullptr);
  std::_Exit(kExitStalled);
}

void StallInspector::end_on_notice() const {
  std::vector<int> missing;
  for (std::int64_t i = 0; i < std::min<std::int64_t>(notice_[kMissing], kMaxNamed); ++i)
    missing.push_back(static_cast<int>(notice_[kFirstMissing + i]));
  std::fprintf(stderr, "cllm: error: rank %d: %s: rank %d gave up waiting in %s for %s (%s); "
               "ending with exit code %d\n",
               rank_, where(static_cast<int>(notice_[kStep])).c_str(),
               static_cast<int>(notice_[kSender]),
               to_string(static_cast<Collective>(notice_[kWhat])), rank_list(missing).c_str(),
               setting("stall_abort", policy_.abort_s).c_str(), kExitStalled);
  std::fflush(nullptr);
  std::_Exit(kExitStalled);
}

}  // namespace cllm
