// ConnectionPool: the keep-alive connections of one client, grouped by origin.
//
// Each origin (scheme, host, port) has at most max_connections_per_host open connections,
// counting those still opening. A request takes the most recently used idle connection, else
// opens a new one, else waits in a FIFO queue. A connection is parked for reuse only after a
// complete response that allows keep-alive; every other connection is closed.
#pragma once

#include <uv.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "proxy/upstream/loop_timer.h"
#include "proxy/upstream/upstream_connection.h"
#include "proxy/upstream/url.h"

namespace outpost::proxy::upstream {

class ConnectionPool {
 public:
  ConnectionPool(uv_loop_t* loop, HandleCounter* handles, UpstreamCounters* counters,
                 ConnectionSettings settings, int max_connections_per_host);
  // Precondition: closeAll() has run.
  ~ConnectionPool();
  ConnectionPool(const ConnectionPool&) = delete;
  ConnectionPool& operator=(const ConnectionPool&) = delete;

  // Returns a connection to `origin` for `listener`: an idle one ready for sendRequest(), or
  // a new one that is opening and reports to `listener`. Returns null when the origin is at
  // its limit; the listener then waits for onConnectionAssigned. With
  // `needs_new_connection`, idle connections are not handed out, and the oldest is closed when
  // needed to make room. `tls_context` is used for https origins and must outlive the pool.
  UpstreamConnection* acquire(const Url& origin, SSL_CTX* tls_context, ConnectionListener* listener,
                              bool needs_new_connection);
  // Removes `listener` from the queue of `origin`, if it waits there.
  void cancelWait(const Url& origin, ConnectionListener* listener);

  // Takes back a connection after onResponseComplete: hands it to the next waiter, parks it,
  // or closes it when it cannot be reused.
  void release(UpstreamConnection* connection);
  // Closes a connection whose exchange was abandoned. Closing connections are ignored.
  void discard(UpstreamConnection* connection);
  // Closes a connection, also one parked or opening, and opens a new one for the next waiter.
  void closeConnection(UpstreamConnection* connection);
  // Closes every connection. The listeners of active connections hear nothing more.
  void closeAll();

  size_t openConnectionCountForTest(const Url& origin) const;
  size_t idleConnectionCountForTest(const Url& origin) const;

 private:
  struct HostPool {
    std::string key;
    // Parked connections, most recently used last.
    std::vector<UpstreamConnection*> idle;
    std::deque<ConnectionListener*> waiters;
    // Connections of this origin that are not closing.
    size_t open_count = 0;
    Url origin;
    SSL_CTX* tls_context = nullptr;
  };

  // Returns the entry of `origin`, created on first use.
  HostPool& hostFor(const Url& origin, SSL_CTX* tls_context);
  UpstreamConnection* openConnection(HostPool& host, ConnectionListener* listener);
  // Opens a connection for the first waiter when the host has room.
  void serveNextWaiter(HostPool& host);
  void eraseIfUnused(const std::string& key);

  uv_loop_t* loop_;
  HandleCounter* handles_;
  UpstreamCounters* counters_;
  ConnectionSettings settings_;
  size_t max_connections_per_host_;
  uint64_t next_connection_id_ = 1;
  std::unordered_map<std::string, HostPool> hosts_;
  // Every connection that is not closing. A closing connection owns itself (see
  // UpstreamConnection::close).
  std::unordered_map<UpstreamConnection*, std::unique_ptr<UpstreamConnection>> connections_;
};

}  // namespace outpost::proxy::upstream
