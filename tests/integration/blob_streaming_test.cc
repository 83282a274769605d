// Clients of a blob that is still downloading: each is sent bytes as they arrive, ranges are
// answered from the same download, and a client that leaves does not stop it.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <filesystem>
#include <random>
#include <thread>

#include "base/digest.h"
#include "base/unique_fd.h"
#include "tests/integration/harness.h"
#include "tests/integration/outpost_server.h"
#include "tests/integration/scripted_blob_test.h"
#include "tests/integration/scripted_upstream.h"

namespace outpost::integration {
namespace {

// Opens a connection, sends a GET and reads until the head and at least `body_bytes` of the
// body have arrived. Returns the socket, still open, and what was read.
struct PartialRead {
  UniqueFd fd;
  std::string head;
  size_t body_bytes = 0;
};

Expected<PartialRead> startGet(const std::string& host_port, const std::string& path,
                               size_t body_bytes) {
  PartialRead read;
  read.fd.reset(::socket(AF_INET, SOCK_STREAM, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(std::stoi(host_port.substr(10))));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval timeout{10, 0};
  ::setsockopt(read.fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  if (::connect(read.fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    return errnoStatus("connect " + host_port, errno);
  }
  std::string request = "GET " + path + " HTTP/1.1\r\nHost: " + host_port + "\r\n\r\n";
  ::send(read.fd.get(), request.data(), request.size(), MSG_NOSIGNAL);
  std::string data;
  char buffer[65536];
  while (true) {
    size_t head_end = data.find("\r\n\r\n");
    if (head_end != std::string::npos && data.size() - head_end - 4 >= body_bytes) {
      read.head = data.substr(0, head_end);
      read.body_bytes = data.size() - head_end - 4;
      return read;
    }
    ssize_t received = ::recv(read.fd.get(), buffer, sizeof(buffer), 0);
    if (received <= 0) {
      return unavailable("connection ended after " + std::to_string(data.size()) + " bytes");
    }
    data.append(buffer, static_cast<size_t>(received));
  }
}

class BlobStreamingTest : public ScriptedBlobTest {
 protected:
  void SetUp() override {
    // 4 MiB at 64 KiB per 10 ms: the download takes about 0.6 s.
    startWithBlob(4u << 20, 2);
    upstream_.setFault(UpstreamFault::kSlowBody);
  }
};

TEST_F(BlobStreamingTest, FirstClientGetsBytesBeforeDownloadEnds) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(PartialRead first,
                               startGet(outpost_->hostPort(), outpost_path_, 1));
  EXPECT_NE(first.head.find("200 OK"), std::string::npos) << first.head;
  EXPECT_NE(first.head.find("Content-Length: " + std::to_string(blob_.size())),
            std::string::npos)
      << first.head;
  // The client already has body bytes while most of the blob is still on its way.
  EXPECT_LT(upstream_.bodyBytesSent(), blob_.size());
}

TEST_F(BlobStreamingTest, LateJoinersAndRangesShareOneDownload) {
  std::string full_body;
  std::thread first([&] {
    Expected<HttpResult> result = httpGet(blob_url_);
    full_body = result ? result->body : "";
  });
  // Join while the download runs: a whole GET, a range in the middle, and a HEAD.
  while (upstream_.bodyBytesSent() < (1u << 20)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  // The three run at once, so that all of them start while most of the blob is to come.
  Expected<HttpResult> late = unavailable("not run");
  Expected<HttpResult> ranged = unavailable("not run");
  Expected<HttpResult> head = unavailable("not run");
  std::thread late_client([&] { late = httpGet(blob_url_); });
  std::thread ranged_client([&] {
    ranged = httpGet(blob_url_, {{"Range", "bytes=3000000-3099999"}});
  });
  std::thread head_client([&] { head = httpHead(blob_url_); });
  late_client.join();
  ranged_client.join();
  head_client.join();
  first.join();

  EXPECT_TRUE(full_body == blob_);
  ASSERT_TRUE(late.hasValue()) << late.status().toString();
  EXPECT_EQ(late->status, 200);
  EXPECT_TRUE(late->body == blob_);
  ASSERT_TRUE(ranged.hasValue()) << ranged.status().toString();
  EXPECT_EQ(ranged->status, 206);
  EXPECT_EQ(ranged->header("Content-Range").value_or(""),
            "bytes 3000000-3099999/" + std::to_string(blob_.size()));
  EXPECT_TRUE(ranged->body == blob_.substr(3000000, 100000));
  ASSERT_TRUE(head.hasValue()) << head.status().toString();
  EXPECT_EQ(head->status, 200);
  EXPECT_EQ(head->header("Content-Length").value_or(""), std::to_string(blob_.size()));

  EXPECT_EQ(upstream_.requestCount(upstream_path_), 1u);
  OUTPOST_ASSERT_OK_AND_ASSIGN(uint64_t joined, outpost_->metric("outpost_downloads_joined_total"));
  EXPECT_GE(joined, 2u) << "the late GET and the ranged GET join the running download";
}

TEST_F(BlobStreamingTest, ClientLeavingDoesNotStopDownload) {
  {
    OUTPOST_ASSERT_OK_AND_ASSIGN(PartialRead leaving,
                                 startGet(outpost_->hostPort(), outpost_path_, 64 * 1024));
    EXPECT_GT(leaving.body_bytes, 0u);
  }  // the socket closes here, mid-body
  EXPECT_TRUE(waitForFile(storedPath()));
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult later, httpGet(blob_url_));
  EXPECT_TRUE(later.body == blob_);
  EXPECT_EQ(upstream_.requestCount(upstream_path_), 1u);
}

// A download larger than the free space fails cleanly; the server keeps serving.
TEST(FullDiskTest, DownloadFailsCleanlyWhenDiskFills) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(TempDir mount_point, TempDir::create("full-disk"));
  OUTPOST_ASSERT_OK_AND_ASSIGN(
      CommandResult mounted,
      run({"mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", mount_point.path()}));
  if (!mounted.succeeded()) {
    GTEST_SKIP() << "cannot mount a tmpfs here: " << mounted.describe();
  }
  struct Unmount {
    std::string path;
    ~Unmount() { (void)run({"umount", "-l", path}); }
  } unmount{mount_point.path()};

  ScriptedUpstream upstream;
  OUTPOST_ASSERT_OK(upstream.start());
  std::string big = randomBytes(8u << 20, 3);
  std::string small = randomBytes(64u << 10, 4);
  std::string big_digest = sha256Of(big).str();
  std::string small_digest = sha256Of(small).str();
  upstream.setResource("/v2/team/app/blobs/" + big_digest, big);
  upstream.setResource("/v2/team/app/blobs/" + small_digest, small);

  OutpostOptions on_tmpfs = optionsForUpstream(upstream.url(), upstream.hostPort());
  on_tmpfs.data_dir = mount_point.path() + "/data";
  OUTPOST_ASSERT_OK_AND_ASSIGN(auto outpost, OutpostServer::start(on_tmpfs));

  std::string base = outpost->url() + "/v2/upstream/team/app/blobs/";
  Expected<HttpResult> failed = httpGet(base + big_digest);
  if (failed) {
    EXPECT_TRUE(failed->status != 200 || failed->body.size() < big.size())
        << "status " << failed->status;
  }
  EXPECT_FALSE(std::filesystem::exists(outpost->storedBlobPath(big_digest)));
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult health, httpGet(outpost->url() + "/healthz"));
  EXPECT_EQ(health.status, 200);
  // The space of the failed download is back: a small blob still fits.
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult fits, httpGet(base + small_digest));
  EXPECT_EQ(fits.status, 200);
  EXPECT_TRUE(fits.body == small);
  OUTPOST_ASSERT_OK_AND_ASSIGN(uint64_t failures,
                               outpost->metric("outpost_downloads_failed_total"));
  EXPECT_EQ(failures, 1u);
}

}  // namespace
}  // namespace outpost::integration
