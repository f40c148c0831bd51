"""rxalpaca's operators — and every reactivex operator, so one ``ops`` serves both.

Each operator is a function of its parameters returning a function from
Observable to Observable, usable in ``.pipe(...)``. The pipeline the client
builds is, in order::

    frames$ ─► reassemble() ─► validate() ─► decode(codec) ─► meter(metrics) ─► route(router)

(fused into one hop by ``pipeline(...)`` on the hot path), and around the
connection ``retry_with_backoff(policy)``. ``throttle``, ``conflate`` and
``bounded_buffer`` are for users' own pipelines; ``to_frames`` windows records into DataFrames.

Example::

    from rxalpaca import StreamClient, ops
    client = StreamClient(feed="iex")
    client.quotes("AAPL").pipe(ops.throttle(0.5), ops.map(lambda q: q.ask_price)).subscribe(print)

The five pipeline operators are each one *stage* (``_stage.py``: ``on_next`` plus an
optional flush at completion) lifted into an operator; ``pipeline`` fuses the very same
stages. The routing table they deliver through is :class:`~rxalpaca.router.Router`
(sans-I/O, re-exported here), and a decoded frame is a :class:`~rxalpaca.frames.Batch`
(also re-exported).

Callbacks you pass (``key``, ``on_conflated``, ``on_overflow``, ``reset_on``,
``on_retry``, a ``RetryPolicy`` subclass's methods) are wrapped as in RxPY: one that
raises ends the stream with that exception as ``on_error`` and lets go of the source.

``throttle``, ``conflate``, ``record`` (with :mod:`rxalpaca.recording` and zlib) and
``to_frames`` import their modules on first call: a client that does not use them does
not load them (docs/benchmarks.md, issue #12 "Memory").

Threading: the socket thread runs ``reassemble`` through ``route`` and, by
default, every observer. ``throttle`` emits trailing items from timer threads;
``conflate`` and ``bounded_buffer`` hand items to a scheduler of your choice.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from reactivex import Observable, abc, typing

if TYPE_CHECKING:  # at run time ``__getattr__`` below imports them on first use
    from reactivex.operators import *  # noqa: F403 - the facade re-exports reactivex's operators
    from reactivex.operators import __all__ as _rx_all

    from ..recording import Recorder, RecordingHeader
    from ._frames import FrameLibrary

from ..codec import Codec, Decoded
from ..errors import BufferOverflow as BufferOverflow  # re-exported (__all__ is dynamic)
from ..errors import FrameError
from ..frames import DEFAULT_MAX_MESSAGE_BYTES, Batch, Frame
from ..metrics import Metrics
from ..router import Router
from ._buffer import OverflowPolicy, bounded_buffer_
from ._decode import decode_
from ._loop import on_loop as on_loop  # re-exported
from ._meter import meter_
from ._pipeline import pipeline_
from ._reassemble import reassemble_
from ._retry import RetryPolicy, retry_with_backoff_
from ._route import route_
from ._validate import validate_

_T = TypeVar("_T")


def reassemble(
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> Callable[[Observable[Frame | FrameError]], Observable[Frame | FrameError]]:
    """Join continuation frames into whole messages (RFC 6455 §5.4; protocol §6).

    ::

        frames:  --T(fin=0)--C(fin=0)--C(fin=1)--T--|
                   reassemble()
        out:     -----------------------TCC------T--|

    A continuation without a start, a message interrupted by another, a message
    over ``max_message_bytes``, or one left unfinished when the source completes
    becomes a :class:`~rxalpaca.errors.FrameError` value (memory stays bounded: an
    oversized message is discarded as it arrives).

    Args:
        max_message_bytes: the largest message kept.

    Returns:
        An operator from ``Observable[Frame]`` to ``Observable[Frame | FrameError]``.
    """
    return reassemble_(max_message_bytes)


def validate(
    max_message_bytes: int | None = None,
) -> Callable[[Observable[Frame | FrameError]], Observable[Frame | FrameError]]:
    """Turn frames that cannot hold messages into ``FrameError`` values.

    Drops control frames; rejects zero-byte frames, unfinished fragments, oversized
    frames and frames that do not start like a JSON or MessagePack array (§6). An empty
    array (``[]``) is a valid frame with nothing in it: it passes, and decodes to nothing.

    ::

        in:   --F1--F("hello")--F2--|
                validate()
        out:  --F1--E-----------F2--|

    Args:
        max_message_bytes: an optional cap on a frame's size.
    """
    return validate_(max_message_bytes)


def decode(codec: Codec) -> Callable[[Observable[Frame | FrameError]], Observable[Batch[Decoded]]]:
    """Decode each frame into a :class:`Batch` of typed records (one batch per frame).

    ``FrameError`` values pass through as one-item failed batches. Decoding never
    raises: bad messages become ``FrameError`` items beside the good records.

    Args:
        codec: a :class:`~rxalpaca.codec.Codec` for the endpoint's family and encoding.
    """
    return decode_(codec)


def meter(metrics: Metrics) -> Callable[[Observable[Batch[Decoded]]], Observable[Batch[Decoded]]]:
    """Count frames, bytes, decode failures and messages by type; pass batches on.

    Args:
        metrics: the counters to update (written on the calling thread only).
    """
    return meter_(metrics)


def route(router: Router) -> Callable[[Observable[Batch[Decoded]]], Observable[Decoded]]:
    """Deliver data records to their (channel, symbol) observers; emit everything else.

    ``router`` is the routing table (:class:`~rxalpaca.router.Router`); this operator
    times the observers and keeps the data clock. One dictionary lookup per message,
    whatever the number of subscriptions. An observer that raises is reported through
    the router's ``on_handler_error`` and the other observers still get the record.
    Control messages, ``Unknown`` and ``FrameError`` values are emitted downstream,
    one by one.

    ::

        batches: --[q(AAPL), success]--[t(MSFT)]--|
                   route(router)      (q → AAPL quote observers, t → MSFT trade observers)
        out:     --success------------------------|
    """
    return route_(router)


def pipeline(
    codec: Codec,
    metrics: Metrics,
    router: Router,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> Callable[[Observable[Frame | FrameError]], Observable[Decoded]]:
    """``reassemble → validate → decode → meter → route`` fused into one operator.

    The very stages the five operators run, wired the same way (completion flushes
    each stage in order, so a message cut off by the end is reported as a
    ``FrameError`` here too), without an Rx hop between them; the client uses it on
    the hot path.

    ::

        frames$.pipe(ops.pipeline(codec, metrics, router))
        # ≡ frames$.pipe(ops.reassemble(), ops.validate(), ops.decode(codec),
        #                ops.meter(metrics), ops.route(router))
    """
    return pipeline_(codec, metrics, router, max_message_bytes)


def record(
    target: str | os.PathLike[str] | Recorder,
    header: RecordingHeader | None = None,
    **options: Any,
) -> Callable[[Observable[Frame | FrameError]], Observable[Frame | FrameError]]:
    """Write every raw frame that passes to a recording; the frames go on unchanged.

    For a raw frame stream of your own (``client.frames`` or a transport's);
    ``client.record(path)`` also records sent frames, states and gaps. ``target`` is a
    path (a :class:`~rxalpaca.recording.Recorder` is opened per subscription and
    closed when it ends) or a recorder of yours (left open). Writing happens on the
    recorder's thread: the frames' thread only appends to its bounded queue.

    ::

        client.frames.pipe(ops.record("raw.rxa", RecordingHeader(feed="iex"))).subscribe()

    Args:
        target: a file path or a :class:`~rxalpaca.recording.Recorder`.
        header: feed and encoding of the frames (with a path); replay needs them.
        options: for the :class:`~rxalpaca.recording.Recorder` (rotation, queue size …).
    """
    from ._record import record_  # noqa: PLC0415 - on first use (docstring)

    return record_(target, header, options)


def retry_with_backoff(
    policy: RetryPolicy | None = None,
    scheduler: abc.SchedulerBase | None = None,
    *,
    reset_on: Callable[[Any], bool] | None = None,
    on_retry: Callable[[BaseException, int, float], None] | None = None,
) -> Callable[[Observable[_T]], Observable[_T]]:
    """Resubscribe after a transient error, waiting with exponential back-off and full jitter.

    Fatal errors (401, 402, 409, 410, 411, 412, bad configuration) and non-network
    exceptions go straight to the observer; 406 waits ten times longer; 404, 407,
    500 and network errors retry. The attempt count lives in each subscription and
    resets when an item passes ``reset_on`` (default: any item).

    ::

        source:  --a--#            (# = ConnectionLostError)
        retry:   --a-----(wait)--a--b--|

    Args:
        policy: delays and limits (:class:`RetryPolicy`).
        scheduler: where waits are scheduled (virtual time in tests).
        reset_on: which items prove the source healthy again.
        on_retry: called as ``(error, attempt, delay_seconds)`` before each wait.

    If ``reset_on``, ``on_retry`` or the policy raises, the stream ends with that
    exception (no further try) and the source is let go.
    """
    return retry_with_backoff_(policy, scheduler, reset_on=reset_on, on_retry=on_retry)


def throttle(
    interval: typing.RelativeTime,
    key: Callable[[Any], Hashable] | None = None,
    scheduler: abc.SchedulerBase | None = None,
    *,
    metrics: Metrics | None = None,
) -> Callable[[Observable[_T]], Observable[_T]]:
    """At most one item per ``interval`` per key; the latest is never lost (trailing edge).

    The first item of a quiet key goes out at once; items arriving within the
    window replace each other and the last one goes out when the window ends.

    ::

        source:  -a-b-c---------d-|      (interval = 4 ticks)
                  throttle(4)
        out:     -a---c---------d-|

    Args:
        interval: seconds (or a ``timedelta``).
        key: throttle each key separately, e.g. ``lambda q: q.symbol``; if it raises,
            the stream ends with that error and the source is let go.
        scheduler: where window timers run.
        metrics: count what is let go in these metrics' ``messages_discarded``
            (reason ``throttled``); default: the client whose pipeline feeds this operator
            on its thread — the socket thread, unless you moved the items before.
    """
    from ._throttle import throttle_  # noqa: PLC0415 - on first use (docstring)

    return throttle_(interval, key, scheduler, metrics)


def conflate(
    key: Callable[[Any], Hashable] | None = None,
    scheduler: abc.SchedulerBase | None = None,
    on_conflated: Callable[[int], None] | None = None,
    *,
    metrics: Metrics | None = None,
) -> Callable[[Observable[_T]], Observable[_T]]:
    """Deliver on ``scheduler``'s thread, keeping only the latest item per key while busy.

    For slow observers: the socket thread only stores the item; the observer sees
    the newest value of each key as soon as it is free.

    ::

        source:   -a1-a2-b1-a3---|        (observer busy until after a3)
                   conflate(key=symbol)
        observer: -a1--------b1,a3-|

    Args:
        key: e.g. ``lambda q: q.symbol`` (default: one key, i.e. "latest only").
        scheduler: the consumer's scheduler (default: a shared thread pool).
        on_conflated: called on the producer's thread with the running count of
            replaced items.
        metrics: count what is let go in these metrics' ``messages_discarded``
            (reason ``conflated``); default: the client whose pipeline feeds this operator
            on its thread — the socket thread, unless you moved the items before.

    If ``key`` or ``on_conflated`` raises, the stream ends with that error (after the
    items already pending) and the source is let go.
    """
    from ._conflate import conflate_  # noqa: PLC0415 - on first use (docstring)

    return conflate_(key, scheduler, on_conflated, metrics)


def bounded_buffer(
    size: int,
    overflow: OverflowPolicy = "drop_oldest",
    scheduler: abc.SchedulerBase | None = None,
    on_overflow: Callable[[int], None] | None = None,
    *,
    metrics: Metrics | None = None,
) -> Callable[[Observable[_T]], Observable[_T]]:
    """Deliver on ``scheduler``'s thread through a queue of at most ``size`` items.

    For slow observers that must see items in order (``conflate`` keeps only the
    latest per key). Items leave in arrival order, none twice; an error or completion
    comes after the items queued before it; disposing stops the delivery at once and
    drops what is queued. When the queue is full, ``overflow`` decides::

        source:       -a-b-c-d-e-|        (size=2; the observer is busy with a until after e)
                       bounded_buffer(2, overflow)
        drop_oldest:  -a--------d-e-|     (b, c evicted: on_overflow(1), on_overflow(2))
        drop_newest:  -a--------b-c-|     (d, e dropped)
        block:        -a--------b-c-d-e-| (the producer waited at d and at e)
        error:        -a--------b-c-#     (# = BufferOverflow at d; the source is let go)

    ``"block"`` makes the producer wait for room. On a client's stream the producer
    is the socket thread: while it waits the socket is not read, and a server that
    stays behind disconnects the client (``407 slow client``, then a reconnect).
    Disposing (or an observer that raises) frees a waiting producer. ``block`` never
    waits on the consumer's own thread (an observer feeding its own source, or a
    same-thread scheduler such as virtual time): a full queue then ends the stream
    with :class:`BufferOverflow` rather than deadlocking — or silently dropping,
    which ``block`` promises not to do.

    Example::

        client.trades("AAPL").pipe(
            ops.bounded_buffer(10_000, "drop_oldest", on_overflow=report_dropped),
        ).subscribe(write_to_database)

    Args:
        size: the queue's capacity, in items (at least 1).
        overflow: ``"drop_oldest"`` (default), ``"drop_newest"``, ``"block"`` or ``"error"``.
        scheduler: the consumer's scheduler (default: the thread pool ``conflate`` uses).
        on_overflow: called on the producer's thread with the running count of dropped
            items (drop policies); if it raises, the stream ends with that error.
        metrics: count what is let go in these metrics' ``messages_discarded``
            (reason ``buffer_overflow``); default: the client whose pipeline feeds this operator
            on its thread — the socket thread, unless you moved the items before.

    Raises:
        ValueError: ``size`` is not a positive int or ``overflow`` is not a policy.
    """
    return bounded_buffer_(size, overflow, scheduler, on_overflow, metrics)


def to_frames(
    timespan: float | timedelta | None = None,
    count: int | None = None,
    *,
    library: FrameLibrary = "pandas",
    scheduler: abc.SchedulerBase | None = None,
) -> Callable[[Observable[Any]], Observable[Any]]:
    """Window a stream of records into DataFrames: one frame per ``timespan`` seconds,
    per ``count`` records, or whichever comes first when both are given.

    Each frame is :func:`rxalpaca.dataframes.to_pandas` of the window (``library="polars"``:
    ``to_polars``): one row per record, exact ns timestamps. Empty windows are skipped.
    One stream, one record type: a window mixing types ends the stream with a
    :class:`~rxalpaca.errors.ConfigurationError` (use one ``to_frames`` per stream).

    ::

        source:  -q1-q2-q3-q4-q5-|
                  to_frames(count=2)
        out:     ----[q1,q2]--[q3,q4]-[q5]|      (each a DataFrame of 2, 2 and 1 rows)

    Example::

        client.quotes("AAPL").pipe(ops.to_frames(timespan=1.0)).subscribe(
            lambda df: print(df["bid_price"].mean())
        )

    Args:
        timespan: seconds (or a ``timedelta``) per window.
        count: records per window.
        library: ``"pandas"`` (``rxalpaca[pandas]``) or ``"polars"`` (``rxalpaca[polars]``).
        scheduler: the windows' timers (a replay's ``scheduler`` for virtual time).

    Raises:
        ConfigurationError: neither ``timespan`` nor ``count``, a non-positive one, an
            unknown ``library``, or the library is not installed.
    """
    from ._frames import to_frames_  # noqa: PLC0415 - on first use (docstring)

    return to_frames_(timespan, count, library, scheduler)


__all__ = [
    "Batch",
    "BufferOverflow",
    "RetryPolicy",
    "Router",
    "bounded_buffer",
    "conflate",
    "decode",
    "meter",
    "on_loop",
    "pipeline",
    "reassemble",
    "record",
    "retry_with_backoff",
    "route",
    "throttle",
    "to_frames",
    "validate",
]

if TYPE_CHECKING:
    __all__ += _rx_all  # noqa: PLE0605 - reactivex's names are strings too
else:
    _OWN_ALL = __all__
    del __all__  # served by __getattr__, with reactivex's names, on first use

    def __getattr__(name: str) -> Any:
        """reactivex's operators (and ``__all__``, which lists them), imported on first use.

        PEP 562: ``reactivex.operators`` (150 functions with their docstrings, ~0.5 MB) is
        loaded only when a program asks for one of its operators through this facade, not
        by every client (docs/benchmarks.md, "Memory"). The name is then bound here, so
        later reads are plain attribute reads. Our own operators are module attributes and
        are never looked up here (they win over reactivex's, as with a star import).
        """
        if name.startswith("__") and name != "__all__":
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        import reactivex.operators as rx_operators  # noqa: PLC0415 - the point: on first use

        if name == "__all__":
            value: Any = [*_OWN_ALL, *rx_operators.__all__]
        elif name in rx_operators.__all__:
            value = getattr(rx_operators, name)
        else:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__getattr__("__all__")})
