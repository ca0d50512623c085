"""Channel-neutral replies: what a handler says, before any messenger renders it.

A handler queues :class:`Reply` objects (text, choices, a picture, a file, a map pin). Each
channel renders them its own way: Telegram as inline keyboards and edits, Zalo (no buttons at
all) as numbered text, the terminal demo as numbered lines. The choices a turn offered are
numbered across its messages, in order (:func:`numbered`), and that numbering is what a typed
``2`` means on every channel.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from models.addresses import Address

Asks = Literal["text", "contact", "location"]


@dataclass(frozen=True)
class Option:
    """One choice: its label, and the stable code it answers with (a button's callback data)."""

    label: str
    code: str


@dataclass(frozen=True)
class Options:
    """Choices attached to a message (Telegram: an inline keyboard), in rows."""

    rows: tuple[tuple[Option, ...], ...]

    @classmethod
    def of(cls, rows: Iterable[Iterable[tuple[str, str]]]) -> Options:
        """From rows of ``(label, code)``."""
        return cls(tuple(tuple(Option(label, code) for label, code in row) for row in rows))

    def flat(self) -> list[Option]:
        """Every option, row by row."""
        return [option for row in self.rows for option in row]


@dataclass(frozen=True)
class KeyButton:
    """A button of a reply keyboard: it sends its label as text, or (Telegram only) the
    person's phone number or location; elsewhere those are typed."""

    label: str
    asks: Asks = "text"


@dataclass(frozen=True)
class Keyboard:
    """A reply keyboard (Telegram) under the question; on Zalo its text buttons are numbered
    and its contact or location button becomes "type it"."""

    rows: tuple[tuple[KeyButton, ...], ...]

    @classmethod
    def of(cls, rows: Sequence[Sequence[KeyButton | str]]) -> Keyboard:
        """From rows of buttons or plain labels."""
        return cls(
            tuple(
                tuple(b if isinstance(b, KeyButton) else KeyButton(b) for b in row) for row in rows
            )
        )

    def flat(self) -> list[KeyButton]:
        """Every button, row by row."""
        return [button for row in self.rows for button in row]


@dataclass(frozen=True)
class RemoveKeyboard:
    """Take away a reply keyboard shown earlier."""


REMOVE_KEYBOARD = RemoveKeyboard()
Markup = Options | Keyboard | RemoveKeyboard | None


@dataclass
class Reply:
    """One message to send once the turn's transaction has committed."""

    text: str | None = None
    markup: Markup = None
    document: tuple[bytes, str] | None = None
    photo: bytes | None = None
    location: tuple[float, float] | None = None
    to: Address | None = None  # another person's chat (e.g. a waitlist offer); None: this chat
    numbered_from: int = 1  # a notice's first number: its choices join the chat's open ones
    locale: str | None = None  # a notice's recipient's language (the channel's own words)
    # a notice's slow part (drawing a report's chart, writing its workbook): run by the
    # dispatcher after the claim's transaction, just before sending, so that no database
    # connection waits on it; it fills in the reply's files and never uses the database
    prepare: Callable[[], Awaitable[None]] | None = None


@dataclass(frozen=True)
class Choice:
    """A numbered choice a chat was offered: typing ``number`` (or the label) answers ``code``
    (for an option) or sends ``label`` as text (for a reply-keyboard button)."""

    number: int
    label: str
    code: str | None = None

    def to_json(self) -> list[object]:
        """Compact form for the database: ``[label, code]`` (the number is the position)."""
        return [self.label, self.code]


@dataclass(frozen=True)
class Offer:
    """The choices a chat was last offered, numbered from 1 across a turn's messages."""

    choices: tuple[Choice, ...] = field(default_factory=tuple)

    def to_json(self) -> list[list[object]]:
        """Compact form for the database."""
        return [c.to_json() for c in self.choices]

    @classmethod
    def from_json(cls, data: object) -> Offer:
        """Back from :meth:`to_json`; anything malformed gives an empty offer."""
        choices: list[Choice] = []
        if isinstance(data, list):
            for n, item in enumerate(data, 1):
                if (
                    isinstance(item, list)
                    and len(item) == 2
                    and isinstance(item[0], str)
                    and (item[1] is None or isinstance(item[1], str))
                ):
                    choices.append(Choice(n, item[0], item[1]))
                else:
                    return cls()
        return cls(tuple(choices))


def choices_of(reply: Reply) -> list[tuple[str, str | None]]:
    """The ``(label, code)`` of the numbered choices of one reply, in order (a keyboard's text
    buttons with no code: they send their label)."""
    markup = reply.markup
    if isinstance(markup, Options):
        return [(o.label, o.code) for o in markup.flat()]
    if isinstance(markup, Keyboard):
        return [(b.label, None) for b in markup.flat() if b.asks == "text"]
    return []


def with_notice(current: Offer, notices: Iterable[Reply]) -> Offer:
    """A chat's open choices with those of notices sent to it added, numbered on after them
    (setting each notice's ``numbered_from``), so that a waitlist offer arriving mid-question
    neither takes the question's numbers nor loses its own; a choice sent again is not
    listed twice."""
    notices = list(notices)
    new = [c for reply in notices for c in choices_of(reply)]
    codes = {code for _label, code in new if code is not None}
    kept = [(c.label, c.code) for c in current.choices if c.code is None or c.code not in codes]
    number = len(kept) + 1
    for reply in notices:
        reply.numbered_from = number
        number += len(choices_of(reply))
    return Offer(tuple(Choice(n, label, code) for n, (label, code) in enumerate(kept + new, 1)))


def numbered(replies: Iterable[Reply]) -> Offer | None:
    """The choices a turn's replies to its own chat offer, numbered across the messages in
    order; ``None`` when they say nothing to this chat (the earlier offer stands), an empty
    offer when they ask something with no choices (the earlier offer is over)."""
    said = False
    choices: list[Choice] = []
    for reply in replies:
        if reply.to is not None:
            continue
        said = True
        for label, code in choices_of(reply):
            choices.append(Choice(len(choices) + 1, label, code))
    if not said:
        return None
    return Offer(tuple(choices))
