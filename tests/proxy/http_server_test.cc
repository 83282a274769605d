#include "proxy/http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <future>
#include <string>
#include <thread>

#include "base/unique_fd.h"

namespace outpost::proxy {
namespace {

// A blocking client socket to the server under test, with a receive timeout.
class Client {
 public:
  explicit Client(uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval timeout{5, 0};
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    connected_ = ::connect(fd_.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  }

  bool connected() const { return connected_; }

  void send(std::string_view bytes) {
    ASSERT_EQ(::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
  }

  // Reads until `count` complete responses (by Content-Length) have arrived, or EOF/timeout.
  std::string readResponses(int count) {
    std::string data;
    int complete = 0;
    size_t scan = 0;
    char buffer[65536];
    while (complete < count) {
      size_t head_end = data.find("\r\n\r\n", scan);
      if (head_end != std::string::npos) {
        std::string head = data.substr(scan, head_end - scan);
        size_t length_at = head.find("Content-Length: ");
        size_t length = length_at == std::string::npos
                            ? 0
                            : std::stoul(head.substr(length_at + 16));
        bool is_head_request = head.find("X-Test-Head: 1") != std::string::npos;
        size_t end = head_end + 4 + (is_head_request ? 0 : length);
        if (data.size() >= end) {
          ++complete;
          scan = end;
          continue;
        }
      }
      ssize_t received = ::recv(fd_.get(), buffer, sizeof(buffer), 0);
      if (received <= 0) {
        break;
      }
      data.append(buffer, static_cast<size_t>(received));
    }
    return data;
  }

  // Returns true when bytes arrive within `timeout_ms`.
  bool hasDataWithin(int timeout_ms) {
    pollfd poll_fd{fd_.get(), POLLIN, 0};
    return ::poll(&poll_fd, 1, timeout_ms) > 0;
  }

  // Returns true when the server closed the connection (recv returns 0) within the timeout.
  bool waitForClose() {
    char buffer[4096];
    while (true) {
      ssize_t received = ::recv(fd_.get(), buffer, sizeof(buffer), 0);
      if (received == 0) {
        return true;
      }
      if (received < 0) {
        return errno == ECONNRESET;
      }
    }
  }

 private:
  UniqueFd fd_;
  bool connected_ = false;
};

class HttpServerTest : public ::testing::Test {
 protected:
  void startServer(RequestHandler handler, ServerOptions options = {}) {
    options.port = 0;
    loop_ = std::make_unique<EventLoop>(0);
    loop_->start(nullptr);
    server_ = std::make_unique<HttpServer>(std::vector<EventLoop*>{loop_.get()}, options,
                                           std::move(handler));
    ASSERT_TRUE(server_->bind().isOk());
    server_->start();
  }

  void TearDown() override {
    if (!server_) {
      return;
    }
    std::promise<void> done;
    server_->shutdown(1000, [&] { done.set_value(); });
    ASSERT_EQ(done.get_future().wait_for(std::chrono::seconds(5)), std::future_status::ready);
    loop_->requestStop();
    loop_->join();
    server_.reset();
    loop_.reset();
  }

  uint16_t port() const { return server_->port(); }

  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<HttpServer> server_;
};

// Answers every request with its method and path as the body.
void echoHandler(const std::shared_ptr<Exchange>& exchange) {
  ResponseHead head(200);
  head.add("Content-Type", "text/plain");
  if (exchange->isHead()) {
    head.add("X-Test-Head", "1");
  }
  std::string body(exchange->request().methodName());
  body += " ";
  body += exchange->request().target();
  exchange->respond(std::move(head), body);
}

TEST_F(HttpServerTest, AnswersSimpleGet) {
  startServer(echoHandler);
  Client client(port());
  ASSERT_TRUE(client.connected());
  client.send("GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string response = client.readResponses(1);
  EXPECT_NE(response.find("HTTP/1.1 200 OK\r\n"), std::string::npos) << response;
  EXPECT_NE(response.find("Content-Length: 8\r\n"), std::string::npos) << response;
  EXPECT_TRUE(response.ends_with("GET /v2/")) << response;
}

TEST_F(HttpServerTest, KeepsConnectionAliveAcrossRequests) {
  startServer(echoHandler);
  Client client(port());
  client.send("GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_TRUE(client.readResponses(1).ends_with("GET /a"));
  client.send("GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_TRUE(client.readResponses(1).ends_with("GET /b"));
  EXPECT_EQ(server_->counters().connections_accepted.load(), 1u);
}

TEST_F(HttpServerTest, AnswersPipelinedRequestsInOrder) {
  // The first response is delayed on the loop, so the second must wait behind it.
  startServer([](const std::shared_ptr<Exchange>& exchange) {
    if (exchange->request().path() == "/slow") {
      auto* timer = new uv_timer_t;
      uv_timer_init(exchange->loop().uv(), timer);
      timer->data = new std::shared_ptr<Exchange>(exchange);
      uv_timer_start(
          timer,
          [](uv_timer_t* handle) {
            auto* held = static_cast<std::shared_ptr<Exchange>*>(handle->data);
            echoHandler(*held);
            delete held;
            uv_close(reinterpret_cast<uv_handle_t*>(handle),
                     [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
          },
          50, 0);
      return;
    }
    echoHandler(exchange);
  });
  Client client(port());
  client.send(
      "GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /fast HTTP/1.1\r\nHost: x\r\n\r\n"
      "HEAD /head HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string responses = client.readResponses(3);
  size_t slow = responses.find("GET /slow");
  size_t fast = responses.find("GET /fast");
  ASSERT_NE(slow, std::string::npos) << responses;
  ASSERT_NE(fast, std::string::npos) << responses;
  EXPECT_LT(slow, fast);
  EXPECT_EQ(responses.find("HEAD /head"), std::string::npos) << "HEAD must not carry a body";
  EXPECT_TRUE(responses.ends_with("\r\n\r\n")) << responses;
}

TEST_F(HttpServerTest, RejectsOversizedHeadersWith431) {
  ServerOptions options;
  options.max_header_bytes = 1024;
  startServer(echoHandler, options);
  Client client(port());
  client.send("GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(4096, 'a') + "\r\n\r\n");
  std::string response = client.readResponses(1);
  EXPECT_TRUE(response.starts_with("HTTP/1.1 431 ")) << response;
  EXPECT_TRUE(client.waitForClose());
}

TEST_F(HttpServerTest, RejectsTlsHandshakeOnPlainPort) {
  startServer(echoHandler);
  {
    Client client(port());
    // The start of a TLS ClientHello record, as containers/image sends before falling back.
    client.send(std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11));
    std::string response = client.readResponses(1);
    EXPECT_TRUE(response.starts_with("HTTP/1.1 400 ")) << response;
    EXPECT_TRUE(client.waitForClose());
  }
  Client next(port());
  next.send("GET /after HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_TRUE(next.readResponses(1).ends_with("GET /after"));
}

TEST_F(HttpServerTest, KeepsWellFormedRequestIdAndReplacesOthers) {
  startServer(echoHandler);
  Client client(port());
  client.send("GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: abc-123\r\n\r\n");
  EXPECT_NE(client.readResponses(1).find("X-Request-Id: abc-123\r\n"), std::string::npos);
  client.send("GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: bad id!\r\n\r\n");
  std::string response = client.readResponses(1);
  EXPECT_EQ(response.find("bad id!"), std::string::npos) << response;
  EXPECT_NE(response.find("X-Request-Id: "), std::string::npos) << response;
}

TEST_F(HttpServerTest, ClosesAfterResponseWhenClientAsksConnectionClose) {
  startServer(echoHandler);
  Client client(port());
  client.send("GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  std::string response = client.readResponses(1);
  EXPECT_NE(response.find("Connection: close\r\n"), std::string::npos) << response;
  EXPECT_TRUE(client.waitForClose());
}

TEST_F(HttpServerTest, ConfirmsKeepAliveToHttp10Clients) {
  startServer(echoHandler);
  Client client(port());
  client.send("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  std::string first = client.readResponses(1);
  EXPECT_NE(first.find("Connection: keep-alive\r\n"), std::string::npos) << first;
  client.send("GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  EXPECT_TRUE(client.readResponses(1).ends_with("GET /b"));

  Client plain(port());
  plain.send("GET /c HTTP/1.0\r\n\r\n");
  EXPECT_NE(plain.readResponses(1).find("Connection: close\r\n"), std::string::npos);
  EXPECT_TRUE(plain.waitForClose());
}

TEST_F(HttpServerTest, SendsFileRangesWithSendfile) {
  char path[] = "/tmp/outpost-http-test-XXXXXX";
  int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ::unlink(path);
  std::string content(300000, 'x');
  for (size_t i = 0; i < content.size(); ++i) {
    content[i] = static_cast<char>('a' + i % 26);
  }
  ASSERT_EQ(::write(fd, content.data(), content.size()), static_cast<ssize_t>(content.size()));
  auto owner = std::make_shared<UniqueFd>(fd);

  startServer([owner](const std::shared_ptr<Exchange>& exchange) {
    // Two pieces back to back: the second is queued from the first one's completion.
    exchange->startResponse(ResponseHead(200), 250000);
    exchange->sendFile(owner, owner->get(), 1000, 100000, [exchange, owner] {
      exchange->sendFile(owner, owner->get(), 101000, 150000, [exchange] { exchange->finish(); });
    });
  });
  Client client(port());
  client.send("GET /blob HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string response = client.readResponses(1);
  size_t body_at = response.find("\r\n\r\n");
  ASSERT_NE(body_at, std::string::npos);
  std::string body = response.substr(body_at + 4);
  ASSERT_EQ(body.size(), 250000u);
  EXPECT_EQ(body, content.substr(1000, 250000));
}

TEST_F(HttpServerTest, RunsAbortCallbackWhenClientLeaves) {
  std::promise<void> aborted;
  std::shared_ptr<Exchange> held;
  startServer([&](const std::shared_ptr<Exchange>& exchange) {
    held = exchange;  // never answered
    exchange->setOnAbort([&] { aborted.set_value(); });
  });
  {
    Client client(port());
    client.send("GET /never HTTP/1.1\r\nHost: x\r\n\r\n");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(aborted.get_future().wait_for(std::chrono::seconds(5)), std::future_status::ready);
  std::promise<bool> was_open;
  loop_->post([&] {
    bool open = held->isOpen();
    held.reset();
    was_open.set_value(open);
  });
  EXPECT_FALSE(was_open.get_future().get());
}

TEST_F(HttpServerTest, ClosesIdleConnectionAfterTimeout) {
  ServerOptions options;
  options.idle_timeout_ms = 100;
  startServer(echoHandler, options);
  Client client(port());
  client.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  client.readResponses(1);
  auto started = std::chrono::steady_clock::now();
  EXPECT_TRUE(client.waitForClose());
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(4));
}

TEST_F(HttpServerTest, AnswersSlowHeadersWith408) {
  ServerOptions options;
  options.header_timeout_ms = 100;
  startServer(echoHandler, options);
  Client client(port());
  client.send("GET / HTTP/1.1\r\nHost: x\r\n");
  std::string response = client.readResponses(1);
  EXPECT_TRUE(response.starts_with("HTTP/1.1 408 ")) << response;
}

TEST_F(HttpServerTest, CapsOpenConnections) {
  ServerOptions options;
  options.max_connections = 1;
  startServer(echoHandler, options);
  auto first = std::make_unique<Client>(port());
  first->send("GET /first HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_TRUE(first->readResponses(1).ends_with("GET /first"));

  // The second connection waits in the kernel's backlog while the first stays open.
  Client second(port());
  second.send("GET /second HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_FALSE(second.hasDataWithin(300));
  first.reset();
  EXPECT_TRUE(second.readResponses(1).ends_with("GET /second"));
}

TEST_F(HttpServerTest, ClosesConnectionWhenClientStopsReading) {
  char path[] = "/tmp/outpost-http-test-XXXXXX";
  int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ::unlink(path);
  constexpr uint64_t kFileBytes = 64u << 20;
  ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(kFileBytes)), 0);
  auto owner = std::make_shared<UniqueFd>(fd);

  ServerOptions options;
  options.send_timeout_ms = 200;
  std::promise<void> aborted;
  startServer(
      [&, owner](const std::shared_ptr<Exchange>& exchange) {
        exchange->setOnAbort([&] { aborted.set_value(); });
        exchange->startResponse(ResponseHead(200), kFileBytes);
        exchange->sendFile(owner, owner->get(), 0, kFileBytes, [exchange] { exchange->finish(); });
      },
      options);
  Client client(port());
  client.send("GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
  // The client never reads: the socket buffers fill, and the send timeout closes it.
  EXPECT_EQ(aborted.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
}

TEST_F(HttpServerTest, RefusesPortAnotherServerListensOn) {
  startServer(echoHandler);
  ServerOptions options;
  options.port = port();
  EventLoop other_loop(1);
  HttpServer other({&other_loop}, options, echoHandler);
  Status status = other.bind();
  EXPECT_EQ(status.code(), StatusCode::kAlreadyExists) << status.toString();
  EXPECT_NE(status.message().find("already in use"), std::string_view::npos);
}

TEST_F(HttpServerTest, ListensOnIpv6Loopback) {
  UniqueFd probe(::socket(AF_INET6, SOCK_STREAM, 0));
  sockaddr_in6 loopback{};
  loopback.sin6_family = AF_INET6;
  loopback.sin6_addr = in6addr_loopback;
  if (!probe || ::bind(probe.get(), reinterpret_cast<sockaddr*>(&loopback), sizeof(loopback)) != 0) {
    GTEST_SKIP() << "no IPv6 loopback on this machine";
  }
  ServerOptions options;
  options.host = "::1";
  options.port = 0;
  EventLoop loop(0);
  HttpServer server({&loop}, options, echoHandler);
  Status status = server.bind();
  EXPECT_TRUE(status.isOk()) << status.toString();
  EXPECT_NE(server.port(), 0);
}

TEST_F(HttpServerTest, RejectsListenHostThatIsNotAnAddress) {
  ServerOptions options;
  options.host = "localhost";
  options.port = 0;
  EventLoop loop(0);
  HttpServer server({&loop}, options, echoHandler);
  EXPECT_EQ(server.bind().code(), StatusCode::kInvalidArgument);
}

TEST_F(HttpServerTest, FinishesRequestInFlightDuringShutdown) {
  std::shared_ptr<Exchange> held;
  startServer([&](const std::shared_ptr<Exchange>& exchange) { held = exchange; });
  Client client(port());
  client.send("GET /late HTTP/1.1\r\nHost: x\r\n\r\n");
  std::this_thread::sleep_for(std::chrono::milliseconds(50));

  std::promise<void> done;
  server_->shutdown(5000, [&] { done.set_value(); });
  loop_->post([&] {
    ASSERT_TRUE(held);
    echoHandler(held);
    held.reset();
  });
  EXPECT_TRUE(client.readResponses(1).ends_with("GET /late"));
  EXPECT_EQ(done.get_future().wait_for(std::chrono::seconds(5)), std::future_status::ready);
  loop_->requestStop();
  loop_->join();
  server_.reset();
  loop_.reset();
}

}  // namespace
}  // namespace outpost::proxy
