"""A consumer process for tests/bus/test_processes.py: a BusClient that reports on stdout.

Run as ``python tests/bus/_consumer.py '<json config>'``. Config keys: ``nats`` (URL
list, tried in order), ``feed``, ``prefix``, ``lease``, ``subs`` (``[[channel,
[symbols…]], …]``), and optionally ``durable``, ``pending_limit``, ``slow`` (seconds
each record's handler takes: a slow strategy).

Every line on stdout is one JSON object, ``ev`` says what:

* ``state`` — a state transition (``state``, and ``server``: the NATS URL in use);
* ``rec`` — a record: ``ch``, ``S``, ``t`` (exchange time, ns), ``i`` (trade id);
* ``gap`` — a :class:`~rxalpaca.models.Gap` (``reason``, ``channels``, ``symbols``,
  ``last``, ``first``);
* ``error`` — something on ``errors`` (``type``, ``msg``);
* ``disposed`` / ``closed`` — answers to the commands below.

Commands, one per line on stdin: ``dispose`` (drop every subscription, the client
stays), ``close`` (close the client and exit). SIGTERM closes too.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from typing import Any

from rxalpaca.bus import BusClient
from rxalpaca.models import Gap, MarketRecord

_out_lock = threading.Lock()


def emit(**event: Any) -> None:
    line = json.dumps(event, separators=(",", ":"))
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def main() -> None:
    cfg = json.loads(sys.argv[1])
    options: dict[str, Any] = {
        "prefix": cfg["prefix"],
        "lease": cfg.get("lease", 2.0),
        "name": "consumer",
        # The order given is the order tried: a consumer "on node 2" connects there first.
        "nats_options": {"dont_randomize": True, "reconnect_time_wait": 0.1},
    }
    if cfg.get("durable"):
        options["durable"] = cfg["durable"]
    if cfg.get("pending_limit"):
        options["pending_limit"] = cfg["pending_limit"]
    client: BusClient[Any, Any, Any, Any, Any] = BusClient(
        cfg["nats"], cfg.get("feed", "iex"), **options
    )
    slow = float(cfg.get("slow", 0.0))

    def server() -> str | None:
        nc = client._nc
        return str(nc.connected_url.geturl()) if nc is not None and nc.connected_url else None

    def on_record(r: MarketRecord) -> None:
        if slow:
            time.sleep(slow)  # a handler that cannot keep up
        emit(ev="rec", ch=r.CHANNEL, S=r.symbol, t=r.timestamp_ns, i=getattr(r, "id", 0))

    def on_gap(g: Gap) -> None:
        emit(
            ev="gap",
            reason=g.reason,
            channels=list(g.channels),
            symbols=list(g.symbols),
            last=g.last_before_ns,
            first=g.first_after_ns,
        )

    client.state.subscribe(lambda s: emit(ev="state", state=s.value, server=server()))
    client.errors.subscribe(lambda e: emit(ev="error", type=type(e).__name__, msg=str(e)[:200]))
    client.gaps.subscribe(on_gap)
    subs = []
    for channel, symbols in cfg["subs"]:
        stream = getattr(client, channel)(*symbols)
        subs.append(stream.subscribe(on_record, lambda e: emit(ev="error", type="end", msg=str(e))))

    done = threading.Event()

    def close(*_: object) -> None:
        done.set()

    signal.signal(signal.SIGTERM, close)

    def commands() -> None:
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == "dispose":
                for s in subs:
                    s.dispose()
                emit(ev="disposed")
            elif cmd == "close":
                break
        done.set()

    threading.Thread(target=commands, daemon=True).start()
    while not done.wait(0.5):  # a wait the signal handler can interrupt
        pass
    client.close()
    emit(ev="closed")


if __name__ == "__main__":
    main()
