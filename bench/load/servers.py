"""Configuration and start of the servers of a run: the upstream, Outpost and the anchors.

Every server listens on 127.0.0.1 on a port picked by free_port(), keeps its files under
the run's temporary folder and is stopped by the ProcessGroup that started it.
"""

import grp
import os
import pwd

from processes import BenchError, child_pids, free_port, wait_for_http

# Image repository in the upstream. Outpost reaches it under its remote name.
REPOSITORY = "bench/app"
OUTPOST_REMOTE = "upstream"
# Long enough that every GET by tag in a run is served within the tag's time-to-live.
OUTPOST_TAG_TTL = "1h"


class Target:
    """A server that the scenarios send requests to, and how its URLs are built."""

    def __init__(self, name, port, process, repository_prefix, serves_tags=True):
        self.name = name
        self.port = port
        self.process = process
        self.repository_prefix = repository_prefix
        self.serves_tags = serves_tags

    def blob_path(self, digest):
        return f"/v2/{self.repository_prefix}{REPOSITORY}/blobs/{digest}"

    def manifest_path(self, reference):
        return f"/v2/{self.repository_prefix}{REPOSITORY}/manifests/{reference}"

    def server_pids(self):
        """Return the pids whose CPU time counts for this server: nginx's master and workers."""
        return [self.process.pid] + child_pids(self.process.pid)


def _registry_environment():
    # distribution reads every REGISTRY_* variable as a configuration override.
    return {name: value for name, value in os.environ.items()
            if not name.startswith("REGISTRY_")}


def _start_registry(group, work_dir, name, cpus, remote_url=None):
    folder = os.path.join(work_dir, name)
    os.makedirs(os.path.join(folder, "storage"), exist_ok=True)
    port = free_port()
    config = (
        "version: 0.1\n"
        "log:\n  level: info\n"
        f"storage:\n  filesystem:\n    rootdirectory: {folder}/storage\n"
        "  maintenance:\n    uploadpurging:\n      enabled: false\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    if remote_url is not None:
        config += f"proxy:\n  remoteurl: {remote_url}\n"
    config_path = os.path.join(folder, "config.yml")
    with open(config_path, "w", encoding="utf-8") as config_file:
        config_file.write(config)

    process = group.start(name, ["docker-registry", "serve", config_path],
                          os.path.join(folder, "registry.log"),
                          env=_registry_environment(), cpus=cpus)
    # Another program may have taken the port between free_port() and the bind, and then an
    # HTTP response would come from it. distribution logs this line once it has bound the port.
    wait_for_http(port, "/v2/", process, log_marker=f"listening on 127.0.0.1:{port}")
    return port, process


def start_upstream(group, work_dir, cpus):
    """Start the plain distribution registry that the caches pull from.

    Returns (port, process, the storage root folder that registry_client.store_blob seeds).
    """
    port, process = _start_registry(group, work_dir, "upstream", cpus)
    return port, process, os.path.join(work_dir, "upstream", "storage")


def start_distribution_proxy(group, work_dir, upstream_port, cpus):
    port, process = _start_registry(group, work_dir, "distribution-proxy", cpus,
                                    remote_url=f"http://127.0.0.1:{upstream_port}")
    return Target("distribution-proxy", port, process, repository_prefix="")


def write_outpost_config(folder, port, upstream_port, data_dir, scrub_bytes_per_second=None,
                         disk_budget=None):
    """Write folder/outpost.yaml and return its path.

    Outpost listens on 127.0.0.1:port with one event loop, keeps its data in data_dir and
    serves the upstream as the remote OUTPOST_REMOTE. scrub_bytes_per_second sets
    storage.scrub_bytes_per_second when given, and 0 turns the background scrub off.
    disk_budget, a (budget bytes, high watermark percent, low watermark percent) tuple, sets
    the storage keys of the disk budget when given.
    """
    # One event loop, since the server is pinned to one core and nginx runs one worker.
    storage = f"storage:\n  data_dir: {data_dir}\n"
    if scrub_bytes_per_second is not None:
        storage += f"  scrub_bytes_per_second: {scrub_bytes_per_second}\n"
    if disk_budget is not None:
        budget_bytes, high_percent, low_percent = disk_budget
        storage += (f"  disk_budget_bytes: {budget_bytes}\n"
                    f"  high_watermark_percent: {high_percent}\n"
                    f"  low_watermark_percent: {low_percent}\n")
    config = (
        f"server:\n  listen_host: 127.0.0.1\n  port: {port}\n  loops: 1\n"
        "  shutdown_grace: 2s\n"
        + storage
        + "log:\n  level: info\n"
        f"default_repository: {OUTPOST_REMOTE}\n"
        "remotes:\n"
        f"  - name: {OUTPOST_REMOTE}\n"
        f"    url: http://127.0.0.1:{upstream_port}\n"
        f"    hosts: [\"127.0.0.1:{upstream_port}\"]\n"
        f"    tag_ttl: {OUTPOST_TAG_TTL}\n"
        "    library_prefix: false\n"
    )
    config_path = os.path.join(folder, "outpost.yaml")
    with open(config_path, "w", encoding="utf-8") as config_file:
        config_file.write(config)
    return config_path


def outpost_target(port, process):
    """Return the Target of an Outpost started with a config from write_outpost_config."""
    return Target("outpost", port, process, repository_prefix=f"{OUTPOST_REMOTE}/")


def start_outpost(group, work_dir, binary, upstream_port, cpus):
    folder = os.path.join(work_dir, "outpost")
    os.makedirs(folder, exist_ok=True)
    port = free_port()
    config_path = write_outpost_config(folder, port, upstream_port, os.path.join(folder, "data"))

    process = group.start("outpost", [binary, "serve", "--config", config_path],
                          os.path.join(folder, "outpost.log"), cpus=cpus)
    wait_for_http(port, "/healthz", process)
    return outpost_target(port, process)


def _nginx_user_directive():
    # The master runs as the user who starts the benchmark. Only a root master switches its workers to
    # another user (nobody by default), who could not read the run's private folder.
    if os.geteuid() != 0:
        return ""
    user = pwd.getpwuid(os.geteuid()).pw_name
    group = grp.getgrgid(os.getegid()).gr_name
    return f"user {user} {group};\n"


# The access log format of the WAN hop: method, path, status and body bytes, one request per
# line, read by WanHop.traffic() and WanHop.traffic_under().
_WAN_LOG_FORMAT = "'$request_method $uri $status $body_bytes_sent'"


def _start_nginx(group, work_dir, name, cpus, server_block, http_extra=""):
    """Start an nginx with one worker and one server block; return (port, process, prefix).

    server_block is the body of the server {} block without its listen directive.
    """
    prefix = os.path.join(work_dir, name)
    os.makedirs(prefix, exist_ok=True)
    port = free_port()
    # One worker, since the servers under test are pinned to one core and Outpost runs one
    # event loop.
    config = (
        _nginx_user_directive()
        + "worker_processes 1;\n"
        "daemon off;\n"
        f"pid {prefix}/nginx.pid;\n"
        f"error_log {prefix}/error.log warn;\n"
        "events { worker_connections 4096; }\n"
        "http {\n"
        f"  access_log {prefix}/access.log;\n"
        f"  client_body_temp_path {prefix}/client_body;\n"
        f"  proxy_temp_path {prefix}/proxy;\n"
        f"  fastcgi_temp_path {prefix}/fastcgi;\n"
        f"  uwsgi_temp_path {prefix}/uwsgi;\n"
        f"  scgi_temp_path {prefix}/scgi;\n"
        "  sendfile on;\n"
        "  tcp_nopush on;\n"
        "  keepalive_timeout 60s;\n"
        "  keepalive_requests 1000000;\n"
        "  default_type application/octet-stream;\n"
        + http_extra
        + "  server {\n"
        f"    listen 127.0.0.1:{port};\n"
        + server_block
        + "  }\n"
        "}\n"
    )
    config_path = os.path.join(prefix, "nginx.conf")
    with open(config_path, "w", encoding="utf-8") as config_file:
        config_file.write(config)

    process = group.start(name, ["nginx", "-p", prefix, "-c", config_path,
                                 "-e", f"{prefix}/error.log"],
                          os.path.join(prefix, "stderr.log"), cpus=cpus)
    wait_for_http(port, "/v2/", process)
    if not child_pids(process.pid):
        raise BenchError(f"{name} started no worker; see {prefix}/error.log")
    return port, process, prefix


def start_nginx(group, work_dir, files_dir, cpus):
    """Start nginx serving files_dir/<hex> at /v2/<name>/blobs|manifests/sha256:<hex>."""
    server_block = (
        "    location = /v2/ { return 200 '{}'; }\n"
        '    location ~ "^/v2/.+/(blobs|manifests)/sha256:([0-9a-f]{64})$" {\n'
        f"      alias {files_dir}/$2;\n"
        "    }\n"
    )
    port, process, _ = _start_nginx(group, work_dir, "nginx", cpus, server_block)
    return Target("nginx", port, process, repository_prefix="", serves_tags=False)


class WanHop:
    """An nginx between the proxies and the upstream that caps each connection's rate.

    It plays the WAN link of a branch office. Its access log counts what crossed it.
    """

    def __init__(self, port, process, log_path, rate_bytes_per_s):
        self.port = port
        self.process = process
        self.log_path = log_path
        self.rate_bytes_per_s = rate_bytes_per_s

    def traffic_under(self, path_prefix):
        """Return (requests, body bytes sent) for paths that start with path_prefix so far."""
        requests = body_bytes = 0
        with open(self.log_path, encoding="utf-8", errors="replace") as log_file:
            for line in log_file:
                fields = line.split()
                if len(fields) == 4 and fields[1].startswith(path_prefix):
                    requests += 1
                    body_bytes += int(fields[3])
        return requests, body_bytes

    def gets_under(self, path_prefix):
        """Return (GET requests, their body bytes sent) for paths under path_prefix so far."""
        gets = body_bytes = 0
        with open(self.log_path, encoding="utf-8", errors="replace") as log_file:
            for line in log_file:
                fields = line.split()
                if len(fields) == 4 and fields[0] == "GET" and fields[1].startswith(path_prefix):
                    gets += 1
                    body_bytes += int(fields[3])
        return gets, body_bytes

    def traffic(self, digest):
        """Return (GET requests, HEAD requests, body bytes sent) for blob digest so far."""
        gets = heads = body_bytes = 0
        suffix = "/blobs/" + digest
        with open(self.log_path, encoding="utf-8", errors="replace") as log_file:
            for line in log_file:
                fields = line.split()
                if len(fields) != 4 or not fields[1].endswith(suffix):
                    continue
                if fields[0] == "GET":
                    gets += 1
                elif fields[0] == "HEAD":
                    heads += 1
                body_bytes += int(fields[3])
        return gets, heads, body_bytes


def start_wan_hop(group, work_dir, upstream_port, cpus, rate_bytes_per_s):
    """Start the rate-capped hop in front of the upstream; every proxy under test uses it."""
    log_path = os.path.join(work_dir, "wan", "traffic.log")
    server_block = (
        f"    access_log {log_path} wan;\n"
        "    location / {\n"
        "      proxy_pass http://registry;\n"
        "      proxy_http_version 1.1;\n"
        '      proxy_set_header Connection "";\n'
        f"      proxy_set_header Host 127.0.0.1:{upstream_port};\n"
        # Pass bodies through as they arrive, so that the cap is the only limit.
        "      proxy_buffering off;\n"
        "      proxy_request_buffering off;\n"
        "      client_max_body_size 0;\n"
        f"      limit_rate {rate_bytes_per_s};\n"
        "    }\n"
    )
    http_extra = (
        f"  log_format wan {_WAN_LOG_FORMAT};\n"
        f"  upstream registry {{ server 127.0.0.1:{upstream_port}; keepalive 16; }}\n"
    )
    port, process, _ = _start_nginx(group, work_dir, "wan", cpus, server_block, http_extra)
    return WanHop(port, process, log_path, rate_bytes_per_s)


def start_nginx_cache(group, work_dir, remote_port, cpus, tag_ttl):
    """Start nginx as a caching reverse proxy of the registry at remote_port.

    The configuration is what a team would write for a registry cache. Responses by digest are
    immutable and kept long, and tag responses are kept for tag_ttl (the TTL Outpost gets).
    The key includes the Accept header, because a manifest's form depends on it.
    proxy_cache_lock makes concurrent misses of one URL wait for a single upstream fetch.
    The lock timeouts are raised from their 5 s default so that a slow 200 MiB fill is not
    fetched again by every waiting client.
    """
    prefix = os.path.join(work_dir, "nginx-cache")
    cache_dir = os.path.join(prefix, "cache")
    os.makedirs(cache_dir, exist_ok=True)
    http_extra = (
        f"  proxy_cache_path {cache_dir} levels=1:2 keys_zone=registry:64m "
        "max_size=100g inactive=7d use_temp_path=off;\n"
    )
    proxied = (
        f"      proxy_pass http://127.0.0.1:{remote_port};\n"
        "      proxy_http_version 1.1;\n"
        '      proxy_set_header Connection "";\n'
        "      proxy_cache registry;\n"
        "      proxy_cache_key $request_uri$http_accept;\n"
        "      proxy_cache_lock on;\n"
        "      proxy_cache_lock_timeout 10m;\n"
        "      proxy_cache_lock_age 10m;\n"
        "      proxy_cache_use_stale error timeout updating;\n"
        "      proxy_ignore_headers Cache-Control Expires Set-Cookie;\n"
        "      add_header X-Cache-Status $upstream_cache_status;\n"
    )
    server_block = (
        '    location ~ "^/v2/.+/(blobs|manifests)/sha256:[0-9a-f]{64}$" {\n'
        + proxied
        + "      proxy_cache_valid 200 365d;\n"
        "    }\n"
        "    location /v2/ {\n"
        + proxied
        + f"      proxy_cache_valid 200 {tag_ttl};\n"
        "    }\n"
    )
    port, process, _ = _start_nginx(group, work_dir, "nginx-cache", cpus, server_block,
                                    http_extra)
    return Target("nginx-cache", port, process, repository_prefix="")
