"""One asyncio loop on its own thread, for nats-py (asyncio only) under a threaded library.

The bus thread (``<name>-bus``) owns the NATS connection and everything nats-py
calls back: message callbacks, reconnect callbacks, the bus client's and gateway's
tasks. Other threads reach it only through :meth:`LoopThread.call` (wait for a
coroutine's result) and :meth:`LoopThread.soon` (schedule a plain function).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypedDict, TypeVar
from urllib.parse import urlsplit

from ..errors import ConfigurationError

__all__ = [
    "LoopThread",
    "NatsCredentialsRefused",
    "NatsOptions",
    "NatsUnreachable",
    "connect_backoff",
    "connect_once",
    "nats_connect_kwargs",
    "redact",
    "require_nats",
    "server_list",
]

_T = TypeVar("_T")


def require_nats() -> Any:
    """The ``nats`` package, or one clear sentence on how to get it."""
    try:
        import nats  # noqa: PLC0415 - the optional extra: `subjects` works without it
    except ImportError:  # pragma: no cover - the test extra installs it
        raise ConfigurationError("the bus needs nats-py: pip install 'rxalpaca[nats]'") from None
    return nats


class NatsOptions(TypedDict, total=False):
    """Credentials and TLS for the NATS connection, passed through to nats-py.

    Keys: ``user``/``password``, ``token``, ``nkeys_seed`` (a file), ``user_credentials``
    (a ``.creds`` file), ``tls`` (an ``ssl.SSLContext``; ``tls://`` URLs use one by
    default), ``tls_hostname``, ``name``, ``connect_timeout``, ``reconnect_time_wait``,
    ``max_reconnect_attempts``, ``pending_size``, ``inbox_prefix``, ``dont_randomize``
    (try the servers in the order given: a client that should prefer its nearest
    cluster node lists it first).

    Before the first connection, ``connect_timeout`` (2 s) bounds each server's try
    in a round, and the rounds are ours (:func:`connect_once`, backoff up to 2 s);
    ``reconnect_time_wait`` and ``max_reconnect_attempts`` (forever) govern nats-py's
    reconnects after a connection is lost.
    """

    user: str
    password: str
    token: str
    nkeys_seed: str
    user_credentials: str
    tls: ssl.SSLContext
    tls_hostname: str
    name: str
    connect_timeout: float
    reconnect_time_wait: float
    max_reconnect_attempts: int
    pending_size: int
    inbox_prefix: str
    dont_randomize: bool


_PASS_THROUGH = frozenset(NatsOptions.__annotations__)


def nats_connect_kwargs(servers: str | list[str], options: NatsOptions | None) -> dict[str, Any]:
    """nats-py's ``connect`` arguments: ours, then the user's (checked by name)."""
    opts = dict(options or {})
    unknown = sorted(set(opts) - _PASS_THROUGH)
    if unknown:
        raise ConfigurationError(
            f"unknown NATS option {unknown[0]!r}; known: {', '.join(sorted(_PASS_THROUGH))}"
        )
    kwargs: dict[str, Any] = {
        "servers": [servers] if isinstance(servers, str) else list(servers),
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,  # forever: a bus outage is transient
        "reconnect_time_wait": 0.25,
        "connect_timeout": 2,
    }
    kwargs.update(opts)
    return kwargs


class NatsUnreachable(Exception):
    """Every NATS server of the list failed once; ``__cause__`` is the last failure."""


class NatsCredentialsRefused(Exception):
    """NATS refused the credentials (no retry can fix them); the message is the error's type."""


def is_auth_error(exc: BaseException) -> bool:
    """nats-py's authorization/authentication violations (by name: they vary by version)."""
    text = f"{type(exc).__name__} {exc}".lower()
    return "authorization" in text or "authentication" in text


async def connect_once(
    nc: Any,
    kwargs: dict[str, Any],
    error_cb: Callable[[Exception], Awaitable[None]],
    **callbacks: Any,
) -> None:
    """``nc.connect(**kwargs)``, trying each server once instead of forever.

    With ``max_reconnect_attempts=-1`` (ours: a bus outage is transient) nats-py's
    ``connect()`` never returns while no server answers: it retries inside and tells
    only the error callback. Its caller could then neither tell the user nor back off,
    nor be closed cleanly. So the error callback ends it from the inside (an exception
    raised there leaves ``connect()``): :class:`NatsCredentialsRefused` at an auth
    error, :class:`NatsUnreachable` once each server has failed once — the caller
    reports, backs off and calls again with a new client. Once connected, errors go to
    ``error_cb`` and a lost connection is nats-py's to reconnect, forever.
    """
    servers = max(1, len(kwargs.get("servers") or ()))
    failures = 0
    connected = False

    async def on_error(exc: Exception) -> None:
        nonlocal failures
        if connected:
            await error_cb(exc)
        elif is_auth_error(exc):
            raise NatsCredentialsRefused(type(exc).__name__) from None
        else:
            failures += 1
            if failures >= servers:
                raise NatsUnreachable(f"{type(exc).__name__}: {exc}") from exc

    await nc.connect(**kwargs, error_cb=on_error, **callbacks)
    connected = True


def connect_backoff(attempt: int) -> float:
    """Seconds to wait after the ``attempt``-th (0, 1, …) failed connect.

    Doubling from 0.1 s to a 2 s cap (NATS back is noticed within 2 s), with jitter
    (a fleet started together does not retry in lockstep), never below half.
    """
    cap = min(0.1 * 2.0**attempt, 2.0)
    return random.uniform(cap / 2, cap)  # spreading retries, not secrets


def server_list(servers: list[str]) -> str:
    """The server URLs for a message: without any ``user:password@`` in them."""
    out = []
    for url in servers:
        parts = urlsplit(url if "://" in url else f"nats://{url}")
        host = parts.netloc.rpartition("@")[2]
        out.append(f"{parts.scheme}://{host}")
    return ", ".join(out)


def redact(text: str, kwargs: dict[str, Any]) -> str:
    """``text`` with every credential in the connect arguments masked (URLs' too)."""
    secrets = [kwargs.get(k) for k in ("password", "token")]
    for url in kwargs.get("servers") or ():
        userinfo = urlsplit(url if "://" in url else f"nats://{url}").netloc.rpartition("@")[0]
        secrets.append(userinfo.partition(":")[2] or userinfo)  # user:password, or a token
    for secret in sorted({s for s in secrets if isinstance(s, str) and s}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


class LoopThread:
    """A private asyncio loop on a daemon thread."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=f"{name}-bus", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        # Stopped: let pending tasks finish their cancellation, then close.
        pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.close()

    @property
    def on_loop(self) -> bool:
        """True on the bus thread itself."""
        return threading.current_thread() is self._thread

    def call(self, coro: Coroutine[Any, Any, _T], timeout: float | None = None) -> _T:
        """Run ``coro`` on the loop and wait for its result (never from the loop).

        Raises:
            RuntimeError: the loop has stopped (``coro`` is closed, never run).
        """
        if self.loop.is_closed() or not self._thread.is_alive():
            coro.close()
            raise RuntimeError("the bus thread has stopped")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def soon(self, fn: Callable[..., object], *args: object) -> None:
        """Call ``fn(*args)`` on the loop (any thread; dropped once the loop is closed)."""
        if self.on_loop:
            fn(*args)
            return
        # A closed loop raises: the client is closing, nothing more to do.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(fn, *args)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop and join its thread (idempotent; not from the loop)."""
        if self.loop.is_closed():
            return
        try:
            self.loop.call_soon_threadsafe(self.loop.stop)
        except RuntimeError:
            return
        if not self.on_loop:
            self._thread.join(timeout)
