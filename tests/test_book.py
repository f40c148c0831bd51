"""SubscriptionBook: ref counts, coalescing, ack checks, rejections, replay."""

from __future__ import annotations

from rxalpaca.book import SubscriptionBook
from rxalpaca.feeds import endpoint
from rxalpaca.models import SubscriptionMessage


def book() -> SubscriptionBook:
    b = SubscriptionBook(frozenset(endpoint("iex").channels))
    b.connected()
    return b


def ack(**channels: tuple[str, ...]) -> SubscriptionMessage:
    return SubscriptionMessage(**channels)  # type: ignore[arg-type]


def test_first_acquire_requests_last_release_unsubscribes() -> None:
    b = book()
    b.acquire("trades", ["AAPL"])
    b.acquire("trades", ["AAPL"])
    req = b.take_request()
    assert req is not None and req.message() == {"action": "subscribe", "trades": ["AAPL"]}
    assert b.on_ack(ack(trades=("AAPL",), corrections=("AAPL",))).ok
    b.release("trades", ["AAPL"])
    assert b.take_request() is None  # one user left
    b.release("trades", ["AAPL"])
    req = b.take_request()
    assert req is not None and req.message() == {"action": "unsubscribe", "trades": ["AAPL"]}


def test_one_request_in_flight_coalesces_a_burst() -> None:
    b = book()
    b.acquire("quotes", ["S0"])
    first = b.take_request()
    assert first is not None
    for i in range(1, 1000):
        b.acquire("quotes", [f"S{i}"])
        assert b.take_request() is None  # waiting for the ack
    b.on_ack(ack(quotes=("S0",)))
    second = b.take_request()
    assert second is not None
    assert len(second.channels["quotes"]) == 999
    assert b.requests_sent == 2


def test_not_ready_sends_nothing_and_replays_everything_on_connect() -> None:
    b = SubscriptionBook(frozenset(endpoint("iex").channels))
    b.acquire("trades", ["AAPL", "MSFT"])
    b.acquire("bars", ["*"])
    assert b.take_request() is None
    b.connected()
    req = b.take_request()
    assert req is not None
    assert req.pairs() == {("trades", "AAPL"), ("trades", "MSFT"), ("bars", "*")}


def test_disconnect_clears_in_flight_and_acked() -> None:
    b = book()
    b.acquire("trades", ["AAPL"])
    assert b.take_request() is not None
    b.disconnected()
    assert b.in_flight is None and b.acked() == set()
    assert b.take_request() is None  # not ready
    b.connected()
    req = b.take_request()
    assert req is not None and req.pairs() == {("trades", "AAPL")}


def test_ack_mismatch_is_reported_and_ack_is_truth() -> None:
    b = book()
    b.acquire("trades", ["AAPL", "MSFT"])
    b.take_request()
    check = b.on_ack(ack(trades=("AAPL",)))
    assert not check.ok
    assert check.missing == frozenset({("trades", "MSFT")})
    assert b.acked() == {("trades", "AAPL")}
    # the book asks again for what is still wanted
    req = b.take_request()
    assert req is not None and req.pairs() == {("trades", "MSFT")}


def test_implicit_and_foreign_channels_in_ack_are_ignored() -> None:
    b = book()
    b.acquire("trades", ["AAPL"])
    b.take_request()
    check = b.on_ack(
        ack(trades=("AAPL",), corrections=("AAPL",), cancelErrors=("AAPL",), news=("X",))
    )
    assert check.ok
    assert b.acked() == {("trades", "AAPL")}


def test_rejection_drops_pairs_and_absorbs_their_releases() -> None:
    b = book()
    b.acquire("quotes", ["AAPL"])
    b.take_request()
    b.on_ack(ack(quotes=("AAPL",)))
    b.acquire("quotes", ["TOOMANY"])
    b.acquire("quotes", ["TOOMANY"])
    b.take_request()
    rej = b.on_error()
    assert rej.pairs == frozenset({("quotes", "TOOMANY")})
    assert b.count("quotes", "TOOMANY") == 0
    assert b.take_request() is None  # not retried
    b.acquire("quotes", ["TOOMANY"])  # a new user after the rejection
    b.release("quotes", ["TOOMANY"])  # an old holder lets go: absorbed
    b.release("quotes", ["TOOMANY"])  # the other old holder: absorbed
    assert b.count("quotes", "TOOMANY") == 1


def test_refused_unsubscribe_is_not_retried_forever() -> None:
    b = book()
    b.acquire("quotes", ["AAPL"])
    b.take_request()
    b.on_ack(ack(quotes=("AAPL",)))
    b.release("quotes", ["AAPL"])
    assert b.take_request() is not None
    assert b.on_error().pairs == frozenset()
    assert b.take_request() is None


def test_subscribes_go_before_unsubscribes() -> None:
    b = book()
    b.acquire("quotes", ["A"])
    b.take_request()
    b.on_ack(ack(quotes=("A",)))
    b.release("quotes", ["A"])
    b.acquire("quotes", ["B"])
    first = b.take_request()
    assert first is not None and first.action == "subscribe"
    b.on_ack(ack(quotes=("A", "B")))
    second = b.take_request()
    assert second is not None and second.action == "unsubscribe"
    assert second.pairs() == {("quotes", "A")}
