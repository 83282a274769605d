// Support for the upstream client tests: a scripted HTTP/1.1 server on 127.0.0.1, plain or
// TLS, certificates issued in memory, a handler that records its callbacks, and a fixture that
// runs a real libuv loop.
//
// The server runs a thread per connection with blocking sockets, so a test can stall a
// response, close mid-body or hold a connection open without touching the client's loop.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/status.h"
#include "base/unique_fd.h"
#include "proxy/http_message.h"
#include "proxy/upstream/http_headers.h"
#include "proxy/upstream/tls_session.h"
#include "proxy/upstream/upstream_client.h"

namespace outpost::proxy::upstream_test {

// One request as the fake server read it.
struct SeenRequest {
  std::string method;
  std::string target;
  HeaderList headers;
  // 0 for the first connection the server accepted, 1 for the second, and so on.
  int connection_index = 0;

  std::string_view header(std::string_view name) const { return findHeader(headers, name); }
  bool hasHeader(std::string_view name) const {
    for (const auto& [field, value] : headers) {
      if (equalsIgnoreCase(field, name)) {
        return true;
      }
    }
    return false;
  }
};

// What the server does with one request.
struct FakeReply {
  // Written one after the other, with `pause_ms` between pieces so that the client reads them
  // separately.
  std::vector<std::string> pieces;
  int pause_ms = 0;
  // Close the connection after the pieces.
  bool close_after = false;
  // After the pieces, keep the connection open and silent until the client closes it.
  bool hold_open = false;
};

using FakeScript = std::function<FakeReply(const SeenRequest&)>;

// Builds a complete response with Content-Length. Headers come before Content-Length.
inline std::string httpResponse(int status, const HeaderList& headers, std::string_view body) {
  std::string text = "HTTP/1.1 " + std::to_string(status) + " Status\r\n";
  for (const auto& [name, value] : headers) {
    text += name + ": " + value + "\r\n";
  }
  text += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
  text.append(body);
  return text;
}

inline FakeReply reply(int status, const HeaderList& headers = {}, std::string_view body = "") {
  return FakeReply{{httpResponse(status, headers, body)}};
}

class FakeUpstream {
 public:
  // Listens on 127.0.0.1 on an ephemeral port. With `tls_context` every connection starts
  // with a TLS handshake; the server takes ownership.
  explicit FakeUpstream(FakeScript script, SSL_CTX* tls_context = nullptr)
      : script_(std::move(script)), tls_context_(tls_context) {
    listen_fd_ = UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    int enable = 1;
    ::setsockopt(listen_fd_.get(), SOL_SOCKET, SO_REUSEADDR, &enable, sizeof(enable));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;
    if (::bind(listen_fd_.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
        ::listen(listen_fd_.get(), 64) != 0) {
      std::perror("fake upstream bind");
      std::abort();
    }
    socklen_t length = sizeof(address);
    ::getsockname(listen_fd_.get(), reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    wake_fd_ = UniqueFd(::eventfd(0, EFD_CLOEXEC));
    accept_thread_ = std::thread([this] { acceptLoop(); });
  }

  ~FakeUpstream() { stop(); }
  FakeUpstream(const FakeUpstream&) = delete;
  FakeUpstream& operator=(const FakeUpstream&) = delete;

  // Stops accepting, shuts every connection down and joins the threads.
  void stop() {
    if (is_stopped_.exchange(true)) {
      return;
    }
    uint64_t one = 1;
    static_cast<void>(::write(wake_fd_.get(), &one, sizeof(one)));
    accept_thread_.join();
    {
      std::lock_guard lock(mutex_);
      for (int fd : open_fds_) {
        ::shutdown(fd, SHUT_RDWR);
      }
    }
    for (std::thread& thread : connection_threads_) {
      thread.join();
    }
  }

  uint16_t port() const { return port_; }
  std::string baseUrl() const {
    return std::string(tls_context_ ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_);
  }
  int acceptedConnections() const { return accepted_.load(); }
  // Connections that the client has closed or the server has ended.
  int closedConnections() const { return closed_.load(); }

  std::vector<SeenRequest> requests() const {
    std::lock_guard lock(mutex_);
    return requests_;
  }
  size_t requestCount() const {
    std::lock_guard lock(mutex_);
    return requests_.size();
  }

 private:
  void acceptLoop() {
    while (true) {
      pollfd fds[2] = {{listen_fd_.get(), POLLIN, 0}, {wake_fd_.get(), POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0) {
        continue;
      }
      if (fds[1].revents != 0) {
        return;
      }
      int fd = ::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        continue;
      }
      const int index = accepted_.fetch_add(1);
      {
        std::lock_guard lock(mutex_);
        open_fds_.push_back(fd);
      }
      connection_threads_.emplace_back([this, fd, index] { serveConnection(fd, index); });
    }
  }

  void serveConnection(int fd, int index) {
    upstream::SslPtr ssl;
    if (tls_context_) {
      ssl.reset(SSL_new(tls_context_.get()));
      SSL_set_fd(ssl.get(), fd);
      if (SSL_accept(ssl.get()) != 1) {
        ERR_clear_error();
        finishConnection(fd);
        return;
      }
    }
    auto receive = [&](char* buffer, size_t size) -> ssize_t {
      if (ssl) {
        return SSL_read(ssl.get(), buffer, static_cast<int>(size));
      }
      return ::recv(fd, buffer, size, 0);
    };
    auto send_all = [&](std::string_view bytes) {
      while (!bytes.empty()) {
        ssize_t sent = ssl ? SSL_write(ssl.get(), bytes.data(), static_cast<int>(bytes.size()))
                           : ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (sent <= 0) {
          return false;
        }
        bytes.remove_prefix(static_cast<size_t>(sent));
      }
      return true;
    };

    std::string input;
    char buffer[16384];
    while (true) {
      size_t head_end;
      while ((head_end = input.find("\r\n\r\n")) == std::string::npos) {
        ssize_t received = receive(buffer, sizeof(buffer));
        if (received <= 0) {
          finishConnection(fd);
          return;
        }
        input.append(buffer, static_cast<size_t>(received));
      }
      SeenRequest request = parseRequest(std::string_view(input).substr(0, head_end), index);
      input.erase(0, head_end + 4);
      {
        std::lock_guard lock(mutex_);
        requests_.push_back(request);
      }

      FakeReply answer = script_(request);
      for (size_t i = 0; i < answer.pieces.size(); ++i) {
        if (i > 0 && answer.pause_ms > 0) {
          std::this_thread::sleep_for(std::chrono::milliseconds(answer.pause_ms));
        }
        if (!send_all(answer.pieces[i])) {
          finishConnection(fd);
          return;
        }
      }
      if (answer.hold_open) {
        while (receive(buffer, sizeof(buffer)) > 0) {
        }
        finishConnection(fd);
        return;
      }
      if (answer.close_after) {
        finishConnection(fd);
        return;
      }
    }
  }

  static SeenRequest parseRequest(std::string_view head, int index) {
    SeenRequest request;
    request.connection_index = index;
    size_t line_end = head.find("\r\n");
    std::string_view line = head.substr(0, line_end);
    size_t first_space = line.find(' ');
    size_t second_space = line.find(' ', first_space + 1);
    request.method = std::string(line.substr(0, first_space));
    request.target = std::string(line.substr(first_space + 1, second_space - first_space - 1));
    while (line_end != std::string_view::npos) {
      size_t start = line_end + 2;
      line_end = head.find("\r\n", start);
      std::string_view field = head.substr(start, line_end - start);
      size_t colon = field.find(':');
      if (colon == std::string_view::npos) {
        continue;
      }
      std::string_view value = field.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') {
        value.remove_prefix(1);
      }
      request.headers.emplace_back(std::string(field.substr(0, colon)), std::string(value));
    }
    return request;
  }

  void finishConnection(int fd) {
    {
      std::lock_guard lock(mutex_);
      std::erase(open_fds_, fd);
    }
    ::close(fd);
    closed_.fetch_add(1);
  }

  FakeScript script_;
  upstream::SslCtxPtr tls_context_;
  UniqueFd listen_fd_;
  UniqueFd wake_fd_;
  uint16_t port_ = 0;
  std::thread accept_thread_;
  std::vector<std::thread> connection_threads_;
  std::atomic<bool> is_stopped_{false};
  std::atomic<int> accepted_{0};
  std::atomic<int> closed_{0};
  mutable std::mutex mutex_;
  std::vector<SeenRequest> requests_;
  std::vector<int> open_fds_;
};

// Returns a port on 127.0.0.1 that nothing listens on: bound once to learn a free port, then
// released.
inline uint16_t unusedLoopbackPort() {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address));
  socklen_t length = sizeof(address);
  ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&address), &length);
  return ntohs(address.sin_port);
}

// ----- Certificates -------------------------------------------------------------------

struct PkeyDeleter {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct X509Deleter {
  void operator()(X509* certificate) const { X509_free(certificate); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;
using X509Ptr = std::unique_ptr<X509, X509Deleter>;

struct KeyAndCertificate {
  PkeyPtr key;
  X509Ptr certificate;
};

// Adds an X.509 v3 extension in OpenSSL's configuration syntax, such as
// "IP:127.0.0.1" for NID_subject_alt_name.
inline void addExtension(X509* certificate, X509* issuer, int nid, const char* value) {
  X509V3_CTX context;
  X509V3_set_ctx(&context, issuer, certificate, nullptr, nullptr, 0);
  X509_EXTENSION* extension = X509V3_EXT_conf_nid(nullptr, &context, nid, value);
  if (extension == nullptr) {
    std::abort();
  }
  X509_add_ext(certificate, extension, -1);
  X509_EXTENSION_free(extension);
}

// Issues a P-256 certificate valid for one hour. Without `issuer` the certificate is a
// self-signed CA; otherwise it is a server certificate with `subject_alt_name`.
inline KeyAndCertificate issueCertificate(const char* common_name, const KeyAndCertificate* issuer,
                                          const char* subject_alt_name) {
  static std::atomic<long> next_serial{1};
  KeyAndCertificate result;
  result.key.reset(EVP_EC_gen("P-256"));
  result.certificate.reset(X509_new());
  X509* certificate = result.certificate.get();
  X509_set_version(certificate, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(certificate), next_serial++);
  X509_gmtime_adj(X509_getm_notBefore(certificate), -60);
  X509_gmtime_adj(X509_getm_notAfter(certificate), 3600);
  X509_set_pubkey(certificate, result.key.get());
  X509_NAME* name = X509_get_subject_name(certificate);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(common_name), -1, -1, 0);

  X509* issuer_certificate = issuer ? issuer->certificate.get() : certificate;
  X509_set_issuer_name(certificate, X509_get_subject_name(issuer_certificate));
  if (issuer == nullptr) {
    addExtension(certificate, certificate, NID_basic_constraints, "critical,CA:TRUE");
    addExtension(certificate, certificate, NID_key_usage, "critical,keyCertSign,cRLSign");
    addExtension(certificate, certificate, NID_subject_key_identifier, "hash");
  } else {
    addExtension(certificate, issuer_certificate, NID_basic_constraints, "critical,CA:FALSE");
    addExtension(certificate, issuer_certificate, NID_ext_key_usage, "serverAuth");
    addExtension(certificate, issuer_certificate, NID_subject_alt_name, subject_alt_name);
    addExtension(certificate, issuer_certificate, NID_authority_key_identifier, "keyid");
  }
  EVP_PKEY* signing_key = issuer ? issuer->key.get() : result.key.get();
  X509_sign(certificate, signing_key, EVP_sha256());
  return result;
}

// Writes `certificate` as PEM to `path`.
inline void writeCertificatePem(const X509* certificate, const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "w");
  if (file == nullptr) {
    std::abort();
  }
  PEM_write_X509(file, certificate);
  std::fclose(file);
}

// A server context that presents `server`'s certificate.
inline SSL_CTX* serverTlsContext(const KeyAndCertificate& server) {
  SSL_CTX* context = SSL_CTX_new(TLS_server_method());
  SSL_CTX_use_certificate(context, server.certificate.get());
  SSL_CTX_use_PrivateKey(context, server.key.get());
  return context;
}

// ----- Client side --------------------------------------------------------------------

// Records every callback of one call. Hooks let a test act inside a callback.
class RecordingHandler : public UpstreamHandler {
 public:
  void onHead(const UpstreamResponse& response) override {
    ++head_count;
    head = response;
    if (on_head) {
      on_head();
    }
  }
  Status onBody(std::string_view chunk) override {
    ++body_count;
    body.append(chunk);
    if (on_body) {
      return on_body(chunk);
    }
    return Status::ok();
  }
  void onComplete(Status completion) override {
    ++complete_count;
    status = std::move(completion);
    if (on_complete) {
      on_complete();
    }
  }

  bool isComplete() const { return complete_count > 0; }

  int head_count = 0;
  int body_count = 0;
  int complete_count = 0;
  UpstreamResponse head;
  std::string body;
  Status status;
  std::function<void()> on_head;
  std::function<Status(std::string_view)> on_body;
  std::function<void()> on_complete;
};

// Runs a real libuv loop on the test thread. Every test closes its clients through
// closeClient(), and TearDown checks that the loop then closes cleanly, which fails when a
// handle was leaked.
class UpstreamLoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    // A repeating timer keeps uv_run(UV_RUN_ONCE) from blocking for long, so runUntil()
    // re-checks its condition at least every 10 ms.
    uv_timer_init(&loop_, &tick_);
    uv_timer_start(
        &tick_, [](uv_timer_t*) {}, 10, 10);
  }

  void TearDown() override {
    // Clients that a failed assertion left open are closed here, before the loop.
    for (auto& [client, is_closed] : clients_) {
      if (!is_closed) {
        closeClient(*client);
      }
    }
    clients_.clear();
    uv_close(reinterpret_cast<uv_handle_t*>(&tick_), nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0) << "a libuv handle or request was left open";
  }

  // Runs the loop until `condition` is true or `timeout` passes. Returns the condition.
  bool runUntil(const std::function<bool()>& condition,
                std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!condition()) {
      if (std::chrono::steady_clock::now() >= deadline) {
        return false;
      }
      uv_run(&loop_, UV_RUN_ONCE);
    }
    return true;
  }

  // Runs the loop for `duration`, whatever happens.
  void runFor(std::chrono::milliseconds duration) {
    const auto deadline = std::chrono::steady_clock::now() + duration;
    runUntil([&] { return std::chrono::steady_clock::now() >= deadline; }, duration * 2);
  }

  // Creates a client on the test loop; TearDown closes it if the test did not.
  UpstreamClient& makeClient(UpstreamOptions options) {
    clients_.emplace_back(std::make_unique<UpstreamClient>(&loop_, std::move(options)), false);
    return *clients_.back().first;
  }

  // Closes `client` and runs the loop until on_closed has run.
  void closeClient(UpstreamClient& client) {
    for (auto& [owned, is_closed] : clients_) {
      if (owned.get() == &client) {
        is_closed = true;
      }
    }
    bool has_closed = false;
    client.close([&has_closed] { has_closed = true; });
    EXPECT_FALSE(has_closed) << "on_closed ran inside close()";
    EXPECT_TRUE(runUntil([&] { return has_closed; })) << "on_closed did not run";
  }

  // Options for a client of `base_url` with short delays, so that retries do not slow tests.
  static UpstreamOptions fastOptions(const std::string& base_url) {
    UpstreamOptions options;
    options.base_url = base_url;
    options.retry_base_delay_ms = 5;
    options.connect_timeout_ms = 2000;
    options.response_timeout_ms = 5000;
    options.body_stall_timeout_ms = 5000;
    return options;
  }

  static UpstreamRequest get(std::string path) {
    UpstreamRequest request;
    request.method = "GET";
    request.path_and_query = std::move(path);
    return request;
  }

  // Starts `request`, runs the loop until it completes, and returns the handler.
  std::unique_ptr<RecordingHandler> fetch(UpstreamClient& client, UpstreamRequest request) {
    auto handler = std::make_unique<RecordingHandler>();
    std::unique_ptr<UpstreamCall> call = client.start(std::move(request), handler.get());
    EXPECT_TRUE(runUntil([&] { return handler->isComplete(); })) << "call did not complete";
    return handler;
  }

  uv_loop_t loop_;
  uv_timer_t tick_;
  std::vector<std::pair<std::unique_ptr<UpstreamClient>, bool>> clients_;
};

}  // namespace outpost::proxy::upstream_test
