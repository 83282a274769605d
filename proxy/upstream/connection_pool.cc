#include "proxy/upstream/connection_pool.h"

#include <algorithm>
#include <cassert>
#include <utility>

namespace outpost::proxy::upstream {
namespace {

// The origin part of `url`, the only part a connection needs.
Url originOf(const Url& url) {
  Url origin;
  origin.scheme = url.scheme;
  origin.host = url.host;
  origin.port = url.port;
  origin.path_and_query.push_back('/');
  return origin;
}

}  // namespace

ConnectionPool::ConnectionPool(uv_loop_t* loop, HandleCounter* handles, UpstreamCounters* counters,
                               ConnectionSettings settings, int max_connections_per_host)
    : loop_(loop),
      handles_(handles),
      counters_(counters),
      settings_(settings),
      max_connections_per_host_(static_cast<size_t>(std::max(1, max_connections_per_host))) {}

ConnectionPool::~ConnectionPool() { assert(connections_.empty()); }

ConnectionPool::HostPool& ConnectionPool::hostFor(const Url& origin, SSL_CTX* tls_context) {
  const std::string key = origin.origin();
  HostPool& host = hosts_[key];
  if (host.key.empty()) {
    host.key = key;
    host.origin = originOf(origin);
    host.tls_context = tls_context;
  }
  return host;
}

UpstreamConnection* ConnectionPool::acquire(const Url& origin, SSL_CTX* tls_context,
                                            ConnectionListener* listener,
                                            bool needs_new_connection) {
  HostPool* host = &hostFor(origin, tls_context);
  if (!host->idle.empty() && !needs_new_connection) {
    UpstreamConnection* connection = host->idle.back();
    host->idle.pop_back();
    return connection;
  }
  if (host->open_count >= max_connections_per_host_ && !host->idle.empty()) {
    // Make room by closing the connection that has been idle longest. Closing may erase the
    // host entry, so it is looked up again.
    closeConnection(host->idle.front());
    host = &hostFor(origin, tls_context);
  }

  if (host->open_count < max_connections_per_host_) {
    return openConnection(*host, listener);
  }
  host->waiters.push_back(listener);
  return nullptr;
}

void ConnectionPool::cancelWait(const Url& origin, ConnectionListener* listener) {
  auto it = hosts_.find(origin.origin());
  if (it == hosts_.end()) {
    return;
  }
  std::deque<ConnectionListener*>& waiters = it->second.waiters;
  waiters.erase(std::remove(waiters.begin(), waiters.end(), listener), waiters.end());
  eraseIfUnused(origin.origin());
}

UpstreamConnection* ConnectionPool::openConnection(HostPool& host, ConnectionListener* listener) {
  auto connection =
      std::make_unique<UpstreamConnection>(loop_, handles_, this, counters_, &settings_,
                                           host.origin, host.tls_context, next_connection_id_++);
  UpstreamConnection* raw = connection.get();
  connections_.emplace(raw, std::move(connection));
  ++host.open_count;
  raw->open(listener);
  return raw;
}

void ConnectionPool::release(UpstreamConnection* connection) {
  if (connection->isClosing()) {
    return;
  }
  if (!connection->isReusable()) {
    closeConnection(connection);
    return;
  }
  auto it = hosts_.find(connection->poolKey());
  assert(it != hosts_.end());
  HostPool& host = it->second;
  if (!host.waiters.empty()) {
    ConnectionListener* waiter = host.waiters.front();
    host.waiters.pop_front();
    waiter->onConnectionAssigned(connection);
    return;
  }
  host.idle.push_back(connection);
  connection->startIdleTimer();
}

void ConnectionPool::discard(UpstreamConnection* connection) {
  if (connection->isClosing()) {
    return;
  }
  closeConnection(connection);
}

void ConnectionPool::closeConnection(UpstreamConnection* connection) {
  auto owner = connections_.find(connection);
  if (owner == connections_.end()) {
    return;
  }
  std::unique_ptr<UpstreamConnection> owned = std::move(owner->second);
  connections_.erase(owner);

  const std::string key = connection->poolKey();
  auto it = hosts_.find(key);
  if (it != hosts_.end()) {
    std::vector<UpstreamConnection*>& idle = it->second.idle;
    idle.erase(std::remove(idle.begin(), idle.end(), connection), idle.end());
    --it->second.open_count;
  }
  connection->close(std::move(owned));

  if (it != hosts_.end()) {
    serveNextWaiter(it->second);
  }
  eraseIfUnused(key);
}

void ConnectionPool::serveNextWaiter(HostPool& host) {
  if (host.waiters.empty() || host.open_count >= max_connections_per_host_) {
    return;
  }
  ConnectionListener* waiter = host.waiters.front();
  host.waiters.pop_front();
  UpstreamConnection* connection = openConnection(host, waiter);
  // The waiter may close connections and so erase `host`; nothing touches it afterwards.
  waiter->onConnectionAssigned(connection);
}

void ConnectionPool::closeAll() {
  for (auto& [key, host] : hosts_) {
    host.waiters.clear();
  }
  std::vector<UpstreamConnection*> open;
  open.reserve(connections_.size());
  for (const auto& [connection, owned] : connections_) {
    open.push_back(connection);
  }
  for (UpstreamConnection* connection : open) {
    closeConnection(connection);
  }
  hosts_.clear();
}

void ConnectionPool::eraseIfUnused(const std::string& key) {
  auto it = hosts_.find(key);
  if (it == hosts_.end()) {
    return;
  }
  const HostPool& host = it->second;
  if (host.open_count == 0 && host.waiters.empty() && host.idle.empty()) {
    hosts_.erase(it);
  }
}

size_t ConnectionPool::openConnectionCountForTest(const Url& origin) const {
  auto it = hosts_.find(origin.origin());
  return it == hosts_.end() ? 0 : it->second.open_count;
}

size_t ConnectionPool::idleConnectionCountForTest(const Url& origin) const {
  auto it = hosts_.find(origin.origin());
  return it == hosts_.end() ? 0 : it->second.idle.size();
}

}  // namespace outpost::proxy::upstream
