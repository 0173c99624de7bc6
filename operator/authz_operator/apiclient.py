"""HTTPS to the API server with `credentials.Credentials`: TLS, the bearer token, and a pool
of keep-alive connections shared by the reconcile threads. Bytes in, status and bytes out;
`kube` builds the paths and bodies.

urllib3 (what the official client used underneath) keeps the connections; the official
client itself is not imported: its modules cost the operator about 20 MiB (issue 11).
"""

from __future__ import annotations

import logging
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import urllib3

from authz_operator.credentials import Credentials

log = logging.getLogger("authz_operator.apiclient")

TIMEOUT = urllib3.Timeout(connect=5.0, read=30.0)
POOL_SIZE = 16            # connections kept: more than the reconcile threads
TOKEN_REREAD = 60.0       # seconds; the kubelet rotates a pod's token well before it expires


class ConnectionFailed(Exception):
    """No answer from the API server (refused, reset, timed out, TLS)."""


def tls_context(creds: Credentials) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=creds.ca_file, cadata=creds.ca_data)
    if creds.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if creds.cert_file or creds.cert_data:
        with tempfile.TemporaryDirectory() as folder:   # the ssl module reads only files
            cert = creds.cert_file or _private_file(Path(folder, "cert.pem"), creds.cert_data)
            key = creds.key_file or _private_file(Path(folder, "key.pem"), creds.key_data)
            context.load_cert_chain(cert, key)
    return context


def _private_file(path: Path, data: bytes | None) -> str:
    path.touch(mode=0o600)
    path.write_bytes(data or b"")
    return str(path)


class Token:
    """The bearer token: fixed, or read from its file again every `TOKEN_REREAD` seconds."""

    def __init__(self, creds: Credentials,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._fixed, self._file = creds.token, creds.token_file
        self._clock = clock
        self._lock = threading.Lock()
        self._read_at = float("-inf")
        self._value: str | None = None

    def value(self) -> str | None:
        if self._file is None:
            return self._fixed
        with self._lock:
            now = self._clock()
            if now - self._read_at >= TOKEN_REREAD:
                self._value = Path(self._file).read_text(encoding="utf-8").strip() or None
                self._read_at = now
            return self._value


class ApiClient:
    def __init__(self, creds: Credentials) -> None:
        self.server = creds.server
        if creds.insecure:   # said once here, not by urllib3 at every request
            log.warning("insecure-skip-tls-verify: the certificate of %s is not verified",
                        creds.server)
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        self.token = Token(creds)
        # The context alone decides verification: urllib3 takes its verify_mode and, with
        # check_hostname on, leaves the hostname to it.
        self.pool = urllib3.PoolManager(
            num_pools=1, maxsize=POOL_SIZE, ssl_context=tls_context(creds), retries=False,
            timeout=TIMEOUT)

    def send(self, method: str, path: str, query: list[tuple[str, str]],
             body: bytes | None, headers: dict[str, str]) -> tuple[int, bytes]:
        """One request; the status and body whatever the status; ConnectionFailed when the
        API server did not answer."""
        url = self.server + path
        if query:
            url += "?" + urlencode(query)
        try:
            token = self.token.value()   # a token file that vanished: tried again later
            if token:
                headers = {**headers, "Authorization": f"Bearer {token}"}
            response = self.pool.request(method, url, body=body, headers=headers)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ConnectionFailed(str(exc)) from exc
        return response.status, response.data

    def close(self) -> None:
        self.pool.clear()
