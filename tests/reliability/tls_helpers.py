"""TLS for the security suite: a private CA made with the ``openssl`` CLI, and a TLS proxy.

``AlpacaStreamServer`` speaks plain ``ws://`` only (its ``serve()`` call takes no SSL
context), so :class:`TlsProxy` terminates TLS on 127.0.0.1 and relays the bytes to
it: the client sees a real ``wss://`` server with the certificate we choose, and
behind it the full Alpaca protocol. The proxy counts TCP connections and TLS
handshakes, so a test can tell whether the client retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

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
    """TLS on ``127.0.0.1:<port>`` in front of a plain TCP server (its own thread and loop).

    Attributes:
        accepted: TCP connections accepted.
        handshakes_ok / handshakes_failed: TLS handshakes that succeeded / failed.
    """

    def __init__(self, upstream_port: int, certfile: Path, keyfile: Path) -> None:
        self.upstream_port = upstream_port
        self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ctx.load_cert_chain(certfile, keyfile)
        self.accepted = 0
        self.handshakes_ok = 0
        self.handshakes_failed = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tls-proxy",
                                        daemon=True)  # fmt: skip
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.changed = threading.Condition()

    def start(self) -> TlsProxy:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        fut.result(5)
        return self

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def _bump(self, attr: str) -> None:
        with self.changed:
            setattr(self, attr, getattr(self, attr) + 1)
            self.changed.notify_all()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self._bump("accepted")
        up_writer: asyncio.StreamWriter | None = None
        try:
            try:
                await asyncio.wait_for(writer.start_tls(self._ctx), 5)
            except (OSError, ssl.SSLError, TimeoutError, ConnectionError):
                self._bump("handshakes_failed")
                return
            self._bump("handshakes_ok")
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            self._writers.add(up_writer)
            await asyncio.gather(
                self._pipe(reader, up_writer), self._pipe(up_reader, writer),
                return_exceptions=True,
            )  # fmt: skip
        except Exception:
            pass
        finally:
            for w in (writer, up_writer):
                if w is not None:
                    self._writers.discard(w)
                    w.close()
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(w.wait_closed(), 0.5)
            self._tasks.discard(task)

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        finally:
            with contextlib.suppress(Exception):
                if dst.can_write_eof():
                    dst.write_eof()
            dst.close()

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for w in list(self._writers):
                w.close()
            for t in list(self._tasks):
                t.cancel()
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=1)
            if self._server is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._server.wait_closed(), 1)

        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> TlsProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
