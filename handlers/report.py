"""/report (agency heads and admins) and the weekly report: a short summary, a chart of
coverage by sub-unit and a workbook, in the chat and, every week, through the dispatcher.
(Built on :mod:`models.reports`; the files are :mod:`models.report_files`'.)

``/report [CODE | province | communes] [2026-W47]``, in any order. A head reads the agencies
they head and their sub-units; an admin any agency, the province and the communes. A code out
of the reader's reach and a code that does not exist get the same refusal. Without a week the
figures are live (now), with the change since the last stored week; with a week, that week's
stored figures (the last complete week is stored now if it was not yet; an older week without
stored figures is refused, with the nearest stored week as an example).

The weekly job (every minute): once a week has ended its figures are stored; at ``[reports]
day``/``time`` of the next week every (agency, head) pair and every ``[reports] recipients``
account gets three outbox messages (``report``, ``report_chart``, ``report_file``), planned
once (``ReportWeek.planned_at``, and the outbox's unique ``dedupe``). Their renderers build the
report from the week's snapshot in the reader's language, or drop the message when the reader
no longer heads the agency or is no longer listed. A stored week never changes, so its report
is built once and its summary, chart and workbook drawn once per language and messenger
(:class:`RenderCache`, small and bounded), not once per reader and part; the chart and the
workbook are drawn in a worker thread, so the bot keeps answering chats meanwhile."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import unicodedata
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from babel.numbers import format_decimal
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler

from bot.channels.base import Reply
from bot.context import HBContext, Services
from bot.i18n import Translator
from handlers.common import (
    Turn,
    callback_parts,
    inline,
    is_one_shot,
    own_id,
    own_id_text,
    parse_id,
    turn,
)
from handlers.notices import Notice, renders
from models import agencies as ag
from models import healthbook as hb
from models import outbox, report_files
from models import reports as rp
from models.addresses import Address
from models.reference import ward_name
from models.roles import account_key, is_admin
from models.tables import Account, Agency, AgencyHead, AgencyWeek, ReportWeek
from models.timeutil import as_aware, to_utc

log = logging.getLogger(__name__)

PREFIX = "rp"
#: the words that name the province's and the communes' reports (as typed, folded to NFC)
PROVINCE_WORDS = frozenset({"province", "tinh", "tỉnh"})
COMMUNE_WORDS = frozenset({"communes", "xa", "xã"})
_WEEKISH = re.compile(r"^\d{4}-?[Ww]")  # looks like a week: read strictly as one
_WEEK_NUMBER = re.compile(r"^[Ww](\d{1,2})$")  # W47: the latest week 47 that has ended
#: a word before a week's number: ``tuần 47``
WEEK_WORDS = frozenset({"tuần", "tuan", "week"})
#: the weekly outbox messages, in the order they are sent (1 s apart)
PARTS = ("report", "report_chart", "report_file")
MAX_AGENCY_CHOICES = 12  # agencies offered as choices; the others are typed
TOP_WARDS = 5  # communes listed in the communes' summary (the workbook has them all)
WORD_CODE_MAX = 40  # of a word quoted back in a refusal
#: what the render cache holds: reports up to this many lines (agencies and communes; a line
#: is about a kilobyte), and summaries, charts and workbooks up to this many bytes
CACHED_LINES = 40_000
CACHED_BYTES = 32 * 1024 * 1024


# ---------------------------------------------------------------- who asks, and for what


@dataclass(frozen=True)
class Reader:
    """What a person may read: every report (an admin), and the agencies they head."""

    admin: bool
    heads: tuple[Agency, ...]

    def may(self, target: Target, agency: Agency | None) -> bool:
        """Whether this reader may read ``target`` (``agency``: its root, looked up)."""
        if self.admin:
            return target.scope != "agency" or agency is not None
        if target.scope != "agency" or agency is None:
            return False
        return any(ag.in_subtree(agency, root) for root in self.heads)

    def example(self, t: Translator) -> str:
        """A code or word to show in an example: their first agency's, else the province."""
        return self.heads[0].code if self.heads else t("report.word.province")


@dataclass(frozen=True)
class Target:
    """A report asked for: one agency's subtree, the province, or the communes."""

    scope: str  # models.reports.SCOPES
    agency_id: int | None = None


@dataclass(frozen=True)
class Asked:
    """What was typed after /report: a scope word or a code (or neither), and a week."""

    scope: str | None = None
    code: str | None = None
    week: str | None = None
    word: str = ""  # the scope word or code as typed (quoted back in a refusal)


class BadArgs(Exception):
    """Words after /report that cannot be read; ``key`` names the message."""

    def __init__(self, key: str, **params: object) -> None:
        super().__init__(key)
        self.key, self.params = key, params


def _week_word(word: str, now: dt.datetime | None, tz: ZoneInfo | None) -> str:
    """A week as typed: ``2026-W47`` (strict), or ``W47`` / a number after ``tuần``: the latest
    week of that number that has ended at ``now``."""
    number = _WEEK_NUMBER.match(word)
    try:
        if number is None or now is None or tz is None:
            return rp.parse_week(word)
        return rp.latest_week_numbered(int(number.group(1)), now, tz)
    except rp.NoSuchWeek as err:
        raise BadArgs("report.no_such_week", year=err.year, number=err.number) from None
    except ValueError:
        raise BadArgs("report.bad_week") from None


def parse_args(
    words: list[str], now: dt.datetime | None = None, tz: ZoneInfo | None = None
) -> Asked:
    """The words after /report, in any order: one code or scope word, one week (strict, or
    ``W47`` / ``tuần 47``: the latest week 47 that has ended at ``now``)."""
    scope = code = week = None
    said = ""
    words = [unicodedata.normalize("NFC", raw.strip()) for raw in words]
    joined: list[str] = []
    for word in words:  # "tuần 47" → "W47"
        if joined and joined[-1].casefold() in WEEK_WORDS and word.isascii() and word.isdigit():
            joined[-1] = f"W{word}"
        else:
            joined.append(word)
    for word in joined:
        folded = word.casefold()
        if _WEEKISH.match(word) or (now is not None and _WEEK_NUMBER.match(word)):
            if week is not None:
                raise BadArgs("report.bad_word", word=word[:WORD_CODE_MAX])
            week = _week_word(word, now, tz)
            continue
        if scope is not None or code is not None:
            raise BadArgs("report.bad_word", word=word[:WORD_CODE_MAX])
        said = word[:WORD_CODE_MAX]
        if folded in PROVINCE_WORDS:
            scope = "province"
        elif folded in COMMUNE_WORDS:
            scope = "communes"
        else:
            code = said  # looked up (or refused) as a code, by the caller
    return Asked(scope, code, week, said)


async def reader_of(turn_: Turn) -> Reader:
    """The sender's rights: every report for an admin (by role or by the settings) and for a
    ``[reports] recipients`` account (they receive the province's every week: they may ask for
    it, and for any agency's, again); head by their own account or the person's they are
    linked to."""
    settings = turn_.services.settings
    listed = settings.roles.admins
    accounts = {a.id: a for a in (turn_.own, turn_.account) if a is not None}
    keys = {own_id(turn_), *(account_key(a) for a in accounts.values())}
    admin = any(is_admin(a, listed) for a in accounts.values()) or bool(
        keys & set(settings.reports.recipients)
    )
    heads: dict[int, Agency] = {}
    for account in accounts.values():
        for agency in await ag.headed(turn_.session, account):
            heads[agency.id] = agency
    return Reader(admin, tuple(sorted(heads.values(), key=lambda a: a.code)))


# ---------------------------------------------------------------- /report and its choices


def _week_over(services: Services, week: str) -> bool:
    return rp.week_end(week, services.tz) <= to_utc(services.clock())


def _refuse_code(turn_: Turn, reader: Reader, word: str) -> None:
    """The one refusal of a code: unknown and out of reach read the same."""
    turn_.say(turn_.t("report.no_such_report", code=word, example=reader.example(turn_.t)))


@turn()
async def report_command(turn_: Turn) -> None:
    """/report [CODE | province | communes] [week]: the report, or the reports to choose."""
    t, services = turn_.t, turn_.services
    reader = await reader_of(turn_)
    if not reader.admin and not reader.heads:
        turn_.say(t("report.not_allowed") + "\n\n" + own_id_text(turn_))
        return
    turn_.keep_offer = True  # an aside: a health book's numbered choices still stand
    last = rp.last_complete_week(services.clock(), services.tz)
    example = reader.example(t)
    try:
        asked = parse_args(list(turn_.context.args or []), services.clock(), services.tz)
    except BadArgs as err:
        usage = "report.usage_admin" if reader.admin else "report.usage"
        turn_.say(t(err.key, week=last, **err.params) + "\n" + t(usage, example=example, week=last))
        return
    if asked.week is not None and not _week_over(services, asked.week):
        turn_.say(
            t("report.week_not_over", week=asked.week, last=last, example=f"{example} {last}")
        )
        return
    if asked.code is not None:
        agency = await ag.by_code(turn_.session, asked.code)
        target = Target("agency", agency.id if agency is not None else None)
        if not reader.may(target, agency):
            _refuse_code(turn_, reader, asked.code)
            return
    elif asked.scope is not None:
        target = Target(asked.scope)
        if not reader.may(target, None):
            _refuse_code(turn_, reader, asked.word)
            return
    elif not reader.admin and len(reader.heads) == 1:
        target = Target("agency", reader.heads[0].id)
    else:
        turn_.keep_offer = False  # its choices join the chat's open ones (offer_choices)
        current = await services.offers.load(turn_.session, turn_.channel, str(turn_.chat_id))
        offer_choices(turn_, reader, asked.week, replace=is_one_shot(current))
        return
    await send_report(turn_, target, asked.week)


def offer_choices(turn_: Turn, reader: Reader, week: str | None, *, replace: bool = False) -> None:
    """The reports this reader may choose: their agencies, and for an admin the province and
    the communes (any other agency is typed: ``/report CODE``). Sent as a notice to the chat
    itself, so that its choices are numbered after those a health book's question offers
    there (on Zalo, typing that question's numbers still answers it); with ``replace`` (the
    chat's open choice answers only the next message: a removal's "Yes"), in their place."""
    t = turn_.t
    tail = f":{week}" if week else ""
    rows = [
        [(t("report.choice.agency", code=a.code, name=a.name), f"{PREFIX}:a:{a.id}{tail}")]
        for a in reader.heads[:MAX_AGENCY_CHOICES]
    ]
    text = t("report.choose")
    if reader.admin:
        rows.append([(t("report.choice.province"), f"{PREFIX}:p{tail}")])
        rows.append([(t("report.choice.communes"), f"{PREFIX}:c{tail}")])
        last = rp.last_complete_week(turn_.services.clock(), turn_.services.tz)
        text += "\n" + t("report.usage_admin", example=reader.example(t), week=last)
    if replace:
        turn_.say(text, inline(rows))
        return
    chat = Address(turn_.channel, str(turn_.chat_id))
    turn_.notify(chat, text, inline(rows), locale=t.locale)


def parse_press(parts: list[str]) -> tuple[Target, str | None] | None:
    """A press's data after ``rp:``: ``a:<agency id>``, ``p`` or ``c``, then optionally
    ``:<week>`` (as this bot writes it); None when forged."""
    if not parts:
        return None
    kind, rest = parts[0], parts[1:]
    target: Target
    if kind == "a":
        if not rest:
            return None
        agency_id = parse_id(rest[0])
        if agency_id is None:
            return None
        target, rest = Target("agency", agency_id), rest[1:]
    elif kind in ("p", "c"):
        target = Target("province" if kind == "p" else "communes")
    else:
        return None
    if len(rest) > 1:
        return None
    week = None
    if rest:
        try:
            week = rp.parse_week(rest[0])
        except ValueError:
            return None
        if week != rest[0]:
            return None
    return target, week


@turn()
async def report_pressed(turn_: Turn) -> None:
    """A report chosen: checked again (rights, agency, week), then sent."""
    turn_.keep_offer = True
    t = turn_.t
    parts = callback_parts(turn_.update, PREFIX)
    pressed = parse_press(parts) if parts is not None else None
    reader = await reader_of(turn_)
    agency = None
    if pressed is not None and pressed[0].agency_id is not None:
        agency = await turn_.session.get(Agency, pressed[0].agency_id)
    if (
        pressed is None
        or not reader.may(pressed[0], agency)
        or (pressed[1] is not None and not _week_over(turn_.services, pressed[1]))
    ):
        turn_.toast(t("report.stale"), alert=True)
        return
    await send_report(turn_, *pressed)


# ---------------------------------------------------------------- the report itself

V = TypeVar("V")


@dataclass
class _Lru:
    """Least recently used entries, up to a total weight."""

    budget: int
    entries: OrderedDict[Hashable, tuple[Any, int]] = field(default_factory=OrderedDict)
    weight: int = 0
    hits: int = 0
    misses: int = 0

    def get(self, key: Hashable) -> Any | None:
        found = self.entries.get(key)
        if found is None:
            self.misses += 1
            return None
        self.hits += 1
        self.entries.move_to_end(key)
        return found[0]

    def put(self, key: Hashable, value: Any, weight: int) -> None:
        if weight > self.budget:
            return
        old = self.entries.pop(key, None)
        if old is not None:
            self.weight -= old[1]
        self.entries[key] = (value, weight)
        self.weight += weight
        while self.weight > self.budget:
            _, (_, dropped) = self.entries.popitem(last=False)
            self.weight -= dropped


@dataclass
class RenderCache:
    """Stored weeks' reports (by week, when it was stored, scope and agency) and what they
    render to (also by part, language, messenger and time zone). Exact: a stored week's
    figures never change, nor does the week its change is counted from (models.reports)."""

    reports: _Lru = field(default_factory=lambda: _Lru(CACHED_LINES))
    outputs: _Lru = field(default_factory=lambda: _Lru(CACHED_BYTES))
    # outputs being made: the dispatcher draws its batch's files at once (Reply.prepare), and
    # two heads of one agency wait for the same drawing
    making: dict[tuple[Hashable, ...], asyncio.Future[Any]] = field(default_factory=dict)
    #: weeks the weekly job could not store (no agencies yet): how many times it tried
    waiting: dict[str, int] = field(default_factory=dict)


# one cache per database's session factory (each application, each test has its own; freed
# with it): Services has no room for it, and it is no one's state but a copy of stored rows
_CACHES: weakref.WeakKeyDictionary[object, RenderCache] = weakref.WeakKeyDictionary()


def render_cache(services: Services) -> RenderCache:
    """The render cache of this database."""
    cache = _CACHES.get(services.sessions)
    if cache is None:
        cache = _CACHES[services.sessions] = RenderCache()
    return cache


async def build(
    session: AsyncSession, services: Services, target: Target, week: str | None
) -> rp.Report:
    """The report of a target, of a week or live (:func:`models.reports.build`)."""
    return await rp.build(
        session,
        scope=target.scope,
        tz=services.tz,
        now=to_utc(services.clock()),
        week=week,
        agency=target.agency_id,
    )


@dataclass(frozen=True)
class Rendering:
    """A report and how to draw it once: ``key`` None for a live report (never cached)."""

    report: rp.Report
    key: tuple[Hashable, ...] | None
    cache: RenderCache

    async def output(
        self, part: str, t: Translator, tz: ZoneInfo, make: Callable[[], Awaitable[V]]
    ) -> V:
        """A part (``report``: the summary, ``report_chart``, ``report_file``), made once."""
        if self.key is None:
            return await make()
        key = (*self.key, part, t.locale, t.channel, str(tz))
        found = self.cache.outputs.get(key)
        if found is not None:
            return found  # type: ignore[no-any-return]
        making = self.cache.making.get(key)
        if making is not None:
            return await asyncio.shield(making)  # type: ignore[no-any-return]
        making = self.cache.making[key] = asyncio.get_running_loop().create_future()
        try:
            found = await make()
        except asyncio.CancelledError:
            making.cancel()
            raise
        except Exception as exc:
            making.set_exception(exc)
            making.exception()  # retrieved: nobody else may be waiting
            raise
        finally:
            del self.cache.making[key]
        making.set_result(found)
        size = len(found) if isinstance(found, bytes | str) else 1
        self.cache.outputs.put(key, found, size)
        return found

    async def summary(self, t: Translator, tz: ZoneInfo) -> str:
        async def make() -> str:
            return summary(t, self.report, tz)

        return await self.output("report", t, tz, make)

    async def chart(self, t: Translator, tz: ZoneInfo) -> bytes:
        """The PNG, drawn in a worker thread (CPU work: the bot keeps answering meanwhile)."""
        return await self.output(
            "report_chart", t, tz, lambda: asyncio.to_thread(report_files.chart, self.report, t, tz)
        )

    async def workbook(self, t: Translator, tz: ZoneInfo) -> bytes:
        """The XLSX, written in a worker thread."""
        return await self.output(
            "report_file", t, tz,
            lambda: asyncio.to_thread(report_files.workbook, self.report, t, tz),
        )  # fmt: skip


async def rendering(
    session: AsyncSession, services: Services, target: Target, week: str | None
) -> Rendering:
    """A target's report, built once per stored week (cached; a week stored by this call is
    cached from the next); ValueError as :func:`models.reports.build`."""
    cache = render_cache(services)
    stored = None if week is None else await session.get(ReportWeek, week)
    if stored is None:
        return Rendering(await build(session, services, target, week), None, cache)
    key = (stored.week, as_aware(stored.taken_at), target.scope, target.agency_id)
    report = cache.reports.get(key)
    if report is None:
        report = await build(session, services, target, week)
        cache.reports.put(key, report, 1 + len(report.lines) + len(report.wards))
    return Rendering(report, key, cache)


async def _example(session: AsyncSession, t: Translator, target: Target, week: str) -> str:
    """What to type after /report for another week of the same report."""
    if target.scope == "agency":
        agency = await session.get(Agency, target.agency_id) if target.agency_id else None
        word = agency.code if agency is not None else ""
    else:
        word = t(f"report.word.{target.scope}")
    return f"{word} {week}".strip()


async def send_report(turn_: Turn, target: Target, week: str | None) -> None:
    """Say the summary, then send the chart and the workbook."""
    services, t, tz = turn_.services, turn_.t, turn_.services.tz
    try:
        drawn = await rendering(turn_.session, services, target, week)
    except rp.NotStored as err:  # an older week never stored: the nearest one that is
        example = await _example(turn_.session, t, target, err.example)
        turn_.say(t("report.no_week", week=err.week, example=example))
        return
    except rp.NoAgencies:  # no week is stored empty: the agencies are imported first
        turn_.say(t("report.no_agencies"))
        return
    except ValueError:  # an agency that had no figures that week: as any code out of reach
        turn_.say(t("report.no_figures", week=week or ""))
        return
    png = await drawn.chart(t, tz)
    xlsx = await drawn.workbook(t, tz)
    turn_.say(await drawn.summary(t, tz))
    turn_.send_photo(png)
    turn_.send_document(xlsx, file_name(drawn.report, tz), caption(t, drawn.report, tz))


def caption(t: Translator, report: rp.Report, tz: dt.tzinfo) -> str:
    """The workbook's caption: what the file is and what to type to get it again (on Zalo,
    where its download link expires, the channel adds the link after it)."""
    if report.scope == "agency" and report.root is not None:
        word = report.root.code
    else:
        word = t(f"report.word.{report.scope}")
    if report.week is not None:
        return t("report.caption.week", week=report.week, example=f"{word} {report.week}")
    local = as_aware(report.moment).astimezone(tz)
    return t(
        "report.caption.live", time=f"{local:%H:%M}", day=t.date(local.date()), example=word
    )


def file_name(report: rp.Report, tz: dt.tzinfo, ext: str = "xlsx") -> str:
    """``bao-cao-<code>-2026-W48.xlsx`` (``tinh``: the province, ``xa``: the communes); a live
    report is named by its local date and time."""
    if report.scope == "agency" and report.root is not None:
        what = report.root.code
    else:
        what = "tinh" if report.scope == "province" else "xa"
    when = report.week or f"{as_aware(report.moment).astimezone(tz):%Y-%m-%d-%H%M}"
    return f"bao-cao-{what}-{when}.{ext}"


def _percent(part: int, whole: int) -> str:
    """A whole percentage, halves up (as a spreadsheet rounds the workbook's share)."""
    return f"{(200 * part + whole) // (2 * whole)}%" if whole else "—"


def _n(t: Translator, count: int) -> str:
    """A count with the reader's thousands separator (vi 2.737, en 2,737)."""
    return format_decimal(count, locale=t.locale)


def _change(t: Translator, now: int, before: int | None) -> str:
    """The change since last week, in words (not in brackets: a share is in brackets)."""
    if before is None:
        return ""
    diff = now - before
    if diff == 0:
        return t("report.change.same")
    key = "report.change.up" if diff > 0 else "report.change.down"
    return t(key, count=_n(t, abs(diff)))


def _ward_name(code: int) -> str:
    try:
        return ward_name(code)
    except KeyError:  # a commune merged away since: its code
        return str(code)


def summary(t: Translator, report: rp.Report, tz: dt.tzinfo) -> str:
    """The short message: whose, when, and each figure with its change since last week."""
    lines = []
    if report.scope == "agency" and report.root is not None:
        lines.append(t("report.title.agency", name=report.root.name, code=report.root.code))
    else:
        lines.append(t(f"report.title.{report.scope}"))
    if report.week is not None:
        monday = rp.week_monday(report.week)
        lines.append(
            t(
                "report.when.week",
                week=report.week,
                first=t.date(monday),
                last=t.date(monday + dt.timedelta(days=6)),
            )
        )
    else:
        local = as_aware(report.moment).astimezone(tz)
        lines.append(t("report.when.live", time=f"{local:%H:%M}", day=t.date(local.date())))
    if report.late and report.taken_at is not None:
        taken = as_aware(report.taken_at).astimezone(tz).date()
        lines.append(t("report.late", day=t.date(taken)))
    if report.previous_week is not None:
        lines.append(t("report.change_from", week=report.previous_week))
    else:
        lines.append(t("report.no_change_yet"))
    blocks = ["\n".join(lines)]
    if report.scope != "communes":
        blocks.append("\n".join(_staff_lines(t, report)))
    if report.scope != "agency":
        blocks.append("\n".join(_ward_lines(t, report)))
    return "\n\n".join(blocks)


def _staff_lines(t: Translator, report: rp.Report) -> list[str]:
    total, before = report.total, report.previous_total
    if report.root is not None:
        expected = report.root.expected
        units = len(report.lines) - 1
    else:
        expected = sum(line.expected for line in report.lines if line.depth == 0)
        units = len(report.lines)

    def was(name: str) -> int | None:
        return None if before is None else int(getattr(before, name))

    # both shares of the expected staff, as the workbook's and the chart's
    lines = [
        t(
            "report.line.joined",
            count=_n(t, total.joined),
            expected=_n(t, expected),
            percent=_percent(total.joined, expected),
            change=_change(t, total.joined, was("joined")),
        ),
        t(
            "report.line.complete",
            count=_n(t, total.complete),
            expected=_n(t, expected),
            percent=_percent(total.complete, expected),
            change=_change(t, total.complete, was("complete")),
        ),
        t(
            "report.line.booked",
            count=_n(t, total.booked),
            change=_change(t, total.booked, was("booked")),
        ),
    ]
    doses = total.doses or (0,)
    for n, count in enumerate(doses, 1):
        earlier = None
        if before is not None:
            earlier = before.doses[n - 1] if n <= len(before.doses) else 0
        lines.append(
            t("report.line.dose", dose=n, count=_n(t, count), change=_change(t, count, earlier))
        )
    lines.append(
        t(
            "report.line.relatives",
            count=_n(t, total.relatives),
            change=_change(t, total.relatives, was("relatives")),
        )
    )
    if units:
        lines.append(t("report.line.units", count=_n(t, units)))
    return lines


def _ward_lines(t: Translator, report: rp.Report) -> list[str]:
    wards = report.wards
    registered = sum(w.registered for w in wards)
    vaccinated = sum(w.vaccinated for w in wards)
    adults = sum(w.adults for w in wards)
    adults_vaccinated = sum(w.adults_vaccinated for w in wards)
    # as the workbook's: last week's total when every commune has last week's figure (a
    # commune without one that week had 0: models.reports.build)
    previous = [w.previous_registered for w in wards]
    before = None
    if report.previous_week is not None and not any(p is None for p in previous):
        before = sum(p for p in previous if p is not None)
    lines = [
        t(
            "report.line.residents",
            registered=_n(t, registered),
            vaccinated=_n(t, vaccinated),
            change=_change(t, registered, before),
        ),
        t(
            "report.line.adults",
            vaccinated=_n(t, adults_vaccinated),
            adults=_n(t, adults),
            percent=_percent(adults_vaccinated, adults),
        ),
    ]
    if report.scope != "communes":
        return lines
    if not wards:
        return [*lines, t("report.no_wards")]
    lines.append(t("report.top_wards"))
    top = sorted(wards, key=lambda w: (-w.registered, w.ward_code))
    for w in top[:TOP_WARDS]:
        lines.append(
            t(
                "report.line.ward",
                name=_ward_name(w.ward_code),
                registered=_n(t, w.registered),
                vaccinated=_n(t, w.vaccinated),
                percent=_percent(w.adults_vaccinated, w.adults),
                change=_change(t, w.registered, w.previous_registered),
            )
        )
    if len(top) > TOP_WARDS:
        lines.append(t("report.more_wards", count=_n(t, len(top) - TOP_WARDS)))
    return lines


# ---------------------------------------------------------------- the weekly job


def send_time(week: str, services: Services) -> dt.datetime:
    """When a week's report goes: ``[reports] day`` and ``time`` of the week after it, in the
    province's time (UTC)."""
    settings = services.settings.reports
    day = rp.week_monday(rp.shift_week(week, 1)) + dt.timedelta(days=settings.weekday)
    return to_utc(dt.datetime.combine(day, settings.at, tzinfo=services.tz))


async def recipient_accounts(
    session: AsyncSession, services: Services
) -> tuple[list[Account], int]:
    """The ``[reports] recipients`` that have an account (they wrote to the bot once), and
    how many listed have none (they cannot be reached)."""
    found: dict[int, Account] = {}
    missing = 0
    for key in services.settings.reports.recipients:
        channel, _, external_id = key.partition(":")
        account = await hb.find_account(session, channel, external_id)
        if account is None:
            missing += 1
        else:
            found.setdefault(account.id, account)
    return list(found.values()), missing


def _plan(
    session: AsyncSession, week: str, scope: str, agency_id: int | None, account_id: int,
    at: dt.datetime,
) -> None:  # fmt: skip
    params: dict[str, Any] = {"week": week, "scope": scope, "agency_id": agency_id}
    for n, part in enumerate(PARTS):
        outbox.enqueue(
            session,
            kind=part,
            account_id=account_id,
            due_at=at + dt.timedelta(seconds=n),
            params=params,
            # "report:WEEK:SCOPE:AGENCY:ACCOUNT:PART" (not a button's data)
            dedupe=":".join(("report", week, scope, str(agency_id or 0), str(account_id), part)),
        )


async def plan_week(session: AsyncSession, services: Services, week: str, at: dt.datetime) -> int:
    """Plan a week's messages (the caller's transaction): every head of every agency the
    week's snapshot holds, and the province's recipients; how many readers."""
    pairs = await session.execute(
        select(AgencyHead.agency_id, AgencyHead.account_id)
        .join(
            AgencyWeek,
            (AgencyWeek.agency_id == AgencyHead.agency_id) & (AgencyWeek.week == week),
        )
        .order_by(AgencyHead.agency_id, AgencyHead.account_id)
    )
    count = 0
    for agency_id, account_id in pairs.all():
        _plan(session, week, "agency", agency_id, account_id, at)
        count += 1
    recipients, missing = await recipient_accounts(session, services)
    for account in recipients:
        _plan(session, week, "province", None, account.id, at)
        count += 1
    if missing:  # a count only: the ids are in the settings
        log.warning(
            "weekly report %s: %d of the [reports] recipients cannot be reached: no account "
            "(they never wrote to the bot)", week, missing,
        )  # fmt: skip
    await session.flush()
    return count


async def run_weekly(services: Services) -> str | None:
    """Store the last complete week's figures once it has ended, and plan its messages once
    its time has come; the week planned now, if any."""
    now, tz = to_utc(services.clock()), services.tz
    week = rp.last_complete_week(now, tz)
    async with services.sessions() as session, session.begin():
        stored = await session.get(ReportWeek, week)
        if stored is None:
            try:
                stored = await rp.take_snapshot(session, week, tz, now)
            except rp.NoAgencies:  # not stored empty for good: it waits for the import
                _log_waiting(services, week)
                return None
            waited = render_cache(services).waiting.pop(week, 0)
            log.info("weekly report %s: figures stored (after %d minutes waiting for the "
                     "agencies)" if waited else "weekly report %s: figures stored",
                     *((week, waited) if waited else (week,)))  # fmt: skip
        if stored.planned_at is not None:
            return None
    settings = services.settings.reports
    if not settings.weekly or now < send_time(week, services):
        return None
    try:
        async with services.sessions() as session, session.begin():
            stored = await session.get(ReportWeek, week, with_for_update=True)
            if stored is None or stored.planned_at is not None:  # another bot was first
                return None
            readers = await plan_week(session, services, week, now)
            stored.planned_at = now
    except IntegrityError:  # another bot planned the same messages meanwhile (dedupe)
        log.info("weekly report %s: planned by another process", week)
        return None
    log.info("weekly report %s: planned for %d readers", week, readers)
    return week


def _log_waiting(services: Services, week: str) -> None:
    """Say once (per week and process) that a week waits for the agencies; count the tries
    (one a minute), said when it is stored."""
    cache = render_cache(services)
    if cache.waiting.get(week) is None:
        log.warning(
            "weekly report %s: not stored: no agencies yet; import them first (healthbook "
            "agencies import)", week,
        )  # fmt: skip
        cache.waiting[week] = 0
    cache.waiting[week] += 1


async def weekly_job(context: HBContext) -> None:
    """Every minute: once the weekly time has come, store last week's figures and plan the
    messages to every agency head and the province's recipients (once per week)."""
    await run_weekly(context.services)


# ---------------------------------------------------------------- what the readers receive


async def _still_reads(n: Notice, scope: str, agency_id: int | None) -> bool:
    """Whether the recipient still heads the agency, or is still a listed recipient."""
    if scope == "agency":
        if agency_id is None:
            return False
        head = await n.session.get(AgencyHead, (agency_id, n.account.id))
        return head is not None
    recipients, _ = await recipient_accounts(n.session, n.services)
    return any(a.id == n.account.id for a in recipients)


@renders(*PARTS)
async def render_report(n: Notice) -> Reply | None:
    """A part of the weekly report, built from the week's snapshot in the reader's language;
    None (dropped) when they no longer read it."""
    params = n.message.params or {}
    week, scope, agency_id = params.get("week"), params.get("scope"), params.get("agency_id")
    if not isinstance(week, str) or scope not in ("agency", "province"):
        return None
    if agency_id is not None and not isinstance(agency_id, int):
        return None
    if await n.session.get(ReportWeek, week) is None:
        return None
    if not await _still_reads(n, scope, agency_id):
        return None
    try:
        drawn = await rendering(n.session, n.services, Target(scope, agency_id), week)
    except ValueError:
        return None
    t, tz = n.t, n.services.tz
    if n.message.kind == "report":  # why it came: the weekly report; /report for the latest
        return Reply(text=t("report.weekly") + "\n\n" + await drawn.summary(t, tz))
    # the files are drawn by the dispatcher after the claim's transaction (Reply.prepare): on
    # SQLite's one connection, chats would otherwise wait for a batch of charts
    reply = Reply()
    if n.message.kind == "report_file":
        reply.text = caption(t, drawn.report, tz)

    async def draw() -> None:
        if n.message.kind == "report_chart":
            reply.photo = await drawn.chart(t, tz)
        else:
            reply.document = (await drawn.workbook(t, tz), file_name(drawn.report, tz))

    reply.prepare = draw
    return reply


def handlers() -> list[BaseHandler]:  # type: ignore[type-arg]
    """Top-level handlers: /report and its choices."""
    return [
        CommandHandler("report", report_command),
        CallbackQueryHandler(report_pressed, pattern=rf"^{PREFIX}:"),
    ]


__all__ = [
    "PARTS",
    "Asked",
    "BadArgs",
    "Reader",
    "RenderCache",
    "Target",
    "file_name",
    "handlers",
    "parse_args",
    "parse_press",
    "plan_week",
    "run_weekly",
    "send_time",
    "summary",
    "weekly_job",
]
