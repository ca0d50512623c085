"""Campaign, site and session data for vaccination booking: loading the data files in
``models/data`` (campaigns as TOML, sites as CSV) and creating sessions in bulk.

Used by the admin CLI and the demo. Every loader is idempotent (upsert by code, sessions keyed
by site, campaign, date and start time), so running it twice changes nothing. The caller owns
the transaction. Problems are reported all at once as a :class:`DataError` naming the file and
line, and nothing is written when there is any.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import validators as v
from models.reference import DATA_DIR
from models.tables import Campaign, HealthBook, Session, Site, Vaccine

CAMPAIGNS_DIR = DATA_DIR / "campaigns"
SAMPLE_CAMPAIGNS = (
    CAMPAIGNS_DIR / "covid19_2021.toml",
    CAMPAIGNS_DIR / "influenza_seasonal.toml",
)
SAMPLE_SITES = DATA_DIR / "sites_lao_cai.csv"
SAMPLE_PROVINCE = 15  # Lào Cai
SAMPLE_WARD = 3006  # Phường Sa Pa

SITE_KINDS = ("commune_station", "hospital")
SITE_COLUMNS = ("code", "name", "address", "province_code", "ward_code", "lat", "lon", "kind")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Vietnam's mainland and islands: a point outside is a typo or swapped lat/lon.
_VN_LAT = (8.0, 23.5)
_VN_LON = (102.0, 117.5)
_CODE = re.compile(r"[A-Za-z0-9_-]{1,32}")
SAVE_AS_CSV_UTF8 = 'save the file as "CSV UTF-8 (comma delimited)" and try again'
# Bulk session creation: a typo (an extra zero) must not fill the table for centuries or
# overflow a column; a day of a large hospital is far below MAX_CAPACITY.
MAX_CAPACITY = 10_000
MAX_SPAN_DAYS = 731  # two years
SESSION_DATES = (dt.date(2000, 1, 1), dt.date(2099, 12, 31))


class DataError(ValueError):
    """A data file or admin request that cannot be used; ``problems`` lists every reason."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(problems))
        self.source = source
        self.problems = list(problems)


# --- campaigns --------------------------------------------------------------------------------


def _int(raw: Any, what: str, problems: list[str], *, low: int = 0) -> int | None:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < low:
        problems.append(f"{what} must be a whole number ≥ {low}")
        return None
    return raw


def _days(raw: Any, what: str, gaps: int, problems: list[str], *, optional: bool) -> list[Any]:
    """A per-gap list of day counts (one entry per interval between doses)."""
    if raw is None:
        if optional:
            return [None] * gaps
        raw = []
    if not isinstance(raw, list) or len(raw) != gaps:
        problems.append(f"{what} must list {gaps} interval(s), one per gap between doses")
        return [None] * gaps
    for i, days in enumerate(raw):
        _int(days, f"{what}[{i}]", problems)
    return list(raw)


def _age(row: dict[str, Any], bound: str, problems: list[str]) -> int | None:
    """``min_age_years``/``min_age_months`` (or max_…) as months; a maximum in years includes
    the whole last year of age (max 17 years: up to the day before the 18th birthday)."""
    years, months = row.get(f"{bound}_age_years"), row.get(f"{bound}_age_months")
    if years is not None and months is not None:
        problems.append(f"give {bound}_age_years or {bound}_age_months, not both")
        return None
    if years is not None:
        y = _int(years, f"{bound}_age_years", problems)
        if y is None:
            return None
        return y * 12 + (11 if bound == "max" else 0)
    if months is not None:
        return _int(months, f"{bound}_age_months", problems)
    return 0 if bound == "min" else None


def _parse_campaign(row: dict[str, Any], vaccines: set[str], problems: list[str]) -> dict[str, Any]:
    code = row.get("code")
    where = f"campaign {code!r}"
    out: list[str] = []
    if not isinstance(code, str) or not _CODE.fullmatch(code):
        out.append("code must be 1-32 letters, digits, _ or -")
    name = row.get("name")
    if not isinstance(name, str) or not name.strip():
        out.append("name is required")
    listed = row.get("vaccines")
    if not isinstance(listed, list) or not listed:
        out.append("vaccines must list at least one vaccine code")
        listed = []
    for vaccine in listed:
        if vaccine not in vaccines:
            out.append(f"vaccine {vaccine!r} is not defined")
    doses = _int(row.get("doses", 1), "doses", out, low=1) or 1
    gaps = doses - 1
    min_days = _days(row.get("min_days"), "min_days", gaps, out, optional=gaps == 0)
    max_days = _days(row.get("max_days"), "max_days", gaps, out, optional=True)
    schedules: dict[str, Any] = {}
    for vaccine, own in (row.get("schedule") or {}).items():
        if vaccine not in listed:
            out.append(f"schedule.{vaccine}: not one of this campaign's vaccines")
            continue
        schedules[vaccine] = {
            "min_days": _days(
                own.get("min_days"), f"schedule.{vaccine}.min_days", gaps, out, optional=False
            ),
            "max_days": _days(
                own.get("max_days"), f"schedule.{vaccine}.max_days", gaps, out, optional=True
            ),
        }
    starts_on, ends_on = row.get("starts_on"), row.get("ends_on")
    if not isinstance(starts_on, dt.date) or isinstance(starts_on, dt.datetime):
        out.append("starts_on must be a date (YYYY-MM-DD)")
    if ends_on is not None and (
        not isinstance(ends_on, dt.date) or (isinstance(starts_on, dt.date) and ends_on < starts_on)
    ):
        out.append("ends_on must be a date on or after starts_on")
    booster_min_days = row.get("booster_min_days")
    if booster_min_days is not None:
        _int(booster_min_days, "booster_min_days", out)
    boosters = row.get("boosters")
    if boosters is not None:
        _int(boosters, "boosters", out)
    min_age, max_age = _age(row, "min", out), _age(row, "max", out)
    if min_age is not None and max_age is not None and max_age < min_age:
        out.append("the maximum age is below the minimum age")
    active = row.get("active", True)
    if not isinstance(active, bool):
        out.append("active must be true or false")
    problems.extend(f"{where}: {p}" for p in out)
    return {
        "code": code,
        "name": name.strip() if isinstance(name, str) else "",
        "vaccine_codes": list(listed),
        "doses": doses,
        "min_days": min_days,
        "max_days": max_days,
        "schedules": schedules,
        "booster_min_days": booster_min_days,
        "boosters": boosters,
        "min_age_months": min_age or 0,
        "max_age_months": max_age,
        "starts_on": starts_on,
        "ends_on": ends_on,
        "active": active,
    }


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file's content, or a :class:`DataError` (with the parser's line and column)."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise DataError(str(path), [str(exc)]) from None


async def load_campaign_file(session: AsyncSession, path: Path | str) -> list[Campaign]:
    """Create or update (by code) the vaccines and campaigns of a TOML file."""
    path = Path(path)
    data = read_toml(path)  # a few KB, read once by an admin command: no thread needed
    problems: list[str] = []
    vaccine_rows = data.get("vaccine", [])
    for row in vaccine_rows:
        code = row.get("code")
        if not isinstance(code, str) or not _CODE.fullmatch(code):
            problems.append(f"vaccine {code!r}: code must be 1-32 letters, digits, _ or -")
        for key in ("name", "manufacturer"):
            if not isinstance(row.get(key), str) or not row[key].strip():
                problems.append(f"vaccine {code!r}: {key} is required")
    known = set((await session.scalars(select(Vaccine.code))).all())
    known |= {row.get("code") for row in vaccine_rows}
    campaign_rows = data.get("campaign", [])
    if not campaign_rows:
        problems.append("no [[campaign]] in the file")
    parsed = [_parse_campaign(row, known, problems) for row in campaign_rows]
    if problems:
        raise DataError(str(path), problems)

    for row in vaccine_rows:
        vaccine = await session.get(Vaccine, row["code"]) or Vaccine(code=row["code"])
        vaccine.name, vaccine.manufacturer = row["name"].strip(), row["manufacturer"].strip()
        session.add(vaccine)
    await session.flush()  # campaigns refer to the vaccines by code
    campaigns = []
    for values in parsed:
        campaign = await session.scalar(select(Campaign).where(Campaign.code == values["code"]))
        if campaign is None:
            campaign = Campaign()
            session.add(campaign)
        for key, value in values.items():
            setattr(campaign, key, value)
        campaigns.append(campaign)
    await session.flush()
    return campaigns


async def list_campaigns(session: AsyncSession) -> list[Campaign]:
    """Every campaign, by code."""
    return list((await session.scalars(select(Campaign).order_by(Campaign.code))).all())


async def active_campaigns(session: AsyncSession, today: dt.date) -> list[Campaign]:
    """The campaigns open for booking on ``today``, by name."""
    stmt = (
        select(Campaign)
        .where(Campaign.active.is_(True), Campaign.starts_on <= today)
        .where((Campaign.ends_on.is_(None)) | (Campaign.ends_on >= today))
        .order_by(Campaign.name)
    )
    return list((await session.scalars(stmt)).all())


# --- sites ------------------------------------------------------------------------------------


@dataclass
class SiteImport:
    """What a CSV import did."""

    created: int = 0
    updated: int = 0
    codes: list[str] = field(default_factory=list)


def _site_row(row: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    """One CSV row as Site values, and what is wrong with it."""
    out: list[str] = []
    values: dict[str, Any] = {}
    code = (row.get("code") or "").strip()
    if not _CODE.fullmatch(code):
        out.append("code must be 1-32 letters, digits, _ or -")
    values["code"] = code
    for key, limit in (("name", 120), ("address", 200)):
        text = " ".join((row.get(key) or "").split())
        if not text or len(text) > limit:
            out.append(f"{key} is required (at most {limit} characters)")
        values[key] = text
    province = ward = None
    try:
        province = int(row.get("province_code") or "")
        if not v.is_province(province):
            out.append(f"province_code {province} is not a current province")
            province = None
    except ValueError:
        out.append("province_code must be a number")
    try:
        ward = int(row.get("ward_code") or "")
    except ValueError:
        out.append("ward_code must be a number")
    if province is not None and ward is not None and not v.ward_in_province(ward, province):
        out.append(
            f"ward_code {ward} is not a commune/ward of {v.province_name(province)} ({province})"
        )
    values["province_code"], values["ward_code"] = province, ward
    for key, (low, high) in (("lat", _VN_LAT), ("lon", _VN_LON)):
        try:
            number = float(row.get(key) or "")
        except ValueError:
            out.append(f"{key} must be a number")
            continue
        if not low <= number <= high:
            out.append(f"{key} {number} is outside Vietnam ({low}..{high}); swapped lat/lon?")
        values[key] = number
    kind = (row.get("kind") or "").strip()
    if kind not in SITE_KINDS:
        out.append(f"kind must be one of {', '.join(SITE_KINDS)}")
    values["kind"] = kind
    values["notes"] = " ".join((row.get("notes") or "").split()) or None
    return values, out


def read_sites_csv(path: Path) -> list[dict[str, Any]]:
    """The checked rows of a sites CSV file, or a :class:`DataError` listing every bad row by
    line number (each ward must belong to its province)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(str(path), [exc.strerror or str(exc)]) from None
    try:
        text = data.decode("utf-8-sig")  # -sig: files saved by Excel
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(str(path), [f"line {line}: not UTF-8 text; {SAVE_AS_CSV_UTF8}"]) from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    problems: list[str] = []
    rows: list[dict[str, Any]] = []
    try:
        header = reader.fieldnames or []
        missing = [c for c in SITE_COLUMNS if c not in header]
        if missing:
            problem = f"line 1: missing column(s) {', '.join(missing)}"
            if len(header) == 1 and any(sep in header[0] for sep in ";\t"):
                problem += f" (the columns are not separated by commas; {SAVE_AS_CSV_UTF8})"
            else:
                problem += f" (the first line names the columns: {','.join(SITE_COLUMNS)},notes)"
            raise DataError(str(path), [problem])
        seen: dict[str, int] = {}
        for row in reader:
            line = reader.line_num
            values, wrong = _site_row(row)
            if values["code"] in seen:
                wrong.append(f"code {values['code']} already on line {seen[values['code']]}")
            seen.setdefault(values["code"], line)
            problems.extend(f"line {line}: {w}" for w in wrong)
            rows.append(values)
    except csv.Error as exc:
        raise DataError(str(path), [f"line {reader.line_num}: {exc}"]) from None
    if not rows and not problems:
        problems.append("no sites in the file")
    if problems:
        raise DataError(str(path), problems)
    return rows


async def import_sites_csv(session: AsyncSession, path: Path | str) -> SiteImport:
    """Create or update (by code) the sites of a CSV file; any bad row: a :class:`DataError`
    listing each by line number, and nothing written."""
    rows = read_sites_csv(Path(path))
    result = SiteImport()
    for values in rows:
        site = await session.scalar(select(Site).where(Site.code == values["code"]))
        if site is None:
            site = Site(active=True)
            session.add(site)
            result.created += 1
        else:
            result.updated += 1
        for key, value in values.items():
            setattr(site, key, value)
        result.codes.append(values["code"])
    await session.flush()
    return result


async def list_sites(session: AsyncSession, province_code: int | None = None) -> list[Site]:
    """Sites, by code (of one province if given)."""
    stmt = select(Site).order_by(Site.code)
    if province_code is not None:
        stmt = stmt.where(Site.province_code == province_code)
    return list((await session.scalars(stmt)).all())


# --- sessions ---------------------------------------------------------------------------------


def parse_weekdays(text: str) -> frozenset[int]:
    """``"mon-fri"``, ``"mon,wed,fri"``, ``"sat-sun"`` or ``"all"`` as weekdays (Monday 0)."""
    text = text.strip().lower()
    if text in ("all", "daily"):
        return frozenset(range(7))
    days: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        first, _, last = part.partition("-")
        if first[:3] not in WEEKDAYS or (last and last[:3] not in WEEKDAYS):
            raise DataError("weekdays", [f"{part!r}: use mon, tue, wed, thu, fri, sat, sun"])
        start = WEEKDAYS.index(first[:3])
        end = WEEKDAYS.index(last[:3]) if last else start
        days.update(range(start, end + 1) if start <= end else [*range(start, 7), *range(end + 1)])
    if not days:
        raise DataError("weekdays", ["no weekday given"])
    return frozenset(days)


@dataclass
class SessionsCreated:
    """What a bulk session creation did."""

    created: int = 0
    existing: int = 0
    outside_campaign: int = 0


async def create_sessions(
    session: AsyncSession,
    site_codes: Iterable[str] | None,
    campaign_code: str,
    start_date: dt.date,
    *,
    days: int | None = None,
    weeks: int | None = None,
    weekdays: Iterable[int] = range(5),
    start: dt.time = dt.time(7, 30),
    end: dt.time = dt.time(11, 30),
    capacity: int = 60,
) -> SessionsCreated:
    """Sessions of a campaign at some sites (``None``: every active site) on the given weekdays
    for ``days`` days or ``weeks`` weeks (default 4 weeks); ones that exist are left alone.
    Out-of-range values (capacity, period length, first date, a period wholly outside the
    campaign's dates) are a :class:`DataError` naming each."""
    problems = []
    span = days if days is not None else (weeks if weeks is not None else 4) * 7
    low, high = SESSION_DATES
    period_ok = 1 <= span <= MAX_SPAN_DAYS and low <= start_date <= high
    if not 1 <= span <= MAX_SPAN_DAYS:
        problems.append(f"the period must be 1 to {MAX_SPAN_DAYS} days (104 weeks)")
    if not low <= start_date <= high:
        problems.append(f"the first date must be between {low} and {high}")
    if not 1 <= capacity <= MAX_CAPACITY:
        problems.append(f"capacity must be 1 to {MAX_CAPACITY}")
    if end <= start:
        problems.append("the end time must be after the start time")
    wanted_days = frozenset(weekdays)
    if not wanted_days or not wanted_days <= set(range(7)):
        problems.append("weekdays must be numbers 0 (Monday) to 6 (Sunday)")
    campaign = await session.scalar(select(Campaign).where(Campaign.code == campaign_code))
    if campaign is None:
        problems.append(f"no campaign {campaign_code!r}")
    elif period_ok and not _meets(campaign, start_date, span):
        last = start_date + dt.timedelta(days=span - 1)
        problems.append(
            f"the period {start_date}..{last} is outside the campaign's dates "
            f"({campaign.starts_on}..{campaign.ends_on or ''})"
        )
    stmt = select(Site).order_by(Site.code)
    if site_codes is None:
        stmt = stmt.where(Site.active.is_(True))
    else:
        codes = list(dict.fromkeys(site_codes))
        stmt = stmt.where(Site.code.in_(codes))
    sites = list((await session.scalars(stmt)).all())
    if site_codes is not None:
        unknown = sorted(set(codes) - {s.code for s in sites})
        problems.extend(f"no site {code!r}" for code in unknown)
    if problems:
        raise DataError("sessions", problems)
    assert campaign is not None
    dates = [start_date + dt.timedelta(days=i) for i in range(span)]
    dates = [d for d in dates if d.weekday() in wanted_days]
    result = SessionsCreated()
    in_campaign = [
        d
        for d in dates
        if d >= campaign.starts_on and (campaign.ends_on is None or d <= campaign.ends_on)
    ]
    result.outside_campaign = (len(dates) - len(in_campaign)) * len(sites)
    if not in_campaign or not sites:
        return result
    existing = set(
        (
            await session.execute(
                select(Session.site_id, Session.date).where(
                    Session.campaign_id == campaign.id,
                    Session.site_id.in_([s.id for s in sites]),
                    Session.date.between(in_campaign[0], in_campaign[-1]),
                    Session.start_time == start,
                )
            )
        ).all()
    )
    for site in sites:
        for day in in_campaign:
            if (site.id, day) in existing:
                result.existing += 1
                continue
            session.add(
                Session(
                    site_id=site.id,
                    campaign_id=campaign.id,
                    date=day,
                    start_time=start,
                    end_time=end,
                    capacity=capacity,
                    booked=0,
                )
            )
            result.created += 1
    await session.flush()
    return result


def _meets(campaign: Campaign, first: dt.date, span: int) -> bool:
    """Whether the ``span`` days from ``first`` share a day with the campaign's dates."""
    last = first + dt.timedelta(days=span - 1)
    return last >= campaign.starts_on and (campaign.ends_on is None or first <= campaign.ends_on)


async def list_sessions(
    session: AsyncSession,
    *,
    site_code: str | None = None,
    date: dt.date | None = None,
    from_date: dt.date | None = None,
) -> list[tuple[Session, Site, Campaign]]:
    """Sessions with their site and campaign, by date, time and site."""
    stmt = (
        select(Session, Site, Campaign)
        .join(Site, Site.id == Session.site_id)
        .join(Campaign, Campaign.id == Session.campaign_id)
        .order_by(Session.date, Session.start_time, Site.code, Campaign.code)
    )
    if site_code is not None:
        stmt = stmt.where(Site.code == site_code)
    if date is not None:
        stmt = stmt.where(Session.date == date)
    if from_date is not None:
        stmt = stmt.where(Session.date >= from_date)
    return [(s, site, c) for s, site, c in (await session.execute(stmt)).all()]


# --- the shipped sample set -------------------------------------------------------------------


def sample_book(account_id: int, **answers: Any) -> HealthBook:
    """A health book with plain answers (nothing flagged in the health declaration), for sample
    data, benchmarks and tests; ``answers`` override any field."""
    values: dict[str, Any] = {
        "account_id": account_id,
        "full_name": "Lò Thị Mai",
        "date_of_birth": dt.date(1985, 3, 15),
        "gender": "female",
        "ethnicity": 1,
        "occupation": "farmer",
        "priority_group": "none",
        "province_code": SAMPLE_PROVINCE,
        "ward_code": SAMPLE_WARD,
        "screening": {item.code: "no" for item in v.screening_items()},
        "consent_version": "sample",
    }
    values.update(answers)
    return HealthBook(**values)


async def load_sample_data(session: AsyncSession, today: dt.date) -> dict[str, int]:
    """Both sample campaigns, the Lào Cai sites and, for each campaign, weekday-morning sessions
    of 60 places at every site for the next 4 weeks (idempotent)."""
    campaigns = []
    for path in SAMPLE_CAMPAIGNS:
        campaigns.extend(await load_campaign_file(session, path))
    sites = await import_sites_csv(session, SAMPLE_SITES)
    created = existing = 0
    for campaign in campaigns:
        made = await create_sessions(
            session,
            sites.codes,
            campaign.code,
            today,
            weeks=4,
            weekdays=range(5),
            start=dt.time(7, 30),
            end=dt.time(11, 30),
            capacity=60,
        )
        created += made.created
        existing += made.existing
    return {
        "campaigns": len(campaigns),
        "sites": len(sites.codes),
        "sessions_created": created,
        "sessions_existing": existing,
    }
