#!/usr/bin/python3
"""Token issuer for integration tests: the realm of a registry that uses bearer-token auth.

Implements the Docker Registry token protocol as CNCF distribution 2.8.2 consumes it:
  GET  /token?service=S&scope=T:NAME:ACTIONS[&scope=...]   (Basic auth optional)
  POST /token   form: grant_type=password, username, password, service, scope (OAuth2 style)
and responds with an RS256 JSON Web Token whose claims are
  iss = --issuer, aud = service, sub = account, exp/nbf/iat, jti,
  access = [{"type": T, "name": NAME, "actions": [granted actions]}].

The token header carries `kid`, the libtrust fingerprint of the signing key. Distribution
looks the key up by that id among the public keys of its auth.token.rootcertbundle, so the
registry's bundle must contain the certificate of the key given here with --key.

GET /stats returns the request counters as JSON, so that tests can assert how often clients
fetched a token. POST /stats/reset sets them to zero.

It binds 127.0.0.1 only. With --port 0 the kernel picks the port, and the port is written to
--port-file once the socket listens.
"""

import argparse
import base64
import binascii
import hashlib
import json
import os
import secrets
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives import serialization

ALL_ACTIONS = ("pull", "push", "delete", "*")


def libtrust_key_id(public_key):
    """Return the libtrust fingerprint that distribution uses as the `kid` of a key.

    The fingerprint is the SHA-256 of the DER SubjectPublicKeyInfo, cut to 240 bits, in base32
    without padding, split into twelve groups of four characters joined by colons.
    """
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode("ascii").rstrip("=")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


def parse_scope(scope):
    """Split "type:name:actions" into its parts. The name may itself contain colons."""
    first = scope.find(":")
    last = scope.rfind(":")
    if first <= 0 or last == first:
        return None
    actions = [action for action in scope[last + 1 :].split(",") if action]
    return {"type": scope[:first], "name": scope[first + 1 : last], "actions": actions}


class Counters:
    """Request counters shared by the handler threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.token_requests = 0
        self.tokens_issued = 0
        self.rejected = 0
        self.scopes = []

    def snapshot(self):
        with self.lock:
            return {
                "token_requests": self.token_requests,
                "tokens_issued": self.tokens_issued,
                "rejected": self.rejected,
                "scopes": list(self.scopes),
            }


class TokenIssuer:
    """Checks credentials and signs tokens. It keeps no per-request state."""

    def __init__(self, args):
        with open(args.key, "rb") as key_file:
            self.private_key = serialization.load_pem_private_key(key_file.read(), password=None)
        self.key_id = libtrust_key_id(self.private_key.public_key())
        self.issuer = args.issuer
        self.service = args.service
        self.user = args.user
        self.password = args.password
        self.allowed_actions = set(args.allowed_actions.split(","))
        self.expires_in_s = args.expires_in_s
        self.counters = Counters()

    def check_basic(self, header):
        """Return the account for an Authorization header, "" for anonymous, None if invalid."""
        if not header:
            return "" if self.user is None else None
        kind, _, value = header.partition(" ")
        if kind.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(value.strip()).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return self.check_password(user, password)

    def check_password(self, user, password):
        """Return the account for a user and password, or None when they do not match."""
        if self.user is None:
            return user
        if secrets.compare_digest(user, self.user) and secrets.compare_digest(
            password, self.password
        ):
            return user
        return None

    def grant(self, scopes):
        """Return the access claim: each requested scope with the actions this issuer allows."""
        access = []
        for scope in scopes:
            parsed = parse_scope(scope)
            if parsed is None:
                continue
            parsed["actions"] = [a for a in parsed["actions"] if a in self.allowed_actions]
            access.append(parsed)
        return access

    def sign(self, account, access):
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": account,
            "aud": self.service,
            "exp": now + self.expires_in_s,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": access,
        }
        return jwt.encode(claims, self.private_key, algorithm="RS256", headers={"kid": self.key_id})


class Handler(BaseHTTPRequestHandler):
    server_version = "outpost-test-token-issuer/1"

    @property
    def issuer(self):
        return self.server.issuer

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        if url.path == "/stats":
            self.send_json(200, self.issuer.counters.snapshot())
            return
        if url.path != "/token":
            self.send_json(404, {"error": "not found"})
            return
        account = self.issuer.check_basic(self.headers.get("Authorization"))
        self.answer_token(account, query.get("service", [""])[0], query.get("scope", []), False)

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/stats/reset":
            with self.issuer.counters.lock:
                self.issuer.counters.reset()
            self.send_json(200, {})
            return
        if url.path != "/token":
            self.send_json(404, {"error": "not found"})
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
            form = urllib.parse.parse_qs(self.rfile.read(length).decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            self.send_json(400, {"error": "invalid_request"})
            return
        if form.get("grant_type", [""])[0] != "password":
            self.send_json(400, {"error": "unsupported_grant_type"})
            return
        account = self.issuer.check_password(
            form.get("username", [""])[0], form.get("password", [""])[0]
        )
        scopes = " ".join(form.get("scope", [])).split()
        self.answer_token(account, form.get("service", [""])[0], scopes, True)

    def answer_token(self, account, service, scopes, is_oauth):
        counters = self.issuer.counters
        with counters.lock:
            counters.token_requests += 1
            counters.scopes.extend(scopes)

        if account is None:
            with counters.lock:
                counters.rejected += 1
            self.send_json(
                401,
                {"errors": [{"code": "UNAUTHORIZED", "message": "invalid user or password"}]},
                {"WWW-Authenticate": 'Basic realm="outpost-test-token-issuer"'},
            )
            return
        if service != self.issuer.service:
            with counters.lock:
                counters.rejected += 1
            message = f"unknown service {service!r}, expected {self.issuer.service!r}"
            self.send_json(400, {"errors": [{"code": "DENIED", "message": message}]})
            return

        token = self.issuer.sign(account, self.issuer.grant(scopes))
        with counters.lock:
            counters.tokens_issued += 1
        body = {"access_token": token, "expires_in": self.issuer.expires_in_s}
        if is_oauth:
            body["scope"] = " ".join(scopes)
        else:
            body["token"] = token
            body["issued_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.send_json(200, body)

    def send_json(self, status, body, extra_headers=None):
        payload = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (extra_headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format, *args):  # noqa: A002 - name fixed by BaseHTTPRequestHandler
        # The query can carry an account name but never a secret, and the Authorization header
        # is not logged.
        sys.stderr.write("token issuer: %s\n" % (format % args))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1, or 0 to let the kernel pick one")
    parser.add_argument("--port-file", help="file that receives the bound port once listening")
    parser.add_argument("--key", required=True, help="PEM RSA private key that signs tokens")
    parser.add_argument("--issuer", required=True, help="value of the iss claim")
    parser.add_argument("--service", required=True, help="accepted service, the aud claim")
    parser.add_argument("--user", help="required Basic user (default: none, anyone gets a token)")
    parser.add_argument("--password", default="", help="password of --user")
    parser.add_argument(
        "--allowed-actions",
        default=",".join(ALL_ACTIONS),
        help="comma-separated actions granted when requested (default: all)",
    )
    parser.add_argument(
        "--expires-in-s", type=int, default=300, help="token lifetime in seconds (default: 300)"
    )
    return parser.parse_args()


def main():
    args = parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.issuer = TokenIssuer(args)
    port = server.server_address[1]
    if args.port_file:
        # Write then rename, so that a reader never sees a partial number.
        partial = args.port_file + ".partial"
        with open(partial, "w") as port_file:
            port_file.write(f"{port}\n")
        os.replace(partial, args.port_file)
    sys.stderr.write(f"token issuer listening on 127.0.0.1:{port} kid={server.issuer.key_id}\n")
    sys.stderr.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
