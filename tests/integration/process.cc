#include "tests/integration/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <thread>

#include "base/unique_fd.h"
#include "tests/integration/temp_dir.h"

extern char** environ;

namespace outpost::integration {
namespace {

using SteadyClock = std::chrono::steady_clock;

// Variables that would route a child's HTTP requests through a proxy.
constexpr std::array<std::string_view, 8> kProxyVariables = {
    "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY",
    "all_proxy",  "ALL_PROXY",  "no_proxy",    "NO_PROXY",
};

// Flags whose value is a password or "user:password", which describe() masks.
constexpr std::array<std::string_view, 7> kSecretFlags = {
    "--creds", "--src-creds", "--dest-creds", "--user", "-u", "--password", "--refresh",
};

// What the child reports through the exec-error pipe when it cannot exec.
struct ChildFailure {
  int step;  // 0: chdir, 1: execve
  int error_number;
};

std::string nameOf(const std::string& entry) { return entry.substr(0, entry.find('=')); }

bool isRemoved(const std::string& name, const EnvChanges& changes) {
  if (std::find(kProxyVariables.begin(), kProxyVariables.end(), name) != kProxyVariables.end()) {
    return true;
  }
  if (std::find(changes.unset.begin(), changes.unset.end(), name) != changes.unset.end()) {
    return true;
  }
  for (const std::string& prefix : changes.unset_prefixes) {
    if (name.starts_with(prefix)) {
      return true;
    }
  }
  for (const auto& [set_name, value] : changes.set) {
    if (set_name == name) {
      return true;
    }
  }
  return false;
}

std::vector<std::string> buildEnvironment(const EnvChanges& changes) {
  std::vector<std::string> entries;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    std::string text(*entry);
    if (!isRemoved(nameOf(text), changes)) {
      entries.push_back(std::move(text));
    }
  }
  for (const auto& [name, value] : changes.set) {
    entries.push_back(name + "=" + value);
  }
  return entries;
}

Expected<std::string> resolveBinary(const std::string& name) {
  if (name.empty()) {
    return invalidArgument("empty argv: a command needs at least argv[0]");
  }
  if (name.find('/') != std::string::npos) {
    return name;
  }
  const char* path = std::getenv("PATH");
  std::string_view folders = path != nullptr ? path : "/usr/bin:/bin";
  while (!folders.empty()) {
    size_t colon = folders.find(':');
    std::string candidate(folders.substr(0, colon));
    candidate += '/';
    candidate += name;
    if (::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
    folders = colon == std::string_view::npos ? std::string_view() : folders.substr(colon + 1);
  }
  return notFound("command not found in PATH: " + name);
}

std::vector<char*> pointersTo(std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  pointers.reserve(strings.size() + 1);
  for (std::string& text : strings) {
    pointers.push_back(text.data());
  }
  pointers.push_back(nullptr);
  return pointers;
}

// Runs in the child between fork and exec, so it makes async-signal-safe calls only.
[[noreturn]] void execChild(pid_t parent_pid, int stdin_fd, int stdout_fd, int stderr_fd,
                            const char* cwd, const char* path, char* const* argv, char* const* envp,
                            int failure_fd) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent_pid) {
    ::_exit(127);
  }
  sigset_t empty;
  ::sigemptyset(&empty);
  ::sigprocmask(SIG_SETMASK, &empty, nullptr);

  ::dup2(stdin_fd, STDIN_FILENO);
  ::dup2(stdout_fd, STDOUT_FILENO);
  ::dup2(stderr_fd, STDERR_FILENO);

  ChildFailure failure{0, 0};
  if (cwd != nullptr && ::chdir(cwd) != 0) {
    failure.error_number = errno;
  } else {
    ::execve(path, argv, envp);
    failure = ChildFailure{1, errno};
  }
  ssize_t ignored = ::write(failure_fd, &failure, sizeof(failure));
  (void)ignored;
  ::_exit(127);
}

// Forks and execs `argv` with its stdout and stderr on the given descriptors. Returns the pid
// once exec has succeeded, or the reason it failed.
Expected<pid_t> spawn(const std::vector<std::string>& argv_in, const EnvChanges& env,
                      const std::string& cwd, int stdout_fd, int stderr_fd) {
  OUTPOST_ASSIGN_OR_RETURN(std::string path, resolveBinary(argv_in.empty() ? "" : argv_in[0]));
  std::vector<std::string> argv = argv_in;
  std::vector<std::string> environment = buildEnvironment(env);
  std::vector<char*> argv_pointers = pointersTo(argv);
  std::vector<char*> env_pointers = pointersTo(environment);

  UniqueFd stdin_fd(retryOnEintr([] { return ::open("/dev/null", O_RDONLY | O_CLOEXEC); }));
  if (!stdin_fd) {
    return errnoStatus("open /dev/null", errno);
  }
  int failure_pipe[2];
  if (::pipe2(failure_pipe, O_CLOEXEC) != 0) {
    return errnoStatus("pipe2", errno);
  }
  UniqueFd failure_read(failure_pipe[0]);
  UniqueFd failure_write(failure_pipe[1]);

  pid_t parent_pid = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    return errnoStatus("fork", errno);
  }
  if (pid == 0) {
    execChild(parent_pid, stdin_fd.get(), stdout_fd, stderr_fd, cwd.empty() ? nullptr : cwd.c_str(),
              path.c_str(), argv_pointers.data(), env_pointers.data(), failure_write.get());
  }
  failure_write.reset();

  // The pipe closes on a successful exec (O_CLOEXEC), so a read of 0 bytes means success.
  ChildFailure failure{};
  ssize_t count =
      retryOnEintr([&] { return ::read(failure_read.get(), &failure, sizeof(failure)); });
  if (count == 0) {
    return pid;
  }
  int ignored_status = 0;
  retryOnEintr([&] { return ::waitpid(pid, &ignored_status, 0); });
  if (count != static_cast<ssize_t>(sizeof(failure))) {
    return internalError("child of " + path + " exited before exec without a reason");
  }
  if (failure.step == 0) {
    return errnoStatus("chdir " + cwd + " before starting " + path, failure.error_number);
  }
  return errnoStatus("exec " + path, failure.error_number);
}

std::string describeWaitStatus(int wait_status) {
  if (WIFEXITED(wait_status)) {
    return "exited with code " + std::to_string(WEXITSTATUS(wait_status));
  }
  if (WIFSIGNALED(wait_status)) {
    return "killed by signal " + std::to_string(WTERMSIG(wait_status));
  }
  return "ended with wait status " + std::to_string(wait_status);
}

std::string tailOf(std::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) {
    return std::string(text);
  }
  return "..." + std::string(text.substr(text.size() - max_bytes));
}

// Reads what is available on a non-blocking pipe. Returns false at end of file.
bool drainPipe(int fd, std::string& sink) {
  char buffer[16 * 1024];
  while (true) {
    ssize_t count = retryOnEintr([&] { return ::read(fd, buffer, sizeof(buffer)); });
    if (count > 0) {
      sink.append(buffer, static_cast<size_t>(count));
      continue;
    }
    if (count == 0) {
      return false;
    }
    // EAGAIN: nothing more for now. Any other error ends the stream as well.
    return errno == EAGAIN || errno == EWOULDBLOCK;
  }
}

int remainingMs(SteadyClock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now());
  return static_cast<int>(std::max<int64_t>(0, left.count()));
}

}  // namespace

Expected<Process> Process::start(ProcessOptions options) {
  if (options.log_path.empty()) {
    return invalidArgument("ProcessOptions.log_path is required");
  }
  UniqueFd log_fd(retryOnEintr([&] {
    return ::open(options.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  }));
  if (!log_fd) {
    return errnoStatus("open log " + options.log_path, errno);
  }
  OUTPOST_ASSIGN_OR_RETURN(
      pid_t pid, spawn(options.argv, options.env, options.cwd, log_fd.get(), log_fd.get()));
  return Process(std::move(options), pid);
}

Process::Process(Process&& other) noexcept
    : options_(std::move(other.options_)),
      pid_(std::exchange(other.pid_, -1)),
      wait_status_(std::exchange(other.wait_status_, std::nullopt)) {}

Process& Process::operator=(Process&& other) noexcept {
  if (this != &other) {
    stop();
    options_ = std::move(other.options_);
    pid_ = std::exchange(other.pid_, -1);
    wait_status_ = std::exchange(other.wait_status_, std::nullopt);
  }
  return *this;
}

Process::~Process() { stop(); }

bool Process::isRunning() {
  if (pid_ < 0 || wait_status_.has_value()) {
    return false;
  }
  int status = 0;
  pid_t result = retryOnEintr([&] { return ::waitpid(pid_, &status, WNOHANG); });
  if (result == pid_) {
    wait_status_ = status;
    return false;
  }
  return result == 0;
}

void Process::stop(int grace_ms) {
  if (!isRunning()) {
    return;
  }
  ::kill(pid_, SIGTERM);

  auto deadline = SteadyClock::now() + std::chrono::milliseconds(grace_ms);
  while (SteadyClock::now() < deadline) {
    if (!isRunning()) {
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }

  ::kill(pid_, SIGKILL);
  int status = 0;
  if (retryOnEintr([&] { return ::waitpid(pid_, &status, 0); }) == pid_) {
    wait_status_ = status;
  }
}

std::string Process::exitDescription() {
  if (isRunning()) {
    return "running";
  }
  if (!wait_status_.has_value()) {
    return "not started";
  }
  return describeWaitStatus(*wait_status_);
}

std::string Process::logTail(size_t max_bytes) const {
  Expected<std::string> contents = readFile(options_.log_path);
  if (!contents) {
    return "(no log: " + contents.status().toString() + ")";
  }
  return tailOf(*contents, max_bytes);
}

std::string CommandResult::describe() const {
  std::string text;
  bool mask_next = false;
  for (const std::string& argument : argv) {
    if (!text.empty()) {
      text += ' ';
    }
    std::string_view flag = std::string_view(argument).substr(0, argument.find('='));
    bool is_secret_flag =
        std::find(kSecretFlags.begin(), kSecretFlags.end(), flag) != kSecretFlags.end();
    if (mask_next) {
      text += "***";
    } else if (is_secret_flag && argument.find('=') != std::string::npos) {
      text += std::string(flag) + "=***";
    } else {
      text += argument;
    }
    mask_next = is_secret_flag && argument.find('=') == std::string::npos;
  }

  if (timed_out) {
    text += ": timed out and was killed";
  } else if (term_signal != 0) {
    text += ": killed by signal " + std::to_string(term_signal);
  } else {
    text += ": exited with code " + std::to_string(exit_code);
  }
  std::string_view output = stderr_text.empty() ? stdout_text : stderr_text;
  if (!output.empty()) {
    text += ": " + tailOf(output, 2000);
  }
  return text;
}

Status CommandResult::toStatus() const {
  if (succeeded()) {
    return Status::ok();
  }
  return Status(timed_out ? StatusCode::kTimedOut : StatusCode::kInternal, describe());
}

Expected<CommandResult> run(std::vector<std::string> argv, const RunOptions& options) {
  int out_pipe[2];
  int err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) {
    return errnoStatus("pipe2", errno);
  }
  UniqueFd out_read(out_pipe[0]);
  UniqueFd out_write(out_pipe[1]);
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    return errnoStatus("pipe2", errno);
  }
  UniqueFd err_read(err_pipe[0]);
  UniqueFd err_write(err_pipe[1]);

  auto deadline = SteadyClock::now() + std::chrono::milliseconds(options.timeout_ms);
  OUTPOST_ASSIGN_OR_RETURN(pid_t pid,
                           spawn(argv, options.env, options.cwd, out_write.get(), err_write.get()));
  out_write.reset();
  err_write.reset();
  ::fcntl(out_read.get(), F_SETFL, O_NONBLOCK);
  ::fcntl(err_read.get(), F_SETFL, O_NONBLOCK);

  CommandResult result;
  result.argv = std::move(argv);

  // Read both pipes until the child closes them or the time runs out.
  bool is_out_open = true;
  bool is_err_open = true;
  while ((is_out_open || is_err_open) && remainingMs(deadline) > 0) {
    std::array<pollfd, 2> fds = {pollfd{is_out_open ? out_read.get() : -1, POLLIN, 0},
                                 pollfd{is_err_open ? err_read.get() : -1, POLLIN, 0}};
    int ready = ::poll(fds.data(), fds.size(), remainingMs(deadline));
    if (ready < 0 && errno != EINTR) {
      break;
    }
    if (is_out_open && fds[0].revents != 0) {
      is_out_open = drainPipe(out_read.get(), result.stdout_text);
    }
    if (is_err_open && fds[1].revents != 0) {
      is_err_open = drainPipe(err_read.get(), result.stderr_text);
    }
  }

  // A child may close its output before it exits, so wait for the exit within the deadline.
  int status = 0;
  pid_t reaped = 0;
  while (reaped == 0 && remainingMs(deadline) > 0) {
    reaped = retryOnEintr([&] { return ::waitpid(pid, &status, WNOHANG); });
    if (reaped == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  if (reaped == 0) {
    result.timed_out = true;
    ::kill(pid, SIGKILL);
    retryOnEintr([&] { return ::waitpid(pid, &status, 0); });
  }

  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.term_signal = WTERMSIG(status);
  }
  return result;
}

}  // namespace outpost::integration
