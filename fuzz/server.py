"""A real chat-server process, an HTTP client that records every exchange, and user JWTs.

The server is started the way e2e/server.mjs does it: port 0, the first stdout line is the
banner "chat-server listening on http://ADDR".
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import queue
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import requests

BANNER_TIMEOUT_S = 60


class ServerError(RuntimeError):
    pass


class Server:
    """One chat-server process, in memory or on a data dir, with its stderr in a log file."""

    def __init__(self, binary: Path, admin_key: str, log_path: Path, data_dir: Path | None):
        self.binary = binary
        self.admin_key = admin_key
        self.log_path = log_path
        self.data_dir = data_dir
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> None:
        args = [str(self.binary), "--listen", "127.0.0.1:0", "--admin-key", self.admin_key]
        args += ["--data-dir", str(self.data_dir)] if self.data_dir else ["--memory"]
        env = dict(os.environ, RUST_LOG=os.environ.get("CHAT_FUZZ_RUST_LOG", "warn"))
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, env=env
        )
        log.close()
        lines: queue.Queue[bytes] = queue.Queue()

        def drain() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                lines.put(line)

        threading.Thread(target=drain, daemon=True).start()
        try:
            first = lines.get(timeout=BANNER_TIMEOUT_S).decode("utf-8", "replace")
        except queue.Empty:
            self.kill()
            raise ServerError(f"no banner from chat-server within {BANNER_TIMEOUT_S} s")
        prefix = "chat-server listening on "
        if not first.startswith(prefix):
            self.kill()
            raise ServerError(f"unexpected banner: {first!r} (log: {self.log_path})")
        self.url = first[len(prefix) :].strip()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 30) -> int:
        """SIGTERM (a graceful shutdown), SIGKILL after `timeout_s`; the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
                raise ServerError(f"chat-server did not stop within {timeout_s} s of SIGTERM")
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log_text(self) -> str:
        return self.log_path.read_text("utf-8", "replace") if self.log_path.exists() else ""


@dataclass
class Exchange:
    """One request and what came back (status None: no HTTP answer, see `error`)."""

    method: str
    path: str
    headers: dict
    body: bytes
    status: int | None
    response: bytes
    elapsed_s: float
    error: str | None = None

    def json(self):
        return json.loads(self.response)

    def reproducer(self) -> dict:
        """Enough to send the same request again (fuzz/out/failures.jsonl)."""
        try:
            body = {"body_text": self.body.decode("utf-8")}
        except UnicodeDecodeError:
            body = {"body_base64": base64.b64encode(self.body).decode()}
        headers = {
            k: (v.decode("utf-8", "replace") if isinstance(v, bytes) else v)
            for k, v in self.headers.items()
        }
        return {
            "method": self.method,
            "path": self.path,
            "headers": headers,
            **body,
            "status": self.status,
            "elapsed_s": round(self.elapsed_s, 3),
            "error": self.error,
            "response": self.response[:4000].decode("utf-8", "replace"),
        }


class _SourceAddress(requests.adapters.HTTPAdapter):
    """Connects from a given local address (another loopback address, say)."""

    def __init__(self, source: str, **kwargs):
        self.source = source
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.source, 0)
        return super().init_poolmanager(*args, **kwargs)


class Client:
    def __init__(self, url: str, timeout_s: float, source: str | None = None):
        """`source`: the local address to connect from (default: the system's choice)."""
        self.url = url
        self.timeout_s = timeout_s
        self.source = source
        self.session = self._new_session()
        self.stale_retries = 0

    def _new_session(self) -> requests.Session:
        session = requests.Session()
        if self.source:
            adapter = _SourceAddress(self.source)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        return session

    def send(self, method: str, path: str, body: bytes, headers: dict, own_connection: bool = False) -> Exchange:
        """One exchange. `own_connection`: on a connection of its own, closed after it.

        The server may close a kept-alive connection after answering a request whose body
        it did not read (a GET with a body, a body over the limit): HTTP allows it. The next
        request on that pooled connection then fails before the server sees it, so such a
        failure is retried once on a new connection (and counted in `stale_retries`); a
        request that breaks its connection itself breaks the retry too."""
        started = time.monotonic()
        session = self._new_session() if own_connection else self.session
        try:
            try:
                r = self._request(session, method, path, body, headers)
            except requests.ConnectionError:
                if own_connection:
                    raise
                self.stale_retries += 1
                self.session = session = self._new_session()
                r = self._request(session, method, path, body, headers)
            return Exchange(method, path, headers, body, r.status_code, r.content,
                            time.monotonic() - started)
        except requests.RequestException as e:
            # A fresh session: a broken connection must not poison the next request.
            self.session = self._new_session()
            return Exchange(method, path, headers, body, None, b"", time.monotonic() - started,
                            error=f"{type(e).__name__}: {e}")
        finally:
            if own_connection:
                session.close()

    def _request(self, session: requests.Session, method, path, body, headers) -> requests.Response:
        return session.request(method, self.url + path, data=body, headers=headers,
                               timeout=(5, self.timeout_s), allow_redirects=False)

    def graphql(self, authorization, query: str, variables: dict | None = None) -> Exchange:
        headers = {"Content-Type": "application/json"}
        if authorization is not None:
            headers["Authorization"] = authorization
        payload = {"query": query, "variables": variables or {}}
        return self.send("POST", "/graphql", json.dumps(payload).encode(), headers)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_jwt(secret: str, header: dict, claims: dict) -> str:
    """A JWT signed HS256 with `secret`, whatever `header` says (fuzzed headers lie)."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def mint_token(secret: str, app: str, sub: str, role: str, ttl_s: int = 3600) -> str:
    """A user token as an application's backend signs it (claims sub, app, role, exp)."""
    claims = {"sub": sub, "app": app, "role": role, "exp": int(time.time()) + ttl_s}
    return sign_jwt(secret, {"alg": "HS256", "typ": "JWT"}, claims)
