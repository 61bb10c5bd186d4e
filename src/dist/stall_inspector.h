// StallInspector: the watch over a Comm's collectives that stall.h
// describes. Private to src/dist/: a Comm owns one (Comm::watch_stalls) and
// calls it from its main thread only, while it waits for a collective.
//
// A rank that has waited nearly a threshold (the warning's or the abort's)
// asks the ranks it may be waiting for whether they are there: rank 0 asks
// every rank, the others ask rank 0. A rank answers from its own wait, so
// the ranks that do not answer are the ones the collective waits for: still
// computing (late), or stopped, even inside the collective itself, where an
// arrival message alone would count them as present. A rank busy with long
// work of its own (busy.h: a checkpoint, an evaluation) answers from a
// thread of the inspector instead, "busy with what": it is named in a note,
// never in a warning, and no rank gives up on it. At the threshold rank 0
// names them; rank 1 names rank 0 when rank 0 does not answer. At abort_s the
// rank that found them tells every rank to end, and ends. A healthy run
// sends no message at all: the questions start only after a long wait.
//
// Ending cannot unwind the stack: MPI_Finalize, and the MPI calls of our
// destructors, would wait for the missing rank. The inspector prints its one
// line, flushes every stdio stream (metrics.jsonl and checkpoints are written
// whole or not at all) and calls _Exit(kExitStalled).
#pragma once

#include <mpi.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "cllm/base/setting_error.h"
#include "cllm/dist/busy.h"
#include "cllm/dist/stall.h"

namespace cllm {

class StallInspector {
 public:
  // Duplicates parent for the inspector's own messages. Collective. name_of
  // names the settings in its messages ({stall_abort}: the CLI's --stall-abort).
  StallInspector(MPI_Comm parent, StallConfig policy, SettingNames name_of);
  ~StallInspector();
  StallInspector(const StallInspector&) = delete;
  StallInspector& operator=(const StallInspector&) = delete;

  // This rank enters its next collective, `what`, at step `step`. Throws
  // std::logic_error while busy (busy.h: the answering thread uses MPI).
  void arrive(Collective what, int step);
  // This rank's main thread starts long work of its own (busy.h), or ends
  // it (Busy::nothing); returns what it was busy with before. From the
  // first work to Busy::nothing, a thread answers the other ranks' questions
  // as this rank, busy, and ends the process on a give-up notice.
  Busy set_busy(Busy what);
  // Called every few milliseconds while this rank waits for the collective
  // it last arrived at: answers the other ranks' questions, asks its own,
  // warns, and ends the process when the run is given up.
  void poll();

 private:
  // A give-up notice: who gives up, in which collective and step, and the
  // missing ranks.
  enum NoticeWord { kSender, kWhat, kStep, kMissing, kFirstMissing };
  static constexpr int kNoticeWords = 64;
  static constexpr int kMaxNamed = kNoticeWords - kFirstMissing;

  // An answer: the question's number, what the rank is busy with
  // (Busy::nothing: it waits in a collective), and for how long, in ms.
  enum AnswerWord { kQuestion, kBusy, kBusyMs };
  static constexpr int kAnswerWords = 3;
  using Words = std::array<std::int64_t, kAnswerWords>;

  struct Send {
    MPI_Request request = MPI_REQUEST_NULL;
    Words words = {};
  };
  void send(int to, int tag, const Words& words, int count);
  void reap_sends();
  template <typename OnMessage>
  void drain(MPI_Request& request, std::int64_t* words, int count, int tag, OnMessage on_message);
  void answer_questions();
  void read_answers();
  void end_if_noticed();
  void answer_while_busy(const std::stop_token& stop);
  // The ranks this one asks, and those of them that have not answered the
  // last question.
  std::vector<int> asked() const;
  std::vector<int> silent() const;
  std::vector<int> busy() const;  // answered the last question busy
  void note_busy(double waited, const std::vector<int>& ranks) const;
  void schedule_next_check();
  [[noreturn]] void give_up(double waited, const std::vector<int>& missing);
  [[noreturn]] void end_on_notice() const;
  std::string where(int step) const;  // "step 12" or "setting up"
  std::string setting(const char* name, double seconds) const;  // "--stall-abort 2"

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  StallConfig policy_;
  SettingNames name_of_;
  bool warns_ = false, aborts_ = false;  // the checks this rank makes
  // The collective waited for.
  Collective what_ = Collective::agreement;
  int step_ = 0;
  double arrived_at_ = 0;  // omp_get_wtime()
  // The next warning and abort, and the next check (the earlier of the
  // two), in seconds after arrival; its question.
  double next_warning_ = 0, next_abort_ = 0, check_at_ = 0;
  bool check_is_abort_ = false;
  bool noted_busy_ = false;      // this wait's note on busy ranks is out
  bool asking_ = false;          // the question went out
  double asked_at_ = 0;          // when, in seconds after arrival
  std::int64_t question_ = 0;    // its number (questions of this rank, all waits)
  std::vector<std::int64_t> answered_;  // per rank: the last question it answered
  struct Reply {
    Busy busy = Busy::nothing;
    double busy_s = 0;       // when it answered
    double received_at = 0;  // omp_get_wtime() here
  };
  std::vector<Reply> replies_;  // per rank: its answer to that question
  // Receives always posted: a question, an answer, a give-up notice.
  std::int64_t question_in_ = 0;
  Words answer_in_ = {};
  std::int64_t notice_[kNoticeWords] = {};
  MPI_Request question_request_ = MPI_REQUEST_NULL, answer_request_ = MPI_REQUEST_NULL,
              notice_request_ = MPI_REQUEST_NULL;
  std::deque<Send> sends_;  // in flight; a deque keeps their words in place
  // This rank's own long work (busy.h): written by the main thread, read by
  // the answering thread, which alone touches MPI while it runs.
  std::atomic<Busy> busy_{Busy::nothing};
  double busy_since_ = 0;  // omp_get_wtime(), set before the thread starts
  std::jthread answerer_;
};

// "rank 3", "ranks 1, 4 and 7" (at most 16 named, then "and N more").
std::string rank_list(const std::vector<int>& ranks);

}  // namespace cllm
