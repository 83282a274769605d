// Child processes for the integration harness: long-running peers (Process) and one-shot
// commands (run).
//
// Every child starts with stdin on /dev/null, in the test's environment changed by EnvChanges,
// and without the proxy variables (http_proxy, HTTPS_PROXY, ALL_PROXY, no_proxy and their other
// spellings), so that its requests to 127.0.0.1 never go through a proxy. A child also gets
// SIGKILL when the thread that started it exits (PR_SET_PDEATHSIG), so a crashed test binary
// leaves no peer behind. Children are signalled by their pid only, never by name or group.
// NOTE: neither the death signal nor stop() reaches grandchildren. The peers started here
// (docker-registry, containerd without containers, token_issuer.py) start none that outlive
// them, but a peer that does would leave them running.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"

namespace outpost::integration {

// Changes applied to the test's environment for one child.
struct EnvChanges {
  // Variables set, replacing any inherited value.
  std::vector<std::pair<std::string, std::string>> set;
  // Variables removed by exact name.
  std::vector<std::string> unset;
  // Variables removed when their name starts with one of these ("REGISTRY_").
  std::vector<std::string> unset_prefixes;
};

struct ProcessOptions {
  // argv[0] is a path, or a name looked up in the test's PATH.
  std::vector<std::string> argv;
  EnvChanges env;
  // Working folder of the child. Empty keeps the test's.
  std::string cwd;
  // File that receives the child's stdout and stderr, appended. Required.
  std::string log_path;
};

// A running child with its output in a log file. Stopping it, or destroying the object, sends
// SIGTERM to its pid, then SIGKILL after a grace period, and reaps it.
class Process {
 public:
  // Starts the child. Fails when the log file cannot be opened or exec fails (for example,
  // when the binary is missing), with the errno text in the Status.
  static Expected<Process> start(ProcessOptions options);

  Process(Process&& other) noexcept;
  Process& operator=(Process&& other) noexcept;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  ~Process();

  pid_t pid() const { return pid_; }
  const std::string& logPath() const { return options_.log_path; }
  const std::vector<std::string>& argv() const { return options_.argv; }

  // Returns true while the child has not exited. Reaps it once it has.
  bool isRunning();

  // Sends SIGTERM, waits up to `grace_ms` for the child to exit, then sends SIGKILL and waits.
  // Does nothing when the child has already been reaped.
  void stop(int grace_ms = 5000);

  // "running", "exited with code N" or "killed by signal N".
  std::string exitDescription();

  // Returns the last `max_bytes` of the log file, for failure messages.
  std::string logTail(size_t max_bytes = 4000) const;

 private:
  Process(ProcessOptions options, pid_t pid) : options_(std::move(options)), pid_(pid) {}

  ProcessOptions options_;
  pid_t pid_ = -1;
  // The wait(2) status once reaped.
  std::optional<int> wait_status_;
};

struct RunOptions {
  EnvChanges env;
  std::string cwd;
  // The child is killed with SIGKILL, by pid, when it runs longer than this.
  int timeout_ms = 120'000;
};

// The outcome of a command that ran to its end, or was killed when its time ran out.
struct CommandResult {
  std::vector<std::string> argv;
  // The exit code, or -1 when the child was killed by a signal.
  int exit_code = -1;
  // The signal that killed the child, or 0.
  int term_signal = 0;
  bool timed_out = false;
  std::string stdout_text;
  std::string stderr_text;

  // True when the command exited with code 0 in time.
  bool succeeded() const { return exit_code == 0 && !timed_out; }
  // The command line (values of credential flags masked), how it ended and the end of
  // stderr, for failure messages.
  std::string describe() const;
  // OK when succeeded(), else kTimedOut or kInternal with describe() as message.
  Status toStatus() const;
};

// Runs `argv` to its end, capturing stdout and stderr. Fails only when the command could not
// be started, because a non-zero exit or a timeout is reported in the CommandResult.
Expected<CommandResult> run(std::vector<std::string> argv, const RunOptions& options = {});

}  // namespace outpost::integration
