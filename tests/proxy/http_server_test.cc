#include "proxy/http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <future>
#include <mutex>
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

  // Reads one interim response (such as 100 Continue) up to its blank line, byte by byte so
  // that nothing after it is consumed.
  std::string readInterimResponse() {
    std::string data;
    char byte;
    while (!data.ends_with("\r\n\r\n") && ::recv(fd_.get(), &byte, 1, 0) == 1) {
      data.push_back(byte);
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

TEST_F(HttpServerTest, SendsSharedBufferWithoutCopy) {
  // 12 MiB: larger than the socket buffers and the bytes one writable event may send, so the
  // buffer leaves in several pieces after the head.
  std::string content(12u << 20, 'x');
  for (size_t i = 0; i < content.size(); ++i) {
    content[i] = static_cast<char>('a' + i % 26);
  }
  std::mutex mutex;
  std::weak_ptr<const std::string> last_buffer;
  std::atomic<int> sent_callbacks{0};

  startServer([&](const std::shared_ptr<Exchange>& exchange) {
    // Only the server has a reference to this buffer once the handler returns.
    auto buffer = std::make_shared<const std::string>(content);
    {
      std::lock_guard lock(mutex);
      last_buffer = buffer;
    }
    uint64_t first = exchange->request().path() == "/part" ? 1000 : 0;
    uint64_t length = first == 0 ? buffer->size() : 5000;
    exchange->startResponse(ResponseHead(200), length);
    exchange->sendBuffer(buffer, std::string_view(*buffer).substr(first, length),
                         [exchange, &sent_callbacks] {
                           sent_callbacks.fetch_add(1);
                           exchange->finish();
                         });
  });
  Client client(port());
  client.send("GET /whole HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string response = client.readResponses(1);
  size_t body_at = response.find("\r\n\r\n");
  ASSERT_NE(body_at, std::string::npos);
  EXPECT_EQ(response.size() - body_at - 4, content.size());
  EXPECT_TRUE(response.substr(body_at + 4) == content) << "whole buffer differs";

  client.send("GET /part HTTP/1.1\r\nHost: x\r\n\r\n");
  response = client.readResponses(1);
  body_at = response.find("\r\n\r\n");
  ASSERT_NE(body_at, std::string::npos);
  EXPECT_EQ(response.substr(body_at + 4), content.substr(1000, 5000));

  // The server runs on_sent and drops its reference once the bytes are sent, which may be just
  // after the client has read them.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  bool is_released = false;
  while ((!is_released || sent_callbacks.load() < 2) &&
         std::chrono::steady_clock::now() < deadline) {
    {
      std::lock_guard lock(mutex);
      is_released = last_buffer.expired();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_TRUE(is_released);
  EXPECT_EQ(sent_callbacks.load(), 2);
}

TEST_F(HttpServerTest, SendsNoSharedBufferForHead) {
  auto content = std::make_shared<const std::string>(4096, '#');
  startServer([content](const std::shared_ptr<Exchange>& exchange) {
    ResponseHead head(200);
    if (exchange->isHead()) {
      head.add("X-Test-Head", "1");
    }
    exchange->startResponse(std::move(head), content->size());
    exchange->sendBuffer(content, *content, nullptr);
    exchange->finish();
  });
  Client client(port());
  client.send("HEAD /blob HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string responses = client.readResponses(2);
  EXPECT_NE(responses.find("Content-Length: 4096\r\n"), std::string::npos) << responses;
  // Exactly one body of 4096 bytes: the GET's, none for the HEAD.
  EXPECT_EQ(std::count(responses.begin(), responses.end(), '#'), 4096) << responses.size();
  EXPECT_TRUE(responses.ends_with(*content));
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

// ----- Streamed request bodies ------------------------------------------------------------

// Streams the bodies of requests under /upload; every other body is buffered.
ServerOptions streamingOptions() {
  ServerOptions options;
  options.streams_body = [](const HttpRequest& request) {
    return request.path().starts_with("/upload");
  };
  return options;
}

// Reads the body with readBody() and responds with the method, the target and the body.
void echoBodyHandler(const std::shared_ptr<Exchange>& exchange) {
  auto body = std::make_shared<std::string>();
  exchange->readBody(
      [body](std::string_view piece) {
        body->append(piece);
        return true;
      },
      [exchange, body] {
        std::string text(exchange->request().methodName());
        text += " ";
        text += exchange->request().target();
        text += " ";
        text += *body;
        exchange->respond(ResponseHead(200), text);
      });
}

// Returns the byte at `offset` of the large test body.
char patternByte(uint64_t offset) { return static_cast<char>(offset % 251); }

TEST_F(HttpServerTest, StreamsBodyArrivingInSeveralWrites) {
  std::promise<bool> dispatched_with_empty_body;
  std::atomic<int> pieces{0};
  std::atomic<bool> was_complete_before_end{true};
  startServer(
      [&](const std::shared_ptr<Exchange>& exchange) {
        was_complete_before_end = exchange->isBodyComplete();
        dispatched_with_empty_body.set_value(exchange->request().body().empty());
        auto body = std::make_shared<std::string>();
        exchange->readBody(
            [&, body](std::string_view piece) {
              ++pieces;
              body->append(piece);
              return true;
            },
            [exchange, body] {
              std::string text = *body;
              text += exchange->isBodyComplete() ? " complete" : " incomplete";
              exchange->respond(ResponseHead(201), text);
            });
      },
      streamingOptions());
  Client client(port());
  client.send("PATCH /upload/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 26\r\n\r\n");

  // The handler runs once the head is in, before any body byte was sent.
  auto dispatched = dispatched_with_empty_body.get_future();
  ASSERT_EQ(dispatched.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_TRUE(dispatched.get());
  EXPECT_FALSE(was_complete_before_end.load());

  for (std::string_view part : {"abcdefgh", "ijklmnopq", "rstuvwxyz"}) {
    client.send(part);
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
  }
  std::string response = client.readResponses(1);
  EXPECT_TRUE(response.starts_with("HTTP/1.1 201 ")) << response;
  EXPECT_TRUE(response.ends_with("\r\n\r\nabcdefghijklmnopqrstuvwxyz complete")) << response;
  EXPECT_EQ(response.find("Connection: close"), std::string::npos) << response;
  EXPECT_GE(pieces.load(), 3) << "each write should arrive as it is sent";
}

TEST_F(HttpServerTest, StreamsChunkedBody) {
  startServer(echoBodyHandler, streamingOptions());
  Client client(port());
  client.send("PUT /upload/2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel");
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  client.send("lo\r\n6\r\n world\r\n");
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  client.send("0\r\n\r\n");
  std::string response = client.readResponses(1);
  EXPECT_TRUE(response.starts_with("HTTP/1.1 200 ")) << response;
  EXPECT_TRUE(response.ends_with("\r\n\r\nPUT /upload/2 hello world")) << response;
}

TEST_F(HttpServerTest, StreamsLargeBodyInPiecesOfOneRead) {
  constexpr uint64_t kBodyBytes = 50u << 20;
  ServerOptions options = streamingOptions();
  options.max_body_bytes = 1024;  // applies to buffered bodies only
  startServer(
      [](const std::shared_ptr<Exchange>& exchange) {
        struct Tally {
          uint64_t bytes = 0;
          uint64_t mismatches = 0;
          size_t max_piece = 0;
        };
        auto tally = std::make_shared<Tally>();
        exchange->readBody(
            [tally](std::string_view piece) {
              for (char byte : piece) {
                tally->mismatches += byte != patternByte(tally->bytes++);
              }
              tally->max_piece = std::max(tally->max_piece, piece.size());
              return true;
            },
            [exchange, tally] {
              exchange->respond(ResponseHead(201),
                                "bytes=" + std::to_string(tally->bytes) +
                                    " mismatches=" + std::to_string(tally->mismatches) +
                                    " max_piece=" + std::to_string(tally->max_piece));
            });
      },
      options);
  Client client(port());
  client.send("PUT /upload/3 HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(kBodyBytes) +
              "\r\n\r\n");
  std::string part(1u << 20, '\0');
  for (uint64_t offset = 0; offset < kBodyBytes; offset += part.size()) {
    for (size_t i = 0; i < part.size(); ++i) {
      part[i] = patternByte(offset + i);
    }
    client.send(part);
  }
  std::string response = client.readResponses(1);
  EXPECT_TRUE(response.starts_with("HTTP/1.1 201 ")) << response;
  EXPECT_NE(response.find("bytes=52428800 mismatches=0 "), std::string::npos) << response;

  // Each piece is at most one recv(2) buffer: the body never gathers in the server.
  size_t max_piece_at = response.find("max_piece=");
  ASSERT_NE(max_piece_at, std::string::npos) << response;
  EXPECT_LE(std::stoul(response.substr(max_piece_at + 10)), 64u * 1024) << response;
}

TEST_F(HttpServerTest, ClosesAfterHandlerDeclinesBody) {
  std::atomic<int> pieces{0};
  std::atomic<bool> ended{false};
  startServer(
      [&](const std::shared_ptr<Exchange>& exchange) {
        exchange->readBody(
            [&, exchange](std::string_view) {
              ++pieces;
              // The response goes out on a later turn of the loop, after reading stopped.
              exchange->loop().post(
                  [exchange] { exchange->respond(ResponseHead(413), "upload too large"); });
              return false;
            },
            [&] { ended = true; });
      },
      streamingOptions());
  Client client(port());
  client.send("PATCH /upload/4 HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n");
  client.send(std::string(100000, 'a'));
  std::string response = client.readResponses(1);
  EXPECT_TRUE(response.starts_with("HTTP/1.1 413 ")) << response;
  EXPECT_NE(response.find("Connection: close\r\n"), std::string::npos) << response;

  // A client that sends the rest of its body before it reads the response is not reset: the
  // server reads and discards the rest before it closes.
  for (int i = 0; i < 9; ++i) {
    client.send(std::string(100000, 'a'));
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(client.waitForClose());
  EXPECT_EQ(pieces.load(), 1);
  EXPECT_FALSE(ended.load());
}

TEST_F(HttpServerTest, ClosesAfterResponseWithoutReadingBody) {
  std::atomic<int> requests{0};
  startServer(
      [&](const std::shared_ptr<Exchange>& exchange) {
        ++requests;
        exchange->respond(ResponseHead(401), "unauthorized");
      },
      streamingOptions());
  Client client(port());
  // The body looks like a request: it must not be parsed as one.
  std::string body = "GET /inside-body HTTP/1.1\r\nHost: x\r\n\r\n";
  client.send(
      "PUT /upload/5 HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(body.size()) +
      "\r\n\r\n" + body + "GET /after HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string responses = client.readResponses(2);
  EXPECT_TRUE(responses.starts_with("HTTP/1.1 401 ")) << responses;
  EXPECT_NE(responses.find("Connection: close\r\n"), std::string::npos) << responses;
  EXPECT_EQ(responses.find("HTTP/1.1", 1), std::string::npos) << responses;
  EXPECT_TRUE(client.waitForClose());
  EXPECT_EQ(requests.load(), 1);
}

TEST_F(HttpServerTest, RunsAbortCallbackWhenClientLeavesMidBody) {
  std::promise<void> got_data;
  std::promise<void> aborted;
  std::atomic<bool> ended{false};
  startServer(
      [&](const std::shared_ptr<Exchange>& exchange) {
        exchange->setOnAbort([&] { aborted.set_value(); });
        auto is_first = std::make_shared<bool>(true);
        exchange->readBody(
            [&, is_first](std::string_view) {
              if (std::exchange(*is_first, false)) {
                got_data.set_value();
              }
              return true;
            },
            [&] { ended = true; });
      },
      streamingOptions());
  {
    Client client(port());
    client.send("PATCH /upload/6 HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n");
    client.send(std::string(1000, 'b'));
    ASSERT_EQ(got_data.get_future().wait_for(std::chrono::seconds(5)), std::future_status::ready);
  }
  EXPECT_EQ(aborted.get_future().wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_FALSE(ended.load());
}

TEST_F(HttpServerTest, ClosesConnectionWhenBodyStalls) {
  ServerOptions options = streamingOptions();
  options.idle_timeout_ms = 200;
  std::promise<void> aborted;
  std::atomic<bool> ended{false};
  startServer(
      [&](const std::shared_ptr<Exchange>& exchange) {
        exchange->setOnAbort([&] { aborted.set_value(); });
        exchange->readBody([](std::string_view) { return true; }, [&] { ended = true; });
      },
      options);
  Client client(port());
  client.send("PATCH /upload/7 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789");
  auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(aborted.get_future().wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_TRUE(client.waitForClose());
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(4));
  EXPECT_FALSE(ended.load());
}

TEST_F(HttpServerTest, ClosesConnectionOnInvalidChunkedBody) {
  std::promise<void> aborted;
  startServer(
      [&](const std::shared_ptr<Exchange>& exchange) {
        exchange->setOnAbort([&] { aborted.set_value(); });
        echoBodyHandler(exchange);
      },
      streamingOptions());
  Client client(port());
  client.send(
      "PUT /upload/8 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\nzz\r\n");
  EXPECT_EQ(aborted.get_future().wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_TRUE(client.waitForClose());
}

TEST_F(HttpServerTest, SendsContinueWhenStreamedBodyIsRead) {
  startServer(echoBodyHandler, streamingOptions());
  Client client(port());
  client.send(
      "PUT /upload/9 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
  ASSERT_TRUE(client.hasDataWithin(2000));
  EXPECT_EQ(client.readInterimResponse(), "HTTP/1.1 100 Continue\r\n\r\n");
  client.send("hello");
  std::string response = client.readResponses(1);
  EXPECT_TRUE(response.starts_with("HTTP/1.1 200 ")) << response;
  EXPECT_TRUE(response.ends_with("PUT /upload/9 hello")) << response;
}

TEST_F(HttpServerTest, SendsNoContinueWhenHandlerAnswersWithoutReading) {
  startServer(
      [](const std::shared_ptr<Exchange>& exchange) {
        exchange->respond(ResponseHead(401), "unauthorized");
      },
      streamingOptions());
  Client client(port());
  client.send(
      "PUT /upload/10 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
  std::string response = client.readResponses(1);
  EXPECT_TRUE(response.starts_with("HTTP/1.1 401 ")) << response;
  EXPECT_EQ(response.find("100 Continue"), std::string::npos) << response;
  EXPECT_NE(response.find("Connection: close\r\n"), std::string::npos) << response;
}

TEST_F(HttpServerTest, SendsContinueBeforeBufferedBody) {
  startServer(echoBodyHandler);
  Client client(port());
  client.send(
      "POST /buffered HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-Continue\r\n\r\n");
  ASSERT_TRUE(client.hasDataWithin(2000));
  EXPECT_EQ(client.readInterimResponse(), "HTTP/1.1 100 Continue\r\n\r\n");
  client.send("hello");
  std::string response = client.readResponses(1);
  EXPECT_TRUE(response.ends_with("POST /buffered hello")) << response;
  EXPECT_EQ(response.find("Connection: close"), std::string::npos) << response;
}

TEST_F(HttpServerTest, IgnoresContinueExpectationFromHttp10) {
  startServer(echoBodyHandler, streamingOptions());
  for (std::string_view path : {"/buffered", "/upload/11"}) {
    SCOPED_TRACE(path);
    Client client(port());
    client.send("POST " + std::string(path) +
                " HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    EXPECT_FALSE(client.hasDataWithin(200));
    client.send("hello");
    std::string response = client.readResponses(1);
    EXPECT_TRUE(response.starts_with("HTTP/1.1 200 ")) << response;
    EXPECT_TRUE(response.ends_with(std::string(path) + " hello")) << response;
  }
}

TEST_F(HttpServerTest, AnswersRequestPipelinedAfterStreamedBody) {
  startServer(echoBodyHandler, streamingOptions());

  // The next request arrives with the head and body, before readBody().
  Client together(port());
  together.send(
      "PUT /upload/12 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
      "GET /next HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string responses = together.readResponses(2);
  size_t upload = responses.find("PUT /upload/12 hello");
  size_t next = responses.find("GET /next ");
  ASSERT_NE(upload, std::string::npos) << responses;
  ASSERT_NE(next, std::string::npos) << responses;
  EXPECT_LT(upload, next);

  // The next request arrives in the same read as the end of the body.
  Client after(port());
  after.send("PUT /upload/13 HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello");
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  after.send(
      "world"
      "PUT /upload/14 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
  responses = after.readResponses(2);
  upload = responses.find("PUT /upload/13 helloworld");
  next = responses.find("PUT /upload/14 abc");
  ASSERT_NE(upload, std::string::npos) << responses;
  ASSERT_NE(next, std::string::npos) << responses;
  EXPECT_LT(upload, next);
}

TEST_F(HttpServerTest, EndsEmptyStreamedBodyAtOnce) {
  startServer(echoBodyHandler, streamingOptions());
  Client client(port());
  client.send("PUT /upload/15 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
  EXPECT_TRUE(client.readResponses(1).ends_with("PUT /upload/15 "));
  client.send("PUT /upload/16 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
  EXPECT_TRUE(client.readResponses(1).ends_with("PUT /upload/16 "));
  client.send("POST /upload/17 HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_TRUE(client.readResponses(1).ends_with("POST /upload/17 "));
  EXPECT_EQ(server_->counters().connections_accepted.load(), 1u);
}

TEST_F(HttpServerTest, ReadsBufferedBodyInOnePiece) {
  std::atomic<int> pieces{0};
  startServer([&](const std::shared_ptr<Exchange>& exchange) {
    auto body = std::make_shared<std::string>(exchange->request().body());
    exchange->readBody(
        [&, body](std::string_view piece) {
          ++pieces;
          return piece == *body;
        },
        [exchange] { exchange->respond(ResponseHead(204), ""); });
  });
  Client client(port());
  client.send("POST /buffered HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
  std::string response = client.readResponses(1);
  EXPECT_TRUE(response.starts_with("HTTP/1.1 204 ")) << response;
  EXPECT_EQ(pieces.load(), 1);
}

}  // namespace
}  // namespace outpost::proxy
