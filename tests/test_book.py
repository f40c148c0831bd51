"""SubscriptionBook: ref counts, coalescing, ack checks, rejections, replay."""

from __future__ import annotations

from rxalpaca.book import Rejection, SubscriptionBook
from rxalpaca.feeds import endpoint
from rxalpaca.models import SubscriptionMessage


def book() -> SubscriptionBook:
    b = SubscriptionBook(frozenset(endpoint("iex").channels))
    b.connected()
    return b


def ack(**channels: tuple[str, ...]) -> SubscriptionMessage:
    return SubscriptionMessage(**channels)


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


# ---- a refused combined subscribe is bisected so only the culprits fail (#9.2)


def test_a_refused_batch_is_split_in_halves_until_the_culprit_is_alone() -> None:
    b = book()
    b.acquire("quotes", ["AAPL", "BAD", "MSFT", "TSLA"])
    whole = b.take_request()
    assert whole is not None and len(whole.pairs()) == 4
    first = b.on_error(split=True)
    assert first.split and first.pairs == frozenset()
    assert b.count("quotes", "BAD") == 1  # nobody refused yet
    left = b.take_request()
    assert left is not None and left.pairs() == {("quotes", "AAPL"), ("quotes", "BAD")}
    assert b.on_error(split=True).split
    alone = b.take_request()
    assert alone is not None and alone.pairs() == {("quotes", "AAPL")}
    assert b.on_ack(ack(quotes=("AAPL",))).ok
    culprit = b.take_request()
    assert culprit is not None and culprit.pairs() == {("quotes", "BAD")}
    refused = b.on_error(split=True)  # a single pair: refused, not split
    assert not refused.split and refused.pairs == {("quotes", "BAD")}
    right = b.take_request()
    assert right is not None and right.pairs() == {("quotes", "MSFT"), ("quotes", "TSLA")}
    assert b.on_ack(ack(quotes=("AAPL", "MSFT", "TSLA"))).ok
    assert b.take_request() is None
    assert b.wanted() == {("quotes", "AAPL"), ("quotes", "MSFT"), ("quotes", "TSLA")}
    assert b.splits == 2


def test_without_split_a_refusal_rejects_the_whole_request() -> None:
    b = book()
    b.acquire("quotes", ["AAPL", "MSFT"])
    assert b.take_request() is not None
    rejection = b.on_error()
    assert not rejection.split
    assert rejection.pairs == {("quotes", "AAPL"), ("quotes", "MSFT")}
    assert b.take_request() is None


def test_changes_during_a_bisection_wait_until_it_is_done() -> None:
    b = book()
    b.acquire("quotes", ["A", "B"])
    assert b.take_request() is not None
    b.on_error(split=True)
    b.acquire("quotes", ["NEW"])  # arrives while the halves are pending
    b.release("quotes", ["B"])  # and one of the halves is no longer wanted
    a = b.take_request()
    assert a is not None and a.pairs() == {("quotes", "A")}
    b.on_ack(ack(quotes=("A",)))
    new = b.take_request()  # B's half is skipped: nobody wants it
    assert new is not None and new.pairs() == {("quotes", "NEW")}


def test_a_new_session_forgets_pending_halves() -> None:
    b = book()
    b.acquire("quotes", ["A", "B", "C"])
    assert b.take_request() is not None
    b.on_error(split=True)
    b.disconnected()
    b.connected()
    replay = b.take_request()
    assert replay is not None and replay.pairs() == {
        ("quotes", "A"),
        ("quotes", "B"),
        ("quotes", "C"),
    }


# ---- the per-channel structure (issue #12: no (channel, symbol) tuple per subscription)


def fresh(sym: str) -> str:
    """An equal string that is a different object (as a decoded ack's would be)."""
    out = "".join(list(sym))
    assert out == sym and out is not sym
    return out


def test_state_is_kept_per_channel_and_empty_channels_are_dropped() -> None:
    b = book()
    b.acquire("trades", ["AAPL", "MSFT"])
    b.acquire("quotes", ["AAPL"])
    b.acquire("bars", [])  # nothing: no channel entry either
    assert b._counts == {"trades": {"AAPL": 1, "MSFT": 1}, "quotes": {"AAPL": 1}}
    assert b.live == 3 and b.wanted() == {
        ("trades", "AAPL"),
        ("trades", "MSFT"),
        ("quotes", "AAPL"),
    }
    assert b.count("trades", "MSFT") == 1 and b.count("bars", "AAPL") == 0
    b.release("quotes", ["AAPL"])
    b.release("bars", ["AAPL"])  # never held: nothing happens
    assert b._counts == {"trades": {"AAPL": 1, "MSFT": 1}}
    b.release("trades", ["AAPL", "MSFT"])
    assert b._counts == {} and b.live == 0 and b.wanted() == set()


def test_the_acked_state_holds_the_books_own_symbol_strings() -> None:
    b = book()
    mine = ["AAPL", "MSFT"]
    b.acquire("trades", mine)
    b.acquire("quotes", mine[:1])
    b.take_request()
    theirs = (fresh("AAPL"), fresh("MSFT"), fresh("GONE"))  # GONE: held by nobody here
    assert b.on_ack(ack(trades=theirs, quotes=theirs[:1], bars=())).ok
    state = b._acked
    assert set(state) == {"trades", "quotes"}  # an empty list leaves no entry
    kept = {s: s for s in state["trades"]}
    assert kept["AAPL"] is mine[0] and kept["MSFT"] is mine[1]
    assert kept["GONE"] is theirs[2]  # not the book's: the ack's own is kept
    assert next(iter(state["quotes"])) is mine[0]
    assert b.acked_by_channel() == {"trades": {"AAPL", "MSFT", "GONE"}, "quotes": {"AAPL"}}
    assert b.server_live == 4
    copy = b.acked_by_channel()
    copy["trades"].clear()  # a copy: the book is untouched
    assert b.server_live == 4
    # GONE is not wanted: the book unsubscribes it.
    req = b.take_request()
    assert req is not None and req.message() == {"action": "unsubscribe", "trades": ["GONE"]}


def test_an_ack_against_an_unsubscribe_reports_what_is_still_there() -> None:
    b = book()
    b.acquire("trades", ["AAPL", "MSFT"])
    b.take_request()
    b.on_ack(ack(trades=("AAPL", "MSFT")))
    b.release("trades", ["AAPL", "MSFT"])
    req = b.take_request()
    assert req is not None and req.pairs() == {("trades", "AAPL"), ("trades", "MSFT")}
    check = b.on_ack(ack(trades=("MSFT",)))
    assert check.unexpected == frozenset({("trades", "MSFT")}) and not check.missing
    assert b.acked_by_channel() == {"trades": {"MSFT"}}


def test_a_refused_unsubscribe_drops_the_channel_when_it_empties() -> None:
    b = book()
    b.acquire("trades", ["AAPL"])
    b.acquire("quotes", ["AAPL"])
    b.take_request()
    b.on_ack(ack(trades=("AAPL",), quotes=("AAPL",)))
    b.release("trades", ["AAPL"])
    assert b.take_request() is not None
    b.on_error()
    assert b._acked == {"quotes": {"AAPL"}} and b.acked() == {("quotes", "AAPL")}


def test_refuse_and_adopt_per_channel() -> None:
    b = book()
    b.acquire("trades", ["AAPL", "MSFT"])
    b.acquire("trades", ["AAPL"])
    b.adopt([("trades", "AAPL"), ("trades", "MSFT"), ("nosuch", "X")])
    assert b._acked == {"trades": {"AAPL", "MSFT"}}
    held = b.refuse([("trades", "AAPL"), ("quotes", "IBM")])
    assert held == frozenset({("trades", "AAPL")})
    assert b._counts == {"trades": {"MSFT": 1}} and b._rejected == {"trades": {"AAPL": 2}}
    assert b._acked == {"trades": {"MSFT"}}
    b.refuse([("trades", "MSFT")])
    assert b._counts == {} and b._acked == {} and b._rejected == {"trades": {"AAPL": 2, "MSFT": 1}}
    # Every holder's release is absorbed; then nothing is left anywhere.
    b.release("trades", ["AAPL", "MSFT"])
    b.release("trades", ["AAPL"])
    assert b._rejected == {} and b._counts == {}


def test_an_ack_or_error_with_nothing_in_flight_changes_only_the_state() -> None:
    b = book()
    b.acquire("trades", ["AAPL"])
    assert b.on_ack(ack(trades=("AAPL",))).ok  # nothing asked: nothing to check
    assert b.acked() == {("trades", "AAPL")} and b.take_request() is None
    assert b.on_error(split=True) == Rejection(frozenset())
    assert b.count("trades", "AAPL") == 1
