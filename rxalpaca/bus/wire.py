"""What travels on the bus: market data split per subject, and the small control messages.

Market data keeps Alpaca's own encoding, so a consumer decodes it with the same
:class:`~rxalpaca.codec.Codec` into the same records: :class:`FrameSplitter` cuts a
frame into one array per subject (the messages of one (channel, symbol), in wire
order) without decoding the records — msgspec hands each array element back as raw
bytes (``msgspec.Raw``), and only the two keys ``T`` and ``S`` of each are read.

The control messages (leases, the gateway's state, refusals) are JSON objects with
a format version ``v``; a message that does not decode is a
:class:`~rxalpaca.errors.BusMessageError`, never a crash.
"""

from __future__ import annotations

from typing import Any, Final, TypeVar

import msgspec

from ..codec import FAMILY_RECORDS
from ..feeds import Family
from ..frames import JSON_ARRAY_LEADS
from ..models import Gap
from .subjects import Subjects

__all__ = [
    "FORMAT",
    "Demand",
    "DemandReply",
    "FrameSplitter",
    "GatewayState",
    "Refusal",
    "decode_control",
    "encode_control",
    "encode_group",
    "merge_groups",
]

#: The version of the control messages below; a consumer ignores newer majors loudly.
FORMAT: Final = 1


class _Head(msgspec.Struct, gc=False):
    """The two keys of a message that say where it goes; the rest is left undecoded."""

    T: str = ""
    S: str = ""


class FrameSplitter:
    """Cut one frame into ``(subject, payload)`` pairs, one per (channel, symbol).

    Control messages (``success``, ``error``, ``subscription``) and types this
    version does not know are left out (``skipped`` counts them).

    Args:
        family: the feed family (its message types and channels).
        subjects: the feed's subject scheme.
    """

    def __init__(self, family: Family, subjects: Subjects) -> None:
        self._channel: dict[str, str] = {
            cls.__struct_config__.tag: cls.CHANNEL  # type: ignore[misc]
            for cls in FAMILY_RECORDS[family]
            if cls.CHANNEL
        }
        self._subjects = subjects
        self._subject_of: dict[tuple[str, str], str] = {}  # (T, S) -> subject, memoised
        self._json_raw = msgspec.json.Decoder(list[msgspec.Raw])
        self._json_head = msgspec.json.Decoder(_Head)
        self._mp_raw = msgspec.msgpack.Decoder(list[msgspec.Raw])
        self._mp_head = msgspec.msgpack.Decoder(_Head)
        self.skipped = 0

    def split(self, payload: bytes | str) -> list[tuple[str, bytes]]:
        """The frame's data messages grouped per subject, each group an array.

        Raises:
            msgspec.DecodeError: the frame is not an array (the caller counts it).
        """
        is_json, groups = self.groups(payload)
        return [(s, encode_group(is_json, g)) for s, g in groups.items()]

    def groups(self, payload: bytes | str) -> tuple[bool, dict[str, list[msgspec.Raw]]]:
        """The frame's data messages per subject, in wire order, still undecoded;
        and whether the frame is JSON. :func:`encode_group` makes a group a payload —
        after :func:`merge_groups` has joined the groups of several frames, if wanted.

        Raises:
            msgspec.DecodeError: the frame is not an array (the caller counts it).
        """
        if isinstance(payload, str):
            payload = payload.encode()
        is_json = bool(payload) and payload[0] in JSON_ARRAY_LEADS
        head: Any
        if is_json:
            raws, head = self._json_raw.decode(payload), self._json_head.decode
        else:
            raws, head = self._mp_raw.decode(payload), self._mp_head.decode
        groups: dict[str, list[msgspec.Raw]] = {}
        subject_of = self._subject_of
        for raw in raws:
            try:
                h = head(raw)
            except msgspec.DecodeError:
                self.skipped += 1  # not a map, or T/S of the wrong type: not ours to route
                continue
            key = (h.T, h.S)
            subject = subject_of.get(key)
            if subject is None:
                channel = self._channel.get(h.T)
                if channel is None:
                    self.skipped += 1
                    continue
                subject = self._subjects.data(channel, h.S)
                if len(subject_of) < 100_000:  # bounded: a symbol universe, not a leak
                    subject_of[key] = subject
            group = groups.get(subject)
            if group is None:
                groups[subject] = [raw]
            else:
                group.append(raw)
        return is_json, groups


def merge_groups(into: dict[str, list[msgspec.Raw]], later: dict[str, list[msgspec.Raw]]) -> None:
    """Append a later frame's groups to ``into``, per subject (order kept within each)."""
    for subject, group in later.items():
        have = into.get(subject)
        if have is None:
            into[subject] = group
        else:
            have.extend(group)


def encode_group(is_json: bool, group: list[msgspec.Raw]) -> bytes:
    """One subject's messages as one array in the frame's encoding (a bus payload)."""
    if is_json:
        return b"[" + b",".join(group) + b"]"
    return _msgpack_array_header(len(group)) + b"".join(group)


def _msgpack_array_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 0x10000:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


# ---------------------------------------------------------------- control messages


class Demand(msgspec.Struct, kw_only=True):
    """A consumer's lease: everything it wants now, valid for ``lease_s`` seconds.

    Sent on subscribe/dispose (at once) and again every third of the lease (the
    heartbeat), always whole, so a gateway that restarted learns all of it at once.
    """

    v: int = FORMAT
    client: str
    lease_s: float
    pairs: list[tuple[str, str]]


class Refusal(msgspec.Struct, kw_only=True):
    """The upstream refused ``symbols`` of ``channel`` with Alpaca's error ``code``."""

    v: int = FORMAT
    channel: str
    symbols: list[str]
    code: int
    message: str


class DemandReply(msgspec.Struct, kw_only=True):
    """The gateway took the lease: what it serves, and the pairs already refused."""

    v: int = FORMAT
    gateway: str
    encoding: str
    state: str
    refused: list[Refusal] = []


class GatewayState(msgspec.Struct, kw_only=True):
    """The gateway's upstream state, on every change and every ``heartbeat_s``."""

    v: int = FORMAT
    gateway: str
    feed: str
    state: str
    encoding: str
    heartbeat_s: float
    error: str | None = None


_Control = Demand | DemandReply | GatewayState | Refusal | Gap
_ENCODER = msgspec.json.Encoder()


def encode_control(message: _Control) -> bytes:
    """A control message (or a :class:`Gap`) as the JSON the bus carries."""
    return _ENCODER.encode(message)


_DECODERS: dict[type, msgspec.json.Decoder[Any]] = {}


_M = TypeVar("_M")


def decode_control(payload: bytes, kind: type[_M]) -> _M:
    """Decode a control message of ``kind``.

    Raises:
        ValueError: malformed, or a newer format version than :data:`FORMAT`.
    """
    decoder = _DECODERS.get(kind)
    if decoder is None:
        decoder = _DECODERS[kind] = msgspec.json.Decoder(kind)
    try:
        message: _M = decoder.decode(payload)
    except msgspec.DecodeError as exc:
        raise ValueError(str(exc)) from None
    version = getattr(message, "v", FORMAT)
    if version > FORMAT:
        raise ValueError(f"format {version} is newer than this version's {FORMAT}")
    return message
