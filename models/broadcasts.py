"""Broadcasts: a text an admin sends to an audience (everyone, the residents of a commune, the
people booked at a site on a day, the people due for a dose of a campaign).

Its copies are outbox rows (kind ``broadcast``), one per recipient account, written by one
``INSERT … SELECT``: the audience is never loaded into memory, however many people it holds.
The dispatcher sends them like any other message (quiet hours apply); the admin's progress
message is updated from :func:`progress`.

A recipient is an account that holds what the audience is about (a health book in the commune,
a booking, a dose) and gave consent: the account a person's data lives on (their other
messenger's account, joined with /link, is reached through it), one copy per account even when
it holds several health books."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    and_,
    delete,
    exists,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from models import validators as v
from models.errors import DomainError
from models.lookups import get_campaign, get_site
from models.tables import (
    BOOKING_ACTIVE,
    Account,
    Booking,
    Broadcast,
    Campaign,
    Consent,
    HealthBook,
    JsonType,
    OutboxMessage,
    Session,
    UTCDateTime,
    Vaccination,
)
from models.timeutil import to_utc

KIND = "broadcast"
#: the longest text an admin may send: with the header, one message on every messenger (Zalo
#: takes 2,000 characters a message, Telegram 4,096)
MAX_TEXT = 1800
AUDIENCES = ("everyone", "commune", "site_day", "due")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class Audience:
    """Who a broadcast goes to: ``everyone``; ``commune`` (``ward``: its code); ``site_day``
    (``site_id`` and ``day``); ``due`` (``campaign_id``)."""

    kind: str
    ward: int | None = None
    site_id: int | None = None
    day: dt.date | None = None
    campaign_id: int | None = None

    def params(self) -> dict[str, Any]:
        """As stored in ``broadcasts.audience_params``."""
        out: dict[str, Any] = {}
        if self.ward is not None:
            out["ward"] = self.ward
        if self.site_id is not None:
            out["site_id"] = self.site_id
        if self.day is not None:
            out["day"] = self.day.isoformat()
        if self.campaign_id is not None:
            out["campaign_id"] = self.campaign_id
        return out

    @classmethod
    def of(cls, kind: str, params: dict[str, Any]) -> Audience:
        """Back from a stored broadcast."""
        day = params.get("day")
        return cls(
            kind,
            ward=params.get("ward"),
            site_id=params.get("site_id"),
            day=dt.date.fromisoformat(day) if isinstance(day, str) else None,
            campaign_id=params.get("campaign_id"),
        )

    @property
    def complete(self) -> bool:
        """Whether everything this kind of audience needs is chosen."""
        if self.kind == "everyone":
            return True
        if self.kind == "commune":
            return self.ward is not None
        if self.kind == "site_day":
            return self.site_id is not None and self.day is not None
        if self.kind == "due":
            return self.campaign_id is not None
        return False


@dataclass(frozen=True)
class Progress:
    """How far a broadcast has gone: copies sent, failed, still to send (and dropped: their
    person erased their data, or the copy no longer applied)."""

    sent: int
    failed: int
    left: int
    dropped: int = 0

    @property
    def total(self) -> int:
        return self.sent + self.failed + self.left + self.dropped


def clean_text(text: str) -> str:
    """The admin's text, checked: not empty, at most :data:`MAX_TEXT` characters, no control
    characters (line breaks are kept); ``broadcast.text_*`` otherwise."""
    text = text.strip()
    if not text:
        raise DomainError("broadcast.text_empty")
    if len(text) > MAX_TEXT:
        raise DomainError("broadcast.text_too_long", limit=MAX_TEXT, length=len(text))
    if _CONTROL.search(text):
        raise DomainError("broadcast.text_control")
    return text


# --- audiences, as SELECTs of recipient account ids --------------------------------------------


def _consented(account_id: ColumnElement[int]) -> ColumnElement[bool]:
    """The account gave consent, and the messenger it is reached on (the one the person chose
    or used last) is not marked unreachable (they blocked the bot): the dispatcher would only
    mark such a copy failed."""
    person, target = aliased(Account), aliased(Account)
    reachable = (
        select(person.id)
        .join(target, target.id == func.coalesce(person.reply_via, person.id))
        .where(person.id == account_id, target.unreachable_at.is_(None))
    )
    return and_(exists().where(Consent.account_id == account_id), reachable.exists())


def _start_of_day(day: dt.date, tz: ZoneInfo) -> dt.datetime:
    return to_utc(dt.datetime.combine(day, dt.time(0, 0), tzinfo=tz))


def due_condition(
    campaign: Campaign, today: dt.date, tz: ZoneInfo, vaccination: Any = Vaccination
) -> ColumnElement[bool]:
    """Whether a vaccination row is a person's last dose of ``campaign`` after which the next
    dose is due by ``today`` (the minimum interval of the schedule, per product of that dose
    where the campaign has one, reached; boosters as the campaign allows), as SQL; the same
    rule as :func:`models.eligibility.next_dose_window`."""
    vx = vaccination
    later = aliased(Vaccination)
    last = ~exists().where(
        later.health_book_id == vx.health_book_id,
        later.campaign_id == vx.campaign_id,
        later.dose > vx.dose,
    )

    def given_by(days: int) -> ColumnElement[bool]:
        # its local date plus ``days`` is today or earlier
        return vx.given_at < _start_of_day(today - dt.timedelta(days=days - 1), tz)

    products = {code: own for code, own in (campaign.schedules or {}).items()}
    cases: list[ColumnElement[bool]] = []
    for dose in range(1, campaign.doses):  # the next one is in the primary series
        gap = dose - 1
        for product, own in [*products.items(), (None, None)]:
            mins = list((own or {}).get("min_days", campaign.min_days or []))
            low = int(mins[gap]) if gap < len(mins) and mins[gap] is not None else 0
            which: ColumnElement[bool] = (
                vx.vaccine_code == product
                if product is not None
                else (
                    or_(vx.vaccine_code.is_(None), vx.vaccine_code.not_in(list(products)))
                    if products
                    else literal(True)
                )
            )
            cases.append(and_(vx.dose == dose, which, given_by(low)))
    if campaign.booster_min_days is not None:
        booster = [vx.dose >= campaign.doses, given_by(campaign.booster_min_days)]
        if campaign.boosters is not None:
            booster.append(vx.dose < campaign.doses + campaign.boosters)
        cases.append(and_(*booster))
    if not cases:
        return false()
    return and_(vx.campaign_id == campaign.id, last, or_(*cases))


async def recipients(
    session: AsyncSession, audience: Audience, today: dt.date, tz: ZoneInfo
) -> Select[tuple[int]]:
    """The SELECT of the audience's recipient account ids (distinct); nothing is loaded."""
    if audience.kind == "everyone":
        return select(Account.id).where(Account.linked_to.is_(None), _consented(Account.id))
    holder = HealthBook.account_id
    if audience.kind == "commune":
        assert audience.ward is not None
        return (
            select(holder)
            .where(HealthBook.ward_code == audience.ward, _consented(holder))
            .distinct()
        )
    if audience.kind == "site_day":
        assert audience.site_id is not None and audience.day is not None
        return (
            select(holder)
            .join(Booking, Booking.health_book_id == HealthBook.id)
            .join(Session, Session.id == Booking.session_id)
            .where(
                Session.site_id == audience.site_id,
                Session.date == audience.day,
                Booking.status.in_(BOOKING_ACTIVE),
                _consented(holder),
            )
            .distinct()
        )
    if audience.kind == "due":
        assert audience.campaign_id is not None
        campaign = await get_campaign(session, audience.campaign_id)
        booked = exists().where(
            Booking.health_book_id == HealthBook.id,
            Booking.campaign_id == campaign.id,
            Booking.status.in_(BOOKING_ACTIVE),
        )
        return (
            select(holder)
            .join(Vaccination, Vaccination.health_book_id == HealthBook.id)
            .where(due_condition(campaign, today, tz), ~booked, _consented(holder))
            .distinct()
        )
    raise ValueError(f"unknown audience {audience.kind!r}")


async def count(session: AsyncSession, audience: Audience, today: dt.date, tz: ZoneInfo) -> int:
    """How many accounts the audience reaches now (counted by the database)."""
    ids = (await recipients(session, audience, today, tz)).subquery()
    return int(await session.scalar(select(func.count()).select_from(ids)) or 0)


async def check_audience(session: AsyncSession, audience: Audience) -> Audience:
    """An audience whose commune, site and campaign exist (``broadcast.no_commune``,
    ``site.not_found``, ``campaign.not_found`` otherwise)."""
    if audience.kind not in AUDIENCES or not audience.complete:
        raise DomainError("broadcast.no_audience")
    if audience.kind == "commune":
        try:
            v.ward_name(int(audience.ward))  # type: ignore[arg-type]
        except (KeyError, ValueError):
            raise DomainError("broadcast.no_commune", code=str(audience.ward)) from None
    if audience.kind == "site_day":
        await get_site(session, int(audience.site_id))  # type: ignore[arg-type]
    if audience.kind == "due":
        await get_campaign(session, int(audience.campaign_id))  # type: ignore[arg-type]
    return audience


async def parse_audience(session: AsyncSession, spec: str) -> Audience:
    """An audience written as on the command line: ``everyone``, ``commune:CODE``,
    ``site:SITECODE:YYYY-MM-DD``, ``due:CAMPAIGN`` (codes checked against the database)."""
    kind, _, rest = spec.partition(":")
    if kind == "everyone" and not rest:
        return Audience("everyone")
    if kind == "commune" and rest.isascii() and rest.isdigit() and len(rest) <= 6:
        return await check_audience(session, Audience("commune", ward=int(rest)))
    if kind == "site":
        code, _, day = rest.rpartition(":")
        try:
            date = dt.date.fromisoformat(day) if len(day) == 10 else None
        except ValueError:
            date = None
        if code and date is not None:
            site = await get_site(session, code)
            return Audience("site_day", site_id=site.id, day=date)
    if kind == "due" and rest:
        campaign = await get_campaign(session, rest)
        return Audience("due", campaign_id=campaign.id)
    raise DomainError("broadcast.bad_audience", spec=spec)


# --- drafts, sending, progress ------------------------------------------------------------------


async def start_draft(session: AsyncSession, admin_id: int, text: str) -> Broadcast:
    """A new draft of ``admin_id`` (their earlier unsent drafts are dropped)."""
    await session.execute(
        delete(Broadcast).where(Broadcast.created_by == admin_id, Broadcast.status == "draft")
    )
    draft = Broadcast(
        text=clean_text(text),
        audience="",
        audience_params={},
        created_by=admin_id,
        total=0,
        status="draft",
        progress_shown={},
    )
    session.add(draft)
    await session.flush()
    return draft


async def draft_of(session: AsyncSession, admin_id: int) -> Broadcast | None:
    """The admin's draft under way, if any."""
    return await session.scalar(
        select(Broadcast)
        .where(Broadcast.created_by == admin_id, Broadcast.status == "draft")
        .order_by(Broadcast.id.desc())
        .limit(1)
    )


def set_audience(draft: Broadcast, audience: Audience) -> None:
    """Record (part of) the audience chosen for a draft."""
    draft.audience = audience.kind
    draft.audience_params = audience.params()


def audience_of(broadcast: Broadcast) -> Audience:
    """A broadcast's audience."""
    return Audience.of(broadcast.audience, broadcast.audience_params or {})


async def send(
    session: AsyncSession,
    broadcast: Broadcast,
    *,
    today: dt.date,
    tz: ZoneInfo,
    due_at: dt.datetime,
    progress: tuple[str, str, str | None] | None = None,
) -> int:
    """Queue a copy for every recipient (one ``INSERT … SELECT``) and mark the broadcast
    sending; ``progress``: where its progress is shown (channel, chat, message id or None).
    Only a draft is sent, once: a second Confirm (a double tap, another process) finds it sent
    and queues nothing (``broadcast.not_draft``). Returns how many copies were queued."""
    audience = await check_audience(session, audience_of(broadcast))
    taken = await session.execute(
        update(Broadcast)
        .where(Broadcast.id == broadcast.id, Broadcast.status == "draft")
        .values(status="sending")
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        raise DomainError("broadcast.not_draft")
    ids = (await recipients(session, audience, today, tz)).subquery()
    when = to_utc(due_at)
    rows = select(
        literal(KIND, String),
        ids.c[0],
        literal(broadcast.id),
        literal({}, JsonType),
        literal(when, UTCDateTime()),
        literal(False),
        literal("pending", String),
        literal(0),
        literal(when, UTCDateTime()),
    )
    result = await session.execute(
        insert(OutboxMessage).from_select(
            [
                "kind",
                "account_id",
                "broadcast_id",
                "params",
                "due_at",
                "quiet_ok",
                "status",
                "attempts",
                "created_at",
            ],
            rows,
        )
    )
    total = int(result.rowcount or 0)  # type: ignore[attr-defined]
    values: dict[str, Any] = {"total": total, "status": "sending" if total else "done"}
    if progress is not None:
        values.update(
            progress_channel=progress[0], progress_chat=progress[1], progress_message=progress[2]
        )
    await session.execute(
        update(Broadcast)
        .where(Broadcast.id == broadcast.id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    await session.refresh(broadcast)
    return total


async def progress(session: AsyncSession, broadcast_id: int) -> Progress:
    """Copies sent, failed, left and dropped, counted now."""
    rows = await session.execute(
        select(OutboxMessage.status, func.count())
        .where(OutboxMessage.broadcast_id == broadcast_id)
        .group_by(OutboxMessage.status)
    )
    counts = {status: int(n) for status, n in rows}
    return Progress(
        sent=counts.get("sent", 0),
        failed=counts.get("failed", 0),
        left=counts.get("pending", 0) + counts.get("claimed", 0),
        dropped=counts.get("cancelled", 0),
    )


async def cancel_draft(session: AsyncSession, admin_id: int, broadcast_id: int) -> bool:
    """Drop an admin's draft (Cancel at the confirm step); whether there was one."""
    result = await session.execute(
        delete(Broadcast).where(
            Broadcast.id == broadcast_id,
            Broadcast.created_by == admin_id,
            Broadcast.status == "draft",
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


__all__ = [
    "AUDIENCES",
    "KIND",
    "MAX_TEXT",
    "Audience",
    "Progress",
    "audience_of",
    "cancel_draft",
    "check_audience",
    "clean_text",
    "count",
    "draft_of",
    "due_condition",
    "parse_audience",
    "progress",
    "recipients",
    "send",
    "set_audience",
    "start_draft",
]
