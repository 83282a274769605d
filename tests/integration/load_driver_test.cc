// The bench suite's load driver (outpost_load) against real servers: Outpost in front of a CNCF
// distribution upstream, and a canned server for the framings and faults those never produce.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/digest.h"
#include "base/unique_fd.h"
#include "tests/integration/harness.h"
#include "tests/integration/outpost_server.h"

extern char** environ;

namespace outpost::integration {
namespace {

using nlohmann::json;

#ifdef OUTPOST_LOAD_BINARY
constexpr const char* kLoadBinary = OUTPOST_LOAD_BINARY;
#else
constexpr const char* kLoadBinary = nullptr;
#endif

// Runs outpost_load with `arguments` and standard input on /dev/null.
Expected<CommandResult> runDriver(std::vector<std::string> arguments, int timeout_ms = 120'000) {
  arguments.insert(arguments.begin(), kLoadBinary);
  RunOptions options;
  options.timeout_ms = timeout_ms;
  return run(std::move(arguments), options);
}

// Parses the driver's stdout, which ends with one JSON document on its own line.
json lastJsonLine(const std::string& stdout_text) {
  size_t end = stdout_text.find_last_not_of('\n');
  if (end == std::string::npos) {
    return json();
  }
  size_t start = stdout_text.rfind('\n', end);
  start = start == std::string::npos ? 0 : start + 1;
  return json::parse(stdout_text.substr(start, end - start + 1), nullptr, false);
}

// Uploads `data` to `repository` in one PUT and returns its digest.
Expected<std::string> pushBlob(const DistributionRegistry& registry, const std::string& repository,
                               const std::string& data) {
  std::string digest = sha256Of(data).str();
  HttpRequest start;
  start.method = "POST";
  start.url = registry.url() + "/v2/" + repository + "/blobs/uploads/";
  OUTPOST_ASSIGN_OR_RETURN(HttpResult started, httpRequest(start));
  std::optional<std::string> location = started.header("Location");
  if (started.status != 202 || !location) {
    return internalError("starting an upload returned " + std::to_string(started.status));
  }

  HttpRequest put;
  put.method = "PUT";
  put.url = (location->front() == '/' ? registry.url() + *location : *location) +
            (location->find('?') == std::string::npos ? "?" : "&") + "digest=" + digest;
  put.headers = {{"Content-Type", "application/octet-stream"}};
  put.body = data;
  put.timeout_ms = 60'000;
  OUTPOST_ASSIGN_OR_RETURN(HttpResult finished, httpRequest(put));
  if (finished.status != 201) {
    return internalError("finishing an upload returned " + std::to_string(finished.status));
  }
  return digest;
}

// A server on 127.0.0.1 that reads one request per connection, sends the same response bytes
// (only the head for HEAD) and closes the connection, one connection at a time. Closing right
// after a complete response is also what a server that drops idle keep-alive connections does.
class CannedHttpServer {
 public:
  ~CannedHttpServer() {
    stopping_.store(true);
    if (listen_fd_) {
      ::shutdown(listen_fd_.get(), SHUT_RDWR);
    }
    if (thread_.joinable()) {
      thread_.join();
    }
  }

  Status start(std::string response) {
    response_ = std::move(response);
    listen_fd_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(address);
    if (::bind(listen_fd_.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
        ::listen(listen_fd_.get(), 128) != 0 ||
        ::getsockname(listen_fd_.get(), reinterpret_cast<sockaddr*>(&address), &length) != 0) {
      return errnoStatus("starting the canned server", errno);
    }
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] { serve(); });
    return Status::ok();
  }

  uint16_t port() const { return port_; }

 private:
  void serve() {
    while (!stopping_.load()) {
      UniqueFd connection(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!connection) {
        continue;
      }
      timeval timeout{5, 0};
      ::setsockopt(connection.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
      std::string request;
      char buffer[4096];
      while (request.find("\r\n\r\n") == std::string::npos) {
        ssize_t received = ::recv(connection.get(), buffer, sizeof(buffer), 0);
        if (received <= 0) {
          break;
        }
        request.append(buffer, static_cast<size_t>(received));
      }
      std::string_view response(response_);
      if (request.starts_with("HEAD ")) {
        response = response.substr(0, response.find("\r\n\r\n") + 4);
      }
      ::send(connection.get(), response.data(), response.size(), MSG_NOSIGNAL);
    }
  }

  UniqueFd listen_fd_;
  uint16_t port_ = 0;
  std::string response_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

// outpost_load idle with pipes on its stdin and stdout, so that a test can wait for "ready",
// look at the server while the connections are held and then release them.
class IdleDriver {
 public:
  ~IdleDriver() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  Status start(const std::vector<std::string>& arguments, const std::string& stderr_path) {
    int stdin_pipe[2];
    int stdout_pipe[2];
    if (::pipe2(stdin_pipe, O_CLOEXEC) != 0 || ::pipe2(stdout_pipe, O_CLOEXEC) != 0) {
      return errnoStatus("pipe2", errno);
    }
    UniqueFd stdin_read(stdin_pipe[0]);
    stdin_write_.reset(stdin_pipe[1]);
    stdout_read_.reset(stdout_pipe[0]);
    UniqueFd stdout_write(stdout_pipe[1]);

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, stdin_read.get(), STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&actions, stdout_write.get(), STDOUT_FILENO);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, stderr_path.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    std::vector<std::string> argv_strings = arguments;
    argv_strings.insert(argv_strings.begin(), kLoadBinary);
    std::vector<char*> argv;
    for (std::string& argument : argv_strings) {
      argv.push_back(argument.data());
    }
    argv.push_back(nullptr);
    int error = ::posix_spawn(&pid_, kLoadBinary, &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (error != 0) {
      pid_ = -1;
      return errnoStatus("starting outpost_load", error);
    }
    return Status::ok();
  }

  // Reads stdout until its first line is complete, for at most `timeout_ms`.
  Expected<std::string> readFirstLine(int timeout_ms) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (output_.find('\n') == std::string::npos) {
      auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (remaining.count() <= 0) {
        return Status(StatusCode::kTimedOut, "no line on stdout; got \"" + output_ + "\"");
      }
      pollfd fd{stdout_read_.get(), POLLIN, 0};
      ::poll(&fd, 1, static_cast<int>(remaining.count()));
      char buffer[4096];
      ssize_t count = ::read(stdout_read_.get(), buffer, sizeof(buffer));
      if (count == 0) {
        return unavailable("stdout ended before a line; got \"" + output_ + "\"");
      }
      if (count > 0) {
        output_.append(buffer, static_cast<size_t>(count));
      }
    }
    return output_.substr(0, output_.find('\n'));
  }

  void closeStdin() { stdin_write_.reset(); }
  void sendSignal(int signal_number) { ::kill(pid_, signal_number); }

  // Reads stdout to its end and waits for the exit. Returns the exit code, or -1 when the
  // driver did not exit normally within `timeout_ms` (it is then killed).
  int waitForExit(int timeout_ms) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    char buffer[4096];
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd fd{stdout_read_.get(), POLLIN, 0};
      ::poll(&fd, 1, 100);
      ssize_t count = ::read(stdout_read_.get(), buffer, sizeof(buffer));
      if (count > 0) {
        output_.append(buffer, static_cast<size_t>(count));
        continue;
      }
      int status = 0;
      if (count == 0 && ::waitpid(pid_, &status, 0) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
    }
    return -1;
  }

  const std::string& output() const { return output_; }

 private:
  pid_t pid_ = -1;
  UniqueFd stdin_write_;
  UniqueFd stdout_read_;
  std::string output_;
};

class LoadDriverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (kLoadBinary == nullptr) {
      GTEST_SKIP() << "outpost_load is built with the bench folder (OUTPOST_BUILD_BENCH)";
    }
  }

  void startOutpost() {
    OUTPOST_ASSERT_OK_AND_ASSIGN(registry_, DistributionRegistry::start());
    OUTPOST_ASSERT_OK_AND_ASSIGN(outpost_, OutpostServer::start(optionsForUpstream(
                                               registry_->url(), registry_->hostPort())));
    outpost_port_ = outpost_->hostPort().substr(outpost_->hostPort().rfind(':') + 1);
  }

  void TearDown() override {
    if (HasFailure() && outpost_) {
      std::cerr << "--- outpost log ---\n" << outpost_->logTail() << "\n";
    }
  }

  std::unique_ptr<DistributionRegistry> registry_;
  std::unique_ptr<OutpostServer> outpost_;
  std::string outpost_port_;
};

TEST_F(LoadDriverTest, FanOutGetsExactBytesThroughOutpost) {
  startOutpost();
  std::string blob = randomBytes(3u << 20, 11);
  OUTPOST_ASSERT_OK_AND_ASSIGN(std::string digest, pushBlob(*registry_, "team/app", blob));
  OUTPOST_ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::create("load-driver"));
  OUTPOST_ASSERT_OK(writeFile(dir.file("blob"), blob));

  OUTPOST_ASSERT_OK_AND_ASSIGN(
      CommandResult result,
      runDriver({"fan-out", "--port", outpost_port_, "--path",
                 "/v2/upstream/team/app/blobs/" + digest, "--clients", "5", "--expect-file",
                 dir.file("blob"), "--header", "X-Request-Id: load-driver-test"}));

  ASSERT_EQ(result.exit_code, 0) << result.describe();
  json report = lastJsonLine(result.stdout_text);
  ASSERT_TRUE(report.is_object()) << result.stdout_text;
  EXPECT_EQ(report["ok"], true);
  ASSERT_EQ(report["results"].size(), 5u) << report.dump();
  for (const json& client : report["results"]) {
    SCOPED_TRACE(client.dump());
    EXPECT_EQ(client["status"], 200);
    EXPECT_EQ(client["body_bytes"], blob.size());
    EXPECT_TRUE(client["error"].is_null());
    EXPECT_LE(client["first_byte_us"].get<uint64_t>(), client["last_byte_us"].get<uint64_t>());
  }
  EXPECT_EQ(report["total_body_bytes"], 5 * blob.size());
}

TEST_F(LoadDriverTest, FanOutRejectsWrongExpectFile) {
  startOutpost();
  std::string blob = randomBytes(1u << 20, 12);
  OUTPOST_ASSERT_OK_AND_ASSIGN(std::string digest, pushBlob(*registry_, "team/app", blob));
  std::string wrong = blob;
  wrong[wrong.size() / 2] ^= 0x01;
  OUTPOST_ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::create("load-driver"));
  OUTPOST_ASSERT_OK(writeFile(dir.file("wrong"), wrong));

  OUTPOST_ASSERT_OK_AND_ASSIGN(CommandResult result,
                               runDriver({"fan-out", "--port", outpost_port_, "--path",
                                          "/v2/upstream/team/app/blobs/" + digest, "--clients", "3",
                                          "--expect-file", dir.file("wrong")}));

  EXPECT_EQ(result.exit_code, 1) << result.describe();
  EXPECT_NE(result.stderr_text.find("differs from " + dir.file("wrong") + " at byte " +
                                    std::to_string(wrong.size() / 2)),
            std::string::npos)
      << result.stderr_text;
  json report = lastJsonLine(result.stdout_text);
  EXPECT_EQ(report["ok"], false) << result.stdout_text;
}

TEST_F(LoadDriverTest, FanOutReadsChunkedBody) {
  std::string body = randomBytes(300'000, 13);
  std::string response = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  // Chunks of uneven sizes, one with an extension, so that chunk edges fall everywhere.
  size_t offset = 0;
  for (size_t size = 1; offset < body.size(); size = size * 7 + 3) {
    size_t count = std::min(size % 70'000 + 1, body.size() - offset);
    char size_line[32];
    std::snprintf(size_line, sizeof(size_line), "%zx%s\r\n", count, offset == 0 ? ";x=y" : "");
    response += size_line + body.substr(offset, count) + "\r\n";
    offset += count;
  }
  response += "0\r\n\r\n";
  CannedHttpServer server;
  OUTPOST_ASSERT_OK(server.start(response));
  OUTPOST_ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::create("load-driver"));
  OUTPOST_ASSERT_OK(writeFile(dir.file("body"), body));

  OUTPOST_ASSERT_OK_AND_ASSIGN(
      CommandResult result,
      runDriver({"fan-out", "--port", std::to_string(server.port()), "--path", "/chunked",
                 "--clients", "3", "--expect-file", dir.file("body")}));

  EXPECT_EQ(result.exit_code, 0) << result.describe();
  json report = lastJsonLine(result.stdout_text);
  EXPECT_EQ(report["total_body_bytes"], 3 * body.size()) << result.stdout_text;
}

TEST_F(LoadDriverTest, FanOutNamesClientOnShortBody) {
  CannedHttpServer server;
  OUTPOST_ASSERT_OK(
      server.start("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + std::string(400, 'a')));

  OUTPOST_ASSERT_OK_AND_ASSIGN(
      CommandResult result, runDriver({"fan-out", "--port", std::to_string(server.port()), "--path",
                                       "/short", "--clients", "2"}));

  EXPECT_EQ(result.exit_code, 1) << result.describe();
  for (const char* client : {"client 0: ", "client 1: "}) {
    EXPECT_NE(result.stderr_text.find(std::string(client) +
                                      "the server closed the connection after 400 body bytes "
                                      "of 1000"),
              std::string::npos)
        << result.stderr_text;
  }
}

TEST_F(LoadDriverTest, PullVerifiesImageAndIndex) {
  startOutpost();
  OUTPOST_ASSERT_OK_AND_ASSIGN(auto skopeo, Skopeo::create());
  OUTPOST_ASSERT_OK_AND_ASSIGN(auto builder, ImageBuilder::create(*skopeo));
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage image,
                               builder->pushImage(registry_->endpoint(), "team/app:v1"));
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage index,
                               builder->pushIndex(registry_->endpoint(), "team/multi:v1"));

  for (const PushedImage* pushed : {&image, &index}) {
    SCOPED_TRACE(pushed->repository);
    const PushedImage* platform_image =
        pushed->isIndex() ? pushed->findPlatform("linux/amd64") : pushed;
    ASSERT_NE(platform_image, nullptr);
    uint64_t image_bytes = platform_image->raw_manifest.size() + platform_image->config->size;
    for (const BlobDescriptor& layer : platform_image->layers) {
      image_bytes += layer.size;
    }
    if (pushed->isIndex()) {
      image_bytes += pushed->raw_manifest.size();
    }

    OUTPOST_ASSERT_OK_AND_ASSIGN(CommandResult result,
                                 runDriver({"pull", "--port", outpost_port_, "--repository",
                                            "upstream/" + pushed->repository, "--reference",
                                            pushed->tag, "--clients", "3", "--parallel", "2"}));

    ASSERT_EQ(result.exit_code, 0) << result.describe();
    json report = lastJsonLine(result.stdout_text);
    EXPECT_EQ(report["manifest_digest"], pushed->manifest_digest) << report.dump();
    EXPECT_EQ(report["image_manifest_digest"], platform_image->manifest_digest);
    EXPECT_EQ(report["total_bytes"], 3 * image_bytes);
    EXPECT_EQ(report["requests"]["manifest_head"], 3);
    EXPECT_EQ(report["requests"]["manifest_get"], pushed->isIndex() ? 6 : 3);
    EXPECT_EQ(report["requests"]["blob_get"], 3 * (1 + platform_image->layers.size()));
    for (const json& client : report["results"]) {
      EXPECT_TRUE(client["error"].is_null()) << client.dump();
    }
  }
}

TEST_F(LoadDriverTest, PullFailsOnUnknownTag) {
  startOutpost();

  OUTPOST_ASSERT_OK_AND_ASSIGN(CommandResult result,
                               runDriver({"pull", "--port", outpost_port_, "--repository",
                                          "upstream/team/absent", "--reference", "v1"}));

  EXPECT_EQ(result.exit_code, 1) << result.describe();
  EXPECT_NE(result.stderr_text.find("client 0: HEAD /v2/upstream/team/absent/manifests/v1: "
                                    "status 404"),
            std::string::npos)
      << result.stderr_text;
}

TEST_F(LoadDriverTest, PullRejectsManifestWithWrongDigest) {
  std::string manifest = R"({"schemaVersion":2,"config":{"digest":")" + sha256Of("config").str() +
                         R"(","size":6},"layers":[]})";
  std::string claimed_digest = sha256Of("another manifest").str();
  CannedHttpServer server;
  OUTPOST_ASSERT_OK(
      server.start("HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n"
                   "Docker-Content-Digest: " +
                   claimed_digest + "\r\nContent-Length: " + std::to_string(manifest.size()) +
                   "\r\n\r\n" + manifest));

  OUTPOST_ASSERT_OK_AND_ASSIGN(CommandResult result,
                               runDriver({"pull", "--port", std::to_string(server.port()),
                                          "--repository", "team/app", "--reference", "v1"}));

  EXPECT_EQ(result.exit_code, 1) << result.describe();
  EXPECT_NE(result.stderr_text.find("client 0: GET /v2/team/app/manifests/" + claimed_digest +
                                    ": the body has digest " + sha256Of(manifest).str() +
                                    ", expected " + claimed_digest),
            std::string::npos)
      << result.stderr_text;
}

TEST_F(LoadDriverTest, IdleHoldsFiftyConnections) {
  startOutpost();
  OUTPOST_ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::create("load-driver"));
  IdleDriver driver;
  OUTPOST_ASSERT_OK(
      driver.start({"idle", "--port", outpost_port_, "--connections", "50"}, dir.file("stderr")));

  OUTPOST_ASSERT_OK_AND_ASSIGN(std::string line, driver.readFirstLine(60'000));
  EXPECT_EQ(line, "ready 50");
  OUTPOST_ASSERT_OK_AND_ASSIGN(uint64_t open, outpost_->metric("outpost_connections_open"));
  // The metric request itself uses one more connection.
  EXPECT_GE(open, 50u);

  driver.closeStdin();
  int exit_code = driver.waitForExit(30'000);
  EXPECT_EQ(exit_code, 0) << readFile(dir.file("stderr")).value();
  json report = lastJsonLine(driver.output());
  EXPECT_EQ(report["held"], 50) << driver.output();
  EXPECT_EQ(report["dropped"], 0);
  EXPECT_EQ(report["released_by"], "stdin");
}

TEST_F(LoadDriverTest, IdleReleasesOnSigterm) {
  startOutpost();
  OUTPOST_ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::create("load-driver"));
  IdleDriver driver;
  OUTPOST_ASSERT_OK(
      driver.start({"idle", "--port", outpost_port_, "--connections", "5"}, dir.file("stderr")));
  OUTPOST_ASSERT_OK_AND_ASSIGN(std::string line, driver.readFirstLine(60'000));
  ASSERT_EQ(line, "ready 5");

  driver.sendSignal(SIGTERM);

  EXPECT_EQ(driver.waitForExit(30'000), 0) << readFile(dir.file("stderr")).value();
  json report = lastJsonLine(driver.output());
  EXPECT_EQ(report["held"], 5) << driver.output();
  EXPECT_EQ(report["released_by"], "SIGTERM");
}

TEST_F(LoadDriverTest, IdleCountsConnectionsClosedByServer) {
  CannedHttpServer server;
  OUTPOST_ASSERT_OK(server.start("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"));
  OUTPOST_ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::create("load-driver"));
  IdleDriver driver;
  OUTPOST_ASSERT_OK(driver.start(
      {"idle", "--port", std::to_string(server.port()), "--connections", "3"}, dir.file("stderr")));
  OUTPOST_ASSERT_OK_AND_ASSIGN(std::string line, driver.readFirstLine(30'000));
  ASSERT_EQ(line, "ready 3");

  // The server closed each connection right after its response; the driver notices within
  // milliseconds, and half a second leaves a wide margin.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  driver.closeStdin();

  EXPECT_EQ(driver.waitForExit(30'000), 1);
  json report = lastJsonLine(driver.output());
  EXPECT_EQ(report["dropped"], 3) << driver.output();
  EXPECT_EQ(report["held"], 0);
  std::string stderr_text = readFile(dir.file("stderr")).value();
  EXPECT_NE(stderr_text.find("connection 2 was dropped while held: the server closed the "
                             "connection"),
            std::string::npos)
      << stderr_text;
}

TEST_F(LoadDriverTest, ClosedPortFailsFast) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(uint16_t port, freePort());
  std::string port_text = std::to_string(port);
  struct Case {
    const char* name;
    std::vector<std::string> arguments;
  };
  std::vector<Case> cases = {
      {"fan-out", {"fan-out", "--port", port_text, "--path", "/v2/", "--clients", "4"}},
      {"pull", {"pull", "--port", port_text, "--repository", "team/app", "--reference", "v1"}},
      {"idle", {"idle", "--port", port_text, "--connections", "4"}},
  };
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    auto started = std::chrono::steady_clock::now();

    OUTPOST_ASSERT_OK_AND_ASSIGN(CommandResult result, runDriver(test_case.arguments, 20'000));

    auto elapsed = std::chrono::steady_clock::now() - started;
    EXPECT_EQ(result.exit_code, 1) << result.describe();
    EXPECT_LT(elapsed, std::chrono::seconds(5));
    EXPECT_NE(
        result.stderr_text.find("connecting to 127.0.0.1:" + port_text + " failed: ECONNREFUSED"),
        std::string::npos)
        << result.stderr_text;
  }
}

TEST_F(LoadDriverTest, RejectsInvalidOptions) {
  struct Case {
    const char* name;
    std::vector<std::string> arguments;
  };
  std::vector<Case> cases = {
      {"no mode", {}},
      {"missing port", {"fan-out", "--path", "/v2/", "--clients", "1"}},
      {"port out of range", {"fan-out", "--port", "70000", "--path", "/v2/", "--clients", "1"}},
      {"relative path", {"fan-out", "--port", "9", "--path", "v2/", "--clients", "1"}},
      {"path with a space", {"fan-out", "--port", "9", "--path", "/v2/ x", "--clients", "1"}},
      {"zero clients", {"fan-out", "--port", "9", "--path", "/v2/", "--clients", "0"}},
      {"header without colon",
       {"fan-out", "--port", "9", "--path", "/v2/", "--clients", "1", "--header", "Accept"}},
      {"upper-case repository",
       {"pull", "--port", "9", "--repository", "Team/App", "--reference", "v1"}},
      {"invalid tag", {"pull", "--port", "9", "--repository", "team/app", "--reference", "-v1"}},
      {"zero parallel",
       {"pull", "--port", "9", "--repository", "team/app", "--reference", "v1", "--parallel", "0"}},
      {"negative timeout", {"idle", "--port", "9", "--connections", "1", "--timeout-s", "-1"}},
  };
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.name);

    OUTPOST_ASSERT_OK_AND_ASSIGN(CommandResult result, runDriver(test_case.arguments, 20'000));

    EXPECT_EQ(result.exit_code, 2) << result.describe();
    EXPECT_TRUE(result.stdout_text.empty()) << result.stdout_text;
  }
}

}  // namespace
}  // namespace outpost::integration
