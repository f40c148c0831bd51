"""What every connection of one server shares: credentials, session slots, ghosts.

Plain data, no loop and no clock of its own (callers pass ``now``), so a
:class:`~rxalpaca.testing.server.session.Session` can be driven without sockets.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

from .config import DEFAULT_KEY, DEFAULT_SECRET, DEFAULT_TOKEN, Account

__all__ = ["Directory", "Slot"]

#: A session slot: (credentials' identity, endpoint path) — S14 counts per slot.
Slot = tuple[str, str]


class Directory:
    """Accounts, tokens and who holds which session slot, for one server.

    ``accounts`` and ``tokens`` are live dicts: a test may add credentials while the
    server runs (``server.accounts["k"] = Account("s")``).
    """

    def __init__(
        self,
        accounts: Mapping[str, Account] | None = None,
        tokens: Mapping[str, Account] | None = None,
    ) -> None:
        self.accounts: dict[str, Account] = dict(
            accounts if accounts is not None else {DEFAULT_KEY: Account(DEFAULT_SECRET)}
        )
        self.tokens: dict[str, Account] = dict(
            tokens if tokens is not None else {DEFAULT_TOKEN: Account("")}
        )
        #: Connection ids holding each slot.
        self.holders: dict[Slot, set[int]] = {}
        #: Slots still held by connections lost without a close handshake (S15).
        self.ghosts: dict[Slot, int] = {}
        #: Error codes to answer the next auth attempts with (``fail_next_auth``).
        self.fail_next: deque[int] = deque()
        self._upgrades: dict[str, deque[float]] = {}

    def lookup(self, key: str, secret: str) -> tuple[Account | None, str]:
        """The account of these credentials (``None`` if wrong) and its identity.

        ``key`` ``"oauth"`` / ``"access_token"`` mean ``secret`` is a token (S9, S10).
        """
        if key in ("oauth", "access_token"):
            return self.tokens.get(secret), f"token:{secret}"
        account = self.accounts.get(key)
        if account is not None and account.secret != secret:
            account = None
        return account, key

    def claim(self, slot: Slot, cid: int, limit: int | None) -> bool:
        """Give connection ``cid`` a place in ``slot`` unless ``limit`` is reached (S14);
        ghosts count against the limit (S15)."""
        holders = self.holders.setdefault(slot, set())
        if limit is not None and len(holders) + self.ghosts.get(slot, 0) >= limit:
            return False
        holders.add(cid)
        return True

    def release(self, slot: Slot, cid: int, *, ghost: bool) -> None:
        """Connection ``cid`` left ``slot``; with ``ghost`` its place stays taken until
        :meth:`release_ghost` (the caller's timer)."""
        self.holders.get(slot, set()).discard(cid)
        if ghost:
            self.ghosts[slot] = self.ghosts.get(slot, 0) + 1

    def release_ghost(self, slot: Slot) -> None:
        """One ghost of ``slot`` expired."""
        n = self.ghosts.get(slot, 0)
        if n <= 1:
            self.ghosts.pop(slot, None)
        else:
            self.ghosts[slot] = n - 1

    def admit_upgrade(self, who: str, now: float, rate_limit: tuple[int, float] | None) -> bool:
        """Whether one more upgrade by ``who`` (key id or address) fits ``rate_limit``
        (S6: ``n`` upgrades per ``window`` seconds); counts it if so."""
        if rate_limit is None:
            return True
        n, window = rate_limit
        times = self._upgrades.setdefault(who, deque())
        while times and now - times[0] > window:
            times.popleft()
        if len(times) >= n:
            return False
        times.append(now)
        return True
