// Linked into every test binary. A peer that closes first makes the next write to its socket
// raise SIGPIPE, which would kill the test binary. The outpost binary ignores SIGPIPE in
// main(); the tests do the same before any test runs.
#include <csignal>

namespace {

const bool kSigpipeIgnored = [] {
  std::signal(SIGPIPE, SIG_IGN);
  return true;
}();

}  // namespace
