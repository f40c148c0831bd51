"""The outbound queue's bound (S37) and the shared directory (S6, S14, S15), sans I/O."""

from __future__ import annotations

from rxalpaca.testing.server.directory import Directory
from rxalpaca.testing.server.outbox import Out, Outbox


def test_outbox_counts_frames_messages_and_bytes() -> None:
    ob = Outbox()
    ob.push(Out(b"abc", True, data_count=5))
    ob.push(Out(b"de", True))  # a control frame counts as one message
    assert (len(ob), ob.messages, ob.bytes) == (2, 6, 5)
    assert not ob.exceeds(6, 5) and ob.exceeds(5, None) and ob.exceeds(None, 4)
    assert not ob.exceeds(None, None)
    assert ob.pop().payload == b"abc"
    assert (len(ob), ob.messages, ob.bytes) == (1, 1, 2)
    ob.clear()
    assert (len(ob), ob.messages, ob.bytes) == (0, 0, 0)


def test_fragments_cut_near_equal_parts() -> None:
    assert Out(b"abcdefg", True, split=3).fragments() == [b"abc", b"def", b"g"]
    assert Out(b"abc", True).fragments() == [b"abc"]
    assert Out(b"", True, split=3).fragments() == [b""]


def test_upgrade_rate_limit_is_a_sliding_window() -> None:
    d = Directory()
    assert all(d.admit_upgrade("k", t, (2, 1.0)) for t in (0.0, 0.5))
    assert not d.admit_upgrade("k", 0.9, (2, 1.0))  # S6: the third within a second
    assert d.admit_upgrade("other", 0.9, (2, 1.0))
    assert d.admit_upgrade("k", 1.6, (2, 1.0))  # the first two have left the window
    assert d.admit_upgrade("k", 1.6, None)


def test_slots_and_ghosts() -> None:
    d = Directory()
    slot = ("k", "/v2/iex")
    assert d.claim(slot, 1, 1) and not d.claim(slot, 2, 1) and d.claim(slot, 2, None)
    d.release(slot, 1, ghost=True)
    d.release(slot, 2, ghost=True)
    assert not d.claim(slot, 3, 2)  # S15: two ghosts hold both places
    d.release_ghost(slot)
    assert d.claim(slot, 3, 2) and d.ghosts == {slot: 1}


def test_lookup_by_key_or_token() -> None:
    d = Directory()
    assert d.lookup("test-key", "test-secret")[1] == "test-key"
    assert d.lookup("test-key", "wrong")[0] is None
    account, identity = d.lookup("oauth", "test-token")
    assert account is not None and identity == "token:test-token"
