#include "tests/integration/certificates.h"

#include <cstdio>
#include <filesystem>
#include <random>
#include <system_error>
#include <vector>

#include "tests/integration/process.h"
#include "tests/integration/temp_dir.h"

namespace outpost::integration {
namespace {

// Extensions of the server certificate. Go clients (skopeo, containerd, distribution) match
// the host against subjectAltName only, never the common name.
constexpr const char* kServerExtensions =
    "basicConstraints = CA:FALSE\n"
    "keyUsage = critical, digitalSignature, keyEncipherment\n"
    "extendedKeyUsage = serverAuth\n"
    "subjectAltName = IP:127.0.0.1, DNS:localhost\n";

Status runOpenssl(std::vector<std::string> arguments) {
  arguments.insert(arguments.begin(), "openssl");
  RunOptions options;
  options.timeout_ms = 30'000;
  OUTPOST_ASSIGN_OR_RETURN(CommandResult result, run(std::move(arguments), options));
  return result.toStatus();
}

std::string randomSerial() {
  std::random_device device;
  std::uniform_int_distribution<uint64_t> distribution(1, (uint64_t{1} << 62));
  char text[32];
  std::snprintf(text, sizeof(text), "0x%llx",
                static_cast<unsigned long long>(distribution(device)));
  return text;
}

}  // namespace

Expected<TestCertificates> makeTestCertificates(const std::string& dir) {
  TestCertificates certificates;
  certificates.ca_dir = dir + "/ca";
  certificates.ca_file = certificates.ca_dir + "/ca.crt";
  certificates.certificate_file = dir + "/server.crt";
  certificates.key_file = dir + "/server.key";
  std::string ca_key_file = dir + "/ca.key";
  std::string request_file = dir + "/server.csr";
  std::string extensions_file = dir + "/server.ext";

  std::error_code error;
  std::filesystem::create_directories(certificates.ca_dir, error);
  if (error) {
    return ioError("creating " + certificates.ca_dir + " failed: " + error.message());
  }

  OUTPOST_RETURN_IF_ERROR(runOpenssl({"req",
                                      "-x509",
                                      "-new",
                                      "-newkey",
                                      "ec",
                                      "-pkeyopt",
                                      "ec_paramgen_curve:prime256v1",
                                      "-nodes",
                                      "-keyout",
                                      ca_key_file,
                                      "-out",
                                      certificates.ca_file,
                                      "-days",
                                      "2",
                                      "-subj",
                                      "/CN=Outpost test CA",
                                      "-addext",
                                      "basicConstraints=critical,CA:TRUE",
                                      "-addext",
                                      "keyUsage=critical,keyCertSign,cRLSign"}));

  OUTPOST_RETURN_IF_ERROR(runOpenssl(
      {"req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
       "-keyout", certificates.key_file, "-out", request_file, "-subj", "/CN=127.0.0.1"}));

  OUTPOST_RETURN_IF_ERROR(writeFile(extensions_file, kServerExtensions));
  OUTPOST_RETURN_IF_ERROR(
      runOpenssl({"x509", "-req", "-in", request_file, "-CA", certificates.ca_file, "-CAkey",
                  ca_key_file, "-set_serial", randomSerial(), "-days", "2", "-extfile",
                  extensions_file, "-out", certificates.certificate_file}));
  return certificates;
}

Expected<SigningKey> makeSigningKey(const std::string& dir) {
  SigningKey key{dir + "/token-signing.key", dir + "/token-signing.crt"};
  OUTPOST_RETURN_IF_ERROR(
      runOpenssl({"req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key.key_file, "-out",
                  key.certificate_file, "-days", "2", "-subj", "/CN=Outpost test token issuer"}));
  return key;
}

}  // namespace outpost::integration
