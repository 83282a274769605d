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
    """Start the plain distribution registry that Outpost and distribution-proxy pull from."""
    return _start_registry(group, work_dir, "upstream", cpus)


def start_distribution_proxy(group, work_dir, upstream_port, cpus):
    port, process = _start_registry(group, work_dir, "distribution-proxy", cpus,
                                    remote_url=f"http://127.0.0.1:{upstream_port}")
    return Target("distribution-proxy", port, process, repository_prefix="")


def start_outpost(group, work_dir, binary, upstream_port, cpus):
    folder = os.path.join(work_dir, "outpost")
    os.makedirs(folder, exist_ok=True)
    port = free_port()
    # One event loop, since the server is pinned to one core and nginx runs one worker.
    config = (
        f"server:\n  listen_host: 127.0.0.1\n  port: {port}\n  loops: 1\n"
        "  shutdown_grace: 2s\n"
        f"storage:\n  data_dir: {folder}/data\n"
        "log:\n  level: info\n"
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

    process = group.start("outpost", [binary, "serve", "--config", config_path],
                          os.path.join(folder, "outpost.log"), cpus=cpus)
    wait_for_http(port, "/healthz", process)
    return Target("outpost", port, process, repository_prefix=f"{OUTPOST_REMOTE}/")


def _nginx_user_directive():
    # The master runs as the user who starts the benchmark. Only a root master switches its workers to
    # another user (nobody by default), who could not read the run's private folder.
    if os.geteuid() != 0:
        return ""
    user = pwd.getpwuid(os.geteuid()).pw_name
    group = grp.getgrgid(os.getegid()).gr_name
    return f"user {user} {group};\n"


def start_nginx(group, work_dir, files_dir, cpus):
    """Start nginx serving files_dir/<hex> at /v2/<name>/blobs|manifests/sha256:<hex>."""
    prefix = os.path.join(work_dir, "nginx")
    os.makedirs(prefix, exist_ok=True)
    port = free_port()
    # One worker, since the server is pinned to one core and Outpost runs one event loop.
    config = (
        _nginx_user_directive()
        + "worker_processes 1;\n"
        "daemon off;\n"
        f"pid {prefix}/nginx.pid;\n"
        f"error_log {prefix}/error.log warn;\n"
        "events { worker_connections 1024; }\n"
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
        "  server {\n"
        f"    listen 127.0.0.1:{port};\n"
        "    location = /v2/ { return 200 '{}'; }\n"
        '    location ~ "^/v2/.+/(blobs|manifests)/sha256:([0-9a-f]{64})$" {\n'
        f"      alias {files_dir}/$2;\n"
        "    }\n"
        "  }\n"
        "}\n"
    )
    config_path = os.path.join(prefix, "nginx.conf")
    with open(config_path, "w", encoding="utf-8") as config_file:
        config_file.write(config)

    process = group.start("nginx", ["nginx", "-p", prefix, "-c", config_path,
                                    "-e", f"{prefix}/error.log"],
                          os.path.join(prefix, "stderr.log"), cpus=cpus)
    wait_for_http(port, "/v2/", process)
    if not child_pids(process.pid):
        raise BenchError(f"nginx started no worker; see {prefix}/error.log")
    return Target("nginx", port, process, repository_prefix="", serves_tags=False)
