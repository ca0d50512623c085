"""What /link keeps in memory, once per process (held by :class:`bot.context.Services`, so
Telegram and Zalo share it): the limit on wrong codes, and the codes waiting for a "yes".

**Wrong codes** (:class:`CodeGuesses`). The account row counts its own wrong codes too
(:mod:`models.accounts`: five per fifteen minutes), but /delete erases that row and a new
messenger id starts afresh, so a guesser would only need to /delete, or use another id, to
go on. Here, beside it:

- the whole bot takes at most :data:`PER_MINUTE` (30) wrong codes in any sixty seconds; past
  that every code is refused (``link.too_many_attempts``) until the minute has passed;
- each sender (channel and id) at most :data:`PER_SENDER` (5) per :data:`SENDER_WINDOW`
  (15 minutes), remembered across /delete, under a keyed hash (HMAC-SHA-256 with a key drawn
  at start and never written anywhere: no messenger id is kept), in a bounded LRU.

The arithmetic. A code is eight digits (10⁸ values), lives ten minutes and is used once.
With ``L`` codes alive at a time, one guess hits one with a chance of ``L / 10⁸``. Capped at
30 a minute, a guesser with any number of accounts makes at most 43,200 guesses a day; with
``L = 20`` (120 codes an hour, far more than a province asks for) that is
``43,200 × 20 / 10⁸ ≈ 0.009`` codes found per day of non-stop guessing: about one in 115
days, each found code told to its maker with a button to undo it. Meanwhile the attack is
loud: everyone's codes are refused during a minute that reached the limit, and each such
minute is logged (without ids). 30 stays far above honest typing mistakes, which are a few
an hour across the province. The check and the count are one step (:meth:`CodeGuesses.admit`
counts the attempt at once, :meth:`CodeGuesses.settle` takes it back when the code was not
wrong), so turns running side by side cannot overshoot the limit.

**Codes waiting for a "yes"** (:class:`PendingLinks`). A code typed on an account that holds a
health book is not used at once: the person is asked first. What the question's options carry
is an opaque random reference (never the code, nor its hash: a hash of eight digits is undone
in seconds), bound here to the account that typed the code and to the code's SHA-256 (the
key of its ``link_codes`` row), for as long as the code lives. The code stays unredeemed
until the "yes". A restart forgets the references: the person types the code again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import math
import secrets
from collections import OrderedDict, deque
from dataclasses import dataclass

log = logging.getLogger(__name__)

PER_MINUTE = 30  # wrong codes the whole bot takes in any sixty seconds
MINUTE = 60.0
PER_SENDER = 5  # wrong codes per sender (channel and id) within SENDER_WINDOW
SENDER_WINDOW = 15 * 60.0
SENDERS = 10_000  # senders remembered (least recently wrong forgotten first)


@dataclass
class _Sender:
    count: int
    since: float  # the window's first wrong code


@dataclass(frozen=True)
class Attempt:
    """A code let through :meth:`CodeGuesses.admit`, to :meth:`CodeGuesses.settle`."""

    sender: bytes
    at: float


class CodeGuesses:
    """Wrong /link codes, for the whole bot and per sender (see the module's docstring)."""

    def __init__(
        self,
        *,
        per_minute: int = PER_MINUTE,
        per_sender: int = PER_SENDER,
        sender_window: float = SENDER_WINDOW,
        senders: int = SENDERS,
    ) -> None:
        self.per_minute = per_minute
        self.per_sender = per_sender
        self.sender_window = sender_window
        self.senders = senders
        self._key = secrets.token_bytes(32)
        self._recent: deque[float] = deque()  # wrong (or not yet settled) attempts, oldest first
        self._senders: OrderedDict[bytes, _Sender] = OrderedDict()
        self._logged_until = -math.inf

    def _digest(self, channel: str, external_id: str) -> bytes:
        raw = f"{channel}\x00{external_id}".encode()
        return hmac.new(self._key, raw, hashlib.sha256).digest()[:16]

    def admit(self, channel: str, external_id: str, now: dt.datetime) -> Attempt | int:
        """An attempt to count (settle it once the code was looked up), or the minutes to wait
        when the sender, or the whole bot, had too many wrong codes."""
        at = now.timestamp()
        while self._recent and self._recent[0] <= at - MINUTE:
            self._recent.popleft()
        digest = self._digest(channel, external_id)
        sender = self._senders.get(digest)
        if sender is not None and at - sender.since >= self.sender_window:
            del self._senders[digest]
            sender = None
        if sender is not None and sender.count >= self.per_sender:
            return max(1, math.ceil((sender.since + self.sender_window - at) / 60))
        if len(self._recent) >= self.per_minute:
            if at >= self._logged_until:  # once per minute that reached the limit
                log.warning(
                    "/link: %d wrong codes in a minute; codes refused for now", self.per_minute
                )
                self._logged_until = at + MINUTE
            return max(1, math.ceil((self._recent[0] + MINUTE - at) / 60))
        self._recent.append(at)
        return Attempt(digest, at)

    def settle(self, attempt: Attempt, *, wrong: bool) -> None:
        """The attempt's code was wrong (it stays counted, for the bot and the sender) or not
        (it is taken back)."""
        if not wrong:
            try:
                self._recent.remove(attempt.at)
            except ValueError:  # already out of the minute
                pass
            return
        sender = self._senders.get(attempt.sender)
        if sender is None or attempt.at - sender.since >= self.sender_window:
            sender = self._senders[attempt.sender] = _Sender(0, attempt.at)
        sender.count += 1
        self._senders.move_to_end(attempt.sender)
        while len(self._senders) > self.senders:
            self._senders.popitem(last=False)


@dataclass(frozen=True)
class Pending:
    """A code typed, waiting for its typist's "yes"."""

    account_id: int
    code_hash: str
    expires: dt.datetime


class PendingLinks:
    """Codes waiting for a "yes", by opaque reference (see the module's docstring): one per
    account, at most ``size`` (the oldest forgotten first), each until its code expires."""

    def __init__(self, size: int = 5_000) -> None:
        self.size = size
        self._by_ref: OrderedDict[str, Pending] = OrderedDict()
        self._by_account: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self._by_ref)

    def add(self, account_id: int, code_hash: str, expires: dt.datetime) -> str:
        """Keep a code for ``account_id`` (replacing what it had waiting); its reference."""
        self.drop(account_id)
        ref = secrets.token_urlsafe(9)  # 72 bits, 12 characters: fits any button's data
        self._by_ref[ref] = Pending(account_id, code_hash, expires)
        self._by_account[account_id] = ref
        while len(self._by_ref) > self.size:
            _, old = self._by_ref.popitem(last=False)
            self._by_account.pop(old.account_id, None)
        return ref

    def take(self, ref: str, account_id: int, now: dt.datetime) -> Pending | None:
        """The code ``ref`` names, if it is ``account_id``'s and has not expired (then it is
        no longer waiting); None otherwise (a forged, foreign, answered or forgotten one)."""
        pending = self._by_ref.get(ref)
        if pending is None or pending.account_id != account_id:
            return None
        self.drop(account_id)
        return pending if now < pending.expires else None

    def drop(self, account_id: int) -> None:
        """Forget what ``account_id`` had waiting."""
        ref = self._by_account.pop(account_id, None)
        if ref is not None:
            self._by_ref.pop(ref, None)


__all__ = ["Attempt", "CodeGuesses", "Pending", "PendingLinks"]
