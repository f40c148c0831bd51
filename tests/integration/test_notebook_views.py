"""rxalpaca.notebook: a live view updates its own display handle from another thread.

Through IPython's real display machinery (an InteractiveShell whose display publisher
records what a kernel would send to the front end), against the embedded server.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.displaypub import DisplayPublisher
from IPython.core.interactiveshell import InteractiveShell

from rxalpaca import StreamClient
from rxalpaca.errors import ConfigurationError
from rxalpaca.notebook import live_log, live_table
from rxalpaca.testing import AlpacaStreamServer
from tests.conftest import TIMING_FACTOR

WAIT = 10 * TIMING_FACTOR


class Published:
    """One message a kernel would send: display_data, or update_display_data."""

    def __init__(self, data: dict[str, Any], transient: dict[str, Any] | None, update: bool):
        self.data = data
        self.display_id = (transient or {}).get("display_id")
        self.update = update
        self.thread = threading.current_thread().name

    @property
    def html(self) -> str:
        return str(self.data.get("text/html", ""))


class Recorder(DisplayPublisher):
    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.messages: list[Published] = []
        self._cond = threading.Condition()

    def publish(
        self,
        data: dict[str, Any],
        metadata: Any = None,
        source: Any = None,
        *,
        transient: dict[str, Any] | None = None,
        update: bool = False,
        **kwargs: Any,
    ) -> None:
        with self._cond:
            self.messages.append(Published(data, transient, update))
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[Published], bool]) -> Published:
        with self._cond:
            assert self._cond.wait_for(lambda: any(map(predicate, self.messages)), WAIT), [
                m.html for m in self.messages
            ]
            return next(m for m in self.messages if predicate(m))


@pytest.fixture
def shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path))
    sh = InteractiveShell.instance()
    recorder = Recorder()
    sh.display_pub = recorder
    yield recorder
    InteractiveShell.clear_instance()


def quote(i: int, symbol: str) -> dict[str, Any]:
    return {
        "T": "q",
        "S": symbol,
        "bp": float(i),
        "bs": 1,
        "ap": float(i) + 0.5,
        "as": 1,
        "bx": "V",
        "ax": "V",
        "t": 1_700_000_000_000_000_000 + i,
        "c": ["R"],
        "z": "C",
    }


def test_live_table_updates_its_own_output_from_the_render_thread(
    shell: Recorder,
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
) -> None:
    client = make_client(alpaca_server)
    view = live_table(
        client.quotes("AAPL", "MSFT"), columns=["bid_price", "ask_price"], interval=0.01
    )
    first = shell.messages[0]
    assert not first.update and first.display_id and first.thread == "MainThread"
    alpaca_server.wait_for_subscriptions({"quotes": {"AAPL", "MSFT"}})
    alpaca_server.publish([quote(1, "AAPL"), quote(2, "MSFT"), quote(3, "AAPL")])
    latest = shell.wait_for(lambda m: "<td>3.0</td>" in m.html and "<td>2.0</td>" in m.html)
    assert latest.update and latest.display_id == first.display_id
    assert latest.thread == "rxalpaca-display"  # not the socket thread, not the cell's
    assert "<th>symbol</th><th>bid_price</th><th>ask_price</th>" in latest.html
    assert "<td>1.0</td>" not in latest.html  # AAPL's row holds its latest quote only
    assert view.snapshot()[1] == [["AAPL", "3.0", "3.5"], ["MSFT", "2.0", "2.5"]]
    # Every message is for the one output: nothing lands in another cell's.
    assert {m.display_id for m in shell.messages} == {first.display_id}
    # A cell ending with the view shows nothing more (the view is on screen already).
    before = len(shell.messages)
    InteractiveShell.instance().user_ns["view"] = view
    InteractiveShell.instance().run_cell("view")  # type: ignore[no-untyped-call]
    assert all(m.update for m in shell.messages[before:])
    client.close()
    shell.wait_for(lambda m: "4 records · ended" in m.html or "3 records · ended" in m.html)


def test_live_log_keeps_the_last_lines_with_honest_column_names(
    shell: Recorder,
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
) -> None:
    client = make_client(alpaca_server)
    view = live_log(client.quotes("AAPL"), lines=2, interval=0.01, title="AAPL quotes")
    alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}})
    alpaca_server.publish([quote(i, "AAPL") for i in range(5)])
    shell.wait_for(lambda m: "5 records · live" in m.html)
    columns, rows = view.snapshot()
    assert columns[:3] == ["symbol", "timestamp", "bid_price"]
    assert "raw_time" not in columns and "received_ns" not in columns
    assert [r[2] for r in rows] == ["3.0", "4.0"]
    assert rows[0][1].startswith("2023-11-14T22:13:20.000")
    view.stop()
    assert "stopped" in repr(view)


def test_bad_arguments_are_one_sentence(shell: Recorder) -> None:
    from reactivex import empty

    with pytest.raises(ConfigurationError, match="interval"):
        live_table(empty(), interval=0)
