"""TLS for the security suite: a private CA made with the ``openssl`` CLI, and a TLS proxy.

``AlpacaStreamServer`` speaks plain ``ws://`` only (its ``serve()`` call takes no SSL
context), so :class:`TlsProxy` terminates TLS on 127.0.0.1 and relays the bytes to it
(with :class:`tests.relay.DarkRelay`): the client sees a real ``wss://`` server with
the certificate we choose, and behind it the full Alpaca protocol. The proxy counts
TCP connections and TLS handshakes, so a test can tell whether the client retried.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from tests.relay import DarkRelay

__all__ = ["CertSet", "TlsProxy", "have_openssl", "make_certs"]


def have_openssl() -> bool:
    return shutil.which("openssl") is not None


@dataclass(frozen=True)
class CertSet:
    """Paths: the CA to trust, and server certificates (chain + key) for two names."""

    ca: Path
    good_cert: Path  # SAN IP:127.0.0.1, DNS:localhost
    good_key: Path
    wrong_host_cert: Path  # SAN DNS:wrong.example.invalid only, same CA
    wrong_host_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _leaf(directory: Path, name: str, san: str) -> tuple[Path, Path]:
    (directory / f"{name}.ext").write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        f"subjectAltName={san}\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN=rxalpaca test {name}",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-sha256",
        "-extfile", f"{name}.ext",
        cwd=directory,
    )  # fmt: skip
    return directory / f"{name}.pem", directory / f"{name}.key"


def make_certs(directory: Path) -> CertSet:
    """A self-signed CA and two server certificates it signed (about 0.1 s)."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-sha256",
        "-subj", "/CN=rxalpaca test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    good = _leaf(directory, "server", "IP:127.0.0.1,DNS:localhost")
    wrong = _leaf(directory, "wronghost", "DNS:wrong.example.invalid")
    return CertSet(directory / "ca.pem", *good, *wrong)


class TlsProxy:
    """TLS on ``127.0.0.1:<port>`` in front of a plain TCP server.

    Each accepted socket is wrapped in TLS at once, in its own thread
    (``SSLContext.wrap_socket`` then the handshake), and then relayed by
    :class:`tests.relay.DarkRelay`. The TLS object owns the socket from the first
    byte: an asyncio proxy that accepted plain and called ``start_tls`` later lost a
    ClientHello that arrived in between (it sat in the plain reader), and on a busy
    machine the handshake then never started (issue #9, item 12).

    Attributes:
        accepted: TCP connections accepted.
        handshakes_ok / handshakes_failed: TLS handshakes that succeeded / failed.
        changed: a ``threading.Condition`` notified when any of them changes.
    """

    #: A stalled client fails its handshake instead of holding a thread forever.
    HANDSHAKE_TIMEOUT = 10.0

    def __init__(self, upstream_port: int, certfile: Path, keyfile: Path) -> None:
        self.upstream_port = upstream_port
        self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ctx.load_cert_chain(certfile, keyfile)
        self.handshakes_ok = 0
        self.handshakes_failed = 0
        self.port = 0
        self._relay: DarkRelay | None = None
        self.changed = threading.Condition()

    @property
    def accepted(self) -> int:
        return self._relay.connections if self._relay is not None else 0

    def start(self) -> TlsProxy:
        self._relay = DarkRelay("127.0.0.1", self.upstream_port, wrap=self._handshake)
        self.changed = self._relay.changed  # one condition for every counter
        self.port = self._relay.port
        return self

    def _handshake(self, sock: socket.socket) -> socket.socket:
        sock.settimeout(self.HANDSHAKE_TIMEOUT)
        try:
            tls = self._ctx.wrap_socket(sock, server_side=True)  # handshakes here
        except (OSError, ValueError):
            self._bump("handshakes_failed")
            sock.close()
            raise
        tls.settimeout(None)
        self._bump("handshakes_ok")
        return tls

    def _bump(self, attr: str) -> None:
        with self.changed:
            setattr(self, attr, getattr(self, attr) + 1)
            self.changed.notify_all()

    def stop(self) -> None:
        if self._relay is not None:
            self._relay.close()

    def __enter__(self) -> TlsProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
