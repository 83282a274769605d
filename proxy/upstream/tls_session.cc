#include "proxy/upstream/tls_session.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <array>
#include <utility>

namespace outpost::proxy::upstream {
namespace {

struct BioDeleter {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
using BioPtr = std::unique_ptr<BIO, BioDeleter>;

// Returns the oldest error on OpenSSL's thread-local queue as text and clears the queue.
std::string takeOpensslError() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) {
    return "unknown OpenSSL error";
  }
  std::array<char, 256> text{};
  ERR_error_string_n(code, text.data(), text.size());
  return text.data();
}

}  // namespace

Expected<SslCtxPtr> createClientTlsContext(const std::string& ca_file, bool insecure_skip_verify) {
  SslCtxPtr context(SSL_CTX_new(TLS_client_method()));
  if (!context) {
    return internalError("SSL_CTX_new failed: " + takeOpensslError());
  }
  SSL_CTX_set_min_proto_version(context.get(), TLS1_2_VERSION);

  // ALPN protocol list in wire format: a length byte, then the name.
  static constexpr unsigned char kAlpnHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  SSL_CTX_set_alpn_protos(context.get(), kAlpnHttp11, sizeof(kAlpnHttp11));

  if (insecure_skip_verify) {
    SSL_CTX_set_verify(context.get(), SSL_VERIFY_NONE, nullptr);
    return context;
  }
  SSL_CTX_set_verify(context.get(), SSL_VERIFY_PEER, nullptr);
  if (!ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(context.get(), ca_file.c_str(), nullptr) != 1) {
      return invalidArgument("cannot load CA file '" + ca_file + "': " + takeOpensslError());
    }
  } else if (SSL_CTX_set_default_verify_paths(context.get()) != 1) {
    return internalError("cannot load the system CA store: " + takeOpensslError());
  }
  return context;
}

Expected<std::unique_ptr<TlsSession>> TlsSession::create(SSL_CTX* context, const std::string& host,
                                                         bool is_ip_literal) {
  ERR_clear_error();
  SslPtr ssl(SSL_new(context));
  BioPtr network_in(BIO_new(BIO_s_mem()));
  BioPtr network_out(BIO_new(BIO_s_mem()));
  if (!ssl || !network_in || !network_out) {
    return internalError("cannot create TLS session: " + takeOpensslError());
  }
  SSL_set_connect_state(ssl.get());

  if (is_ip_literal) {
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl.get()), host.c_str()) != 1) {
      return invalidArgument("cannot check certificate against IP address '" + host + "'");
    }
  } else {
    SSL_set_hostflags(ssl.get(), X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (SSL_set1_host(ssl.get(), host.c_str()) != 1 ||
        SSL_set_tlsext_host_name(ssl.get(), host.c_str()) != 1) {
      return invalidArgument("cannot set TLS host name '" + host + "': " + takeOpensslError());
    }
  }

  BIO* in = network_in.release();
  BIO* out = network_out.release();
  SSL_set_bio(ssl.get(), in, out);
  return std::make_unique<TlsSession>(ConstructionToken(), std::move(ssl), in, out);
}

Status TlsSession::feedCiphertext(std::string_view bytes) {
  size_t written = 0;
  if (!bytes.empty() && BIO_write_ex(network_in_, bytes.data(), bytes.size(), &written) != 1) {
    return internalError("cannot buffer TLS input: " + takeOpensslError());
  }
  return Status::ok();
}

void TlsSession::takeCiphertext(std::string* out) {
  std::array<char, 16 * 1024> chunk;
  size_t read = 0;
  while (BIO_ctrl_pending(network_out_) > 0 &&
         BIO_read_ex(network_out_, chunk.data(), chunk.size(), &read) == 1) {
    out->append(chunk.data(), read);
  }
}

bool TlsSession::hasCiphertextToSend() const { return BIO_ctrl_pending(network_out_) > 0; }

Expected<bool> TlsSession::handshake() {
  ERR_clear_error();
  const int result = SSL_do_handshake(ssl_.get());
  if (result == 1) {
    return true;
  }
  const int error = SSL_get_error(ssl_.get(), result);
  if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
    return false;
  }

  const long verify_result = SSL_get_verify_result(ssl_.get());
  if (verify_result != X509_V_OK) {
    ERR_clear_error();
    return unavailable(std::string("certificate verify failed: ") +
                       X509_verify_cert_error_string(verify_result));
  }
  return unavailable("TLS handshake failed: " + takeOpensslError());
}

Status TlsSession::encrypt(std::string_view plaintext) {
  ERR_clear_error();
  size_t written = 0;
  if (!plaintext.empty() &&
      SSL_write_ex(ssl_.get(), plaintext.data(), plaintext.size(), &written) != 1) {
    return unavailable("TLS write failed: " + takeOpensslError());
  }
  return Status::ok();
}

Expected<size_t> TlsSession::decrypt(char* buffer, size_t size) {
  ERR_clear_error();
  size_t read = 0;
  if (SSL_read_ex(ssl_.get(), buffer, size, &read) == 1) {
    return read;
  }
  switch (SSL_get_error(ssl_.get(), 0)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
      return size_t{0};
    case SSL_ERROR_ZERO_RETURN:
      is_peer_closed_ = true;
      return size_t{0};
    default:
      return unavailable("TLS read failed: " + takeOpensslError());
  }
}

bool TlsSession::hasBufferedInput() const {
  return SSL_pending(ssl_.get()) > 0 || BIO_ctrl_pending(network_in_) > 0;
}

}  // namespace outpost::proxy::upstream
