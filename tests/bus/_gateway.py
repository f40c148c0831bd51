"""A gateway process for tests/bus/test_processes.py.

Run as ``python tests/bus/_gateway.py '<json config>'``. Config keys: ``nats`` (URL
list), ``feed``, ``prefix``, ``url`` (the embedded Alpaca server), ``heartbeat``,
and ``retention`` (``Retention`` fields, or absent: core NATS only).

stdout, one JSON object a line: ``{"ev": "ready", "id": …}`` once serving, then
``{"ev": "state", "state": …}`` at each upstream transition and ``{"ev": "closed"}``.
SIGTERM (or ``close`` on stdin) closes the gateway.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from typing import Any

from rxalpaca import RetryPolicy
from rxalpaca.bus import Gateway, Retention
from rxalpaca.testing import DEFAULT_KEY, DEFAULT_SECRET

_out_lock = threading.Lock()


def emit(**event: Any) -> None:
    with _out_lock:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()


def main() -> None:
    cfg = json.loads(sys.argv[1])
    retention = Retention(**cfg["retention"]) if cfg.get("retention") else None
    gateway = Gateway(
        cfg["nats"],
        cfg.get("feed", "iex"),
        prefix=cfg["prefix"],
        heartbeat=cfg.get("heartbeat", 0.3),
        retention=retention,
        nats_options={"reconnect_time_wait": 0.1},
        url=cfg["url"],
        key=DEFAULT_KEY,
        secret=DEFAULT_SECRET,
        retry=RetryPolicy(initial_delay=0.02, max_delay=0.2),
        ping_interval=None,
    )
    gateway.start()
    gateway.client.state.subscribe(lambda s: emit(ev="state", state=s.value))
    emit(ev="ready", id=gateway.id)

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())

    def commands() -> None:
        for line in sys.stdin:
            if line.strip() == "close":
                break
        done.set()

    threading.Thread(target=commands, daemon=True).start()
    while not done.wait(0.5):  # a wait the signal handler can interrupt
        pass
    gateway.close()
    emit(ev="closed")


if __name__ == "__main__":
    main()
