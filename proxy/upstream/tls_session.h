// TLS for upstream connections: the client SSL_CTX and one OpenSSL session per connection.
//
// The session does no I/O of its own. It sits on two memory BIOs: the connection feeds it the
// bytes read from the socket (feedCiphertext) and sends what takeCiphertext returns. That keeps
// every socket operation on libuv and lets one code path serve plain and TLS connections.
#pragma once

#include <openssl/ssl.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "base/status.h"

namespace outpost::proxy::upstream {

struct SslCtxDeleter {
  void operator()(SSL_CTX* context) const { SSL_CTX_free(context); }
};
struct SslDeleter {
  void operator()(SSL* ssl) const { SSL_free(ssl); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxDeleter>;
using SslPtr = std::unique_ptr<SSL, SslDeleter>;

// Builds the client context: TLS 1.2 or newer, ALPN "http/1.1", and peer verification against
// the PEM bundle `ca_file`, or the system store when `ca_file` is empty. With
// `insecure_skip_verify` the peer's certificate is not checked at all. Fails with
// kInvalidArgument when `ca_file` cannot be loaded.
Expected<SslCtxPtr> createClientTlsContext(const std::string& ca_file, bool insecure_skip_verify);

class TlsSession {
 public:
  // Starts a client session with `host`. A host name is sent as SNI and checked against the
  // certificate's DNS names. An IP literal is checked against the certificate's IP addresses and
  // sent without SNI, which RFC 6066 section 3 forbids for literals. Whether the check happens at
  // all depends on the context.
  static Expected<std::unique_ptr<TlsSession>> create(SSL_CTX* context, const std::string& host,
                                                      bool is_ip_literal);

  // Adds bytes read from the socket.
  Status feedCiphertext(std::string_view bytes);
  // Appends the records waiting to be sent to the socket to `out`.
  void takeCiphertext(std::string* out);
  bool hasCiphertextToSend() const;

  // Advances the handshake. Returns true once it is complete and false while it needs more
  // bytes from the peer. A failure names the reason, such as the certificate check that failed.
  Expected<bool> handshake();

  // Encrypts `plaintext` into records for takeCiphertext(). Only after the handshake.
  Status encrypt(std::string_view plaintext);

  // Decrypts into `buffer` and returns the number of bytes written, or 0 when the buffered
  // ciphertext contains no complete record. After the peer's close_notify it returns 0 and
  // isPeerClosed() turns true.
  Expected<size_t> decrypt(char* buffer, size_t size);
  bool isPeerClosed() const { return is_peer_closed_; }

  // Returns true when decrypted bytes or unread ciphertext remain inside the session.
  bool hasBufferedInput() const;

  // Only create() can make this token, so only create() can call the constructor.
  class ConstructionToken {
    friend class TlsSession;
    ConstructionToken() = default;
  };
  TlsSession(ConstructionToken, SslPtr ssl, BIO* network_in, BIO* network_out)
      : ssl_(std::move(ssl)), network_in_(network_in), network_out_(network_out) {}

 private:
  SslPtr ssl_;
  // Both BIOs are owned by ssl_ (SSL_set_bio transfers ownership).
  BIO* network_in_;
  BIO* network_out_;
  bool is_peer_closed_ = false;
};

}  // namespace outpost::proxy::upstream
