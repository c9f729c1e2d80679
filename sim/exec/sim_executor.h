// The simulator's executor: statements become model transitions; the invariant checker runs
// after every step.
#pragma once

#include "model/fuse.h"
#include "sim/exec/checker.h"
#include "sim/exec/executor.h"

#include <map>
#include <optional>

namespace fpsim::sim {

// A call that sleeps stays in the model until it returns, and the model and the checker look at
// every sleeping call after each step; the parser's name limits do not bound them (one handle
// can sleep in many reads). While this many are asleep, a statement that could sleep is refused
// as invalid (README "Limits"): far more than any trace needs, few enough that a step stays cheap.
inline constexpr std::size_t kMaxCallsAsleep = 1024;

class SimExecutor final : public Executor {
public:
  // mutant: a seeded bug, for showing that the checker catches it.
  explicit SimExecutor(model::Mutant mutant = model::Mutant::None) : mutant_(mutant) {}

  void begin(const Trace &t, KernelProfile p) override;
  Outcome step(const Statement &s, const Bindings &bindings) override;
  CheckResult check(const Statement &s, const Bindings &bindings) override;
  std::vector<Violation> after_step() override;
  std::vector<Violation> drain() override;
  void end() override {}

  const model::Model &model() const { return *m_; }
  // Off: after_step runs no invariant check (for measuring what the checker costs).
  void set_checks(bool on) { checks_ = on; }
  // Full: every check looks at every object (for tests comparing it with incremental checking).
  void set_check_mode(CheckMode mode) { check_mode_ = mode; }

  // What each name is bound to now, for tools that enumerate or compare states (fpsim explore).
  // SimExecutor is copyable: a copy continues independently from the same state.
  std::optional<model::FileId> fd(int handle) const {
    return fds_.at(static_cast<std::size_t>(handle));
  }
  std::optional<model::VmaId> mapping(int slot) const {
    return vmas_.at(static_cast<std::size_t>(slot));
  }
  std::optional<model::WriteId> held_write(int slot) const {
    return writes_.at(static_cast<std::size_t>(slot));
  }
  // Calls waiting for an await: f(kind, slot, task).
  template <typename F> void for_each_pending(F &&f) const {
    for (const auto &[name, p] : pending_)
      f(name.kind, name.slot, p.task);
  }

private:
  struct Pending {
    model::TaskId task{};
    Op op = Op::Open;
    int handle = -1;
  };

  // Why a statement cannot run now (nothing happens then), or nullopt.
  std::optional<std::string> sleeping_call_limit() const;
  std::optional<std::string> unrunnable(const Statement &s, const Bindings &bindings) const;
  Outcome run(const Statement &s, const Bindings &bindings);
  Outcome backing_open(const Statement &s);
  Outcome on_fd(const Statement &s);
  Outcome open_like(const Statement &s, const Bindings &bindings);
  // What a check finds to differ ("" when it passes).
  std::string check_inode(const CheckSpec &c) const;
  std::string check_backing(const CheckSpec &c) const;
  std::string check_file(const CheckSpec &c) const;
  std::string check_conn(const CheckSpec &c) const;
  Outcome await(const Statement &s);
  void name_new_objects(const std::string &file_name);
  std::optional<model::InodeId> find_inode(int mount_slot) const;

  model::Mutant mutant_;
  const Trace *trace_ = nullptr;
  std::optional<model::Model> m_;
  InvariantChecker checker_;
  ObjectNames names_;
  std::vector<std::optional<model::FileId>> fds_;      // per handle: the open fd's file
  std::vector<std::optional<model::FileId>> last_file_; // per handle: for `check file`
  std::vector<std::optional<model::VmaId>> vmas_;
  std::vector<std::optional<model::WriteId>> writes_;
  std::vector<std::optional<model::FbId>> fbs_;
  std::vector<bool> exists_;
  std::map<NameRef, Pending> pending_; // by the name an await gives
  int last_internal_ = 0;
  std::vector<Violation> step_violations_;
  bool checks_ = true;
  CheckMode check_mode_ = CheckMode::Incremental;
};

} // namespace fpsim::sim
