"""Plain HTTP calls to the registries of a run: seed the upstream, fetch and verify bodies.

Every connection goes to 127.0.0.1. A Location header is followed by its path and query
only, so an absolute URL naming another host cannot send a request off the machine.
"""

import hashlib
import http.client
import json
import os
import shutil
import urllib.parse

from processes import BenchError

OCI_MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"
MANIFEST_ACCEPT = f"{OCI_MANIFEST_TYPE}, application/vnd.docker.distribution.manifest.v2+json"


def sha256_digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def request(port, method, path, body=None, headers=None, timeout_s=60):
    """Send one request to 127.0.0.1:port and return (status, headers dict, body bytes)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        response_body = response.read()
        response_headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, response_headers, response_body
    except (http.client.HTTPException, OSError) as error:
        raise BenchError(f"{method} 127.0.0.1:{port}{path} failed: {error}") from error
    finally:
        connection.close()


def _path_of_location(location):
    parsed = urllib.parse.urlsplit(location)
    return parsed.path + ("?" + parsed.query if parsed.query else "")


def push_blob(port, repository, data):
    """Upload data to repository with POST then a single PUT, and return its digest."""
    digest = sha256_digest(data)
    status, headers, body = request(port, "POST", f"/v2/{repository}/blobs/uploads/",
                                    headers={"Content-Length": "0"})
    if status != 202 or "location" not in headers:
        raise BenchError(f"starting an upload to {repository} returned {status}: {body[:200]!r}")

    upload_path = _path_of_location(headers["location"])
    separator = "&" if "?" in upload_path else "?"
    put_path = f"{upload_path}{separator}digest={urllib.parse.quote(digest)}"
    status, _, body = request(port, "PUT", put_path, body=data,
                              headers={"Content-Type": "application/octet-stream"})
    if status != 201:
        raise BenchError(f"uploading blob {digest} to {repository} returned {status}: "
                         f"{body[:200]!r}")
    return digest


def store_blob(storage_root, repository, data):
    """Write data into a stopped or running distribution's filesystem storage; return its digest.

    This is the layout distribution 2.8 keeps under its rootdirectory: the bytes in
    blobs/sha256/<2 hex>/<hex>/data and, per repository, a link file naming the digest. A
    GET or HEAD of the blob through the registry then finds it, as if it had been pushed.
    Seeding large blobs this way takes a file write instead of an upload that distribution
    stores and hashes again, which kept a full run's seeding at minutes.
    """
    digest = sha256_digest(data)
    hex_digest = digest.split(":")[1]
    base = os.path.join(storage_root, "docker", "registry", "v2")
    blob_dir = os.path.join(base, "blobs", "sha256", hex_digest[:2], hex_digest)
    os.makedirs(blob_dir, exist_ok=True)
    temporary = os.path.join(blob_dir, "data.partial")
    with open(temporary, "wb") as blob_file:
        blob_file.write(data)
    os.replace(temporary, os.path.join(blob_dir, "data"))

    link_dir = os.path.join(base, "repositories", repository, "_layers", "sha256", hex_digest)
    os.makedirs(link_dir, exist_ok=True)
    with open(os.path.join(link_dir, "link"), "w", encoding="ascii") as link_file:
        link_file.write(digest)
    return digest


def remove_stored_blob(storage_root, repository, digest):
    """Delete a blob that store_blob wrote, with its link in repository."""
    hex_digest = digest.split(":")[1]
    base = os.path.join(storage_root, "docker", "registry", "v2")
    shutil.rmtree(os.path.join(base, "blobs", "sha256", hex_digest[:2], hex_digest))
    shutil.rmtree(os.path.join(base, "repositories", repository, "_layers", "sha256", hex_digest))


def push_image(port, repository, tag, layers):
    """Push a config blob, the given layer blobs and an OCI manifest under tag.

    Returns (manifest digest, manifest bytes). The layers must already be pushed and are
    given as (digest, size) pairs.
    """
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers",
                                    "diff_ids": [digest for digest, _ in layers]}}).encode()
    config_digest = push_blob(port, repository, config)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST_TYPE,
        "config": {"mediaType": OCI_CONFIG_TYPE, "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER_TYPE, "digest": digest, "size": size}
                   for digest, size in layers],
    }, indent=2).encode()
    status, _, body = request(port, "PUT", f"/v2/{repository}/manifests/{tag}", body=manifest,
                              headers={"Content-Type": OCI_MANIFEST_TYPE})
    if status != 201:
        raise BenchError(f"pushing manifest {repository}:{tag} returned {status}: {body[:200]!r}")
    return sha256_digest(manifest), manifest


def fetch_and_verify(port, path, expected_digest, headers=None):
    """GET path and raise BenchError unless the status is 200 and the body has the digest."""
    status, _, body = request(port, "GET", path, headers=headers)
    if status != 200:
        raise BenchError(f"GET 127.0.0.1:{port}{path} returned {status}: {body[:200]!r}")
    actual = sha256_digest(body)
    if actual != expected_digest:
        raise BenchError(f"GET 127.0.0.1:{port}{path} returned a body with digest {actual}, "
                         f"expected {expected_digest}")
