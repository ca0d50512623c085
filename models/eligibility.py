"""Eligibility for vaccination: dose windows, the next dose due, the advisory screening group,
and the checks of age, campaign dates and screening."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import validators as v
from models.errors import DomainError
from models.lookups import get_campaign
from models.tables import Campaign, HealthBook, Site, Vaccination
from models.timeutil import LOCAL_TZ, local_date


@dataclass(frozen=True)
class DoseWindow:
    """The next dose of a campaign for one person, and when it may be given.

    ``earliest`` is never before the day asked about; ``latest`` is the end of the recommended
    interval (``None``: no upper bound) — a late dose is still given, so it is advice only.
    """

    dose: int
    earliest: dt.date
    latest: dt.date | None = None
    previous: dt.date | None = None
    previous_vaccine: str | None = None
    booster: bool = False

    @property
    def overdue(self) -> bool:
        """Whether the recommended interval has already passed."""
        return self.latest is not None and self.latest < self.earliest


def _age_months(dob: dt.date, on: dt.date) -> int:
    """Age in whole months on ``on``."""
    return (on.year - dob.year) * 12 + on.month - dob.month - (on.day < dob.day)


def _intervals(campaign: Campaign, vaccine: str | None) -> tuple[list[Any], list[Any]]:
    """Min/max days between doses, for the product of the previous dose when it has its own."""
    own = (campaign.schedules or {}).get(vaccine or "", {})
    return list(own.get("min_days", campaign.min_days or [])), list(
        own.get("max_days", campaign.max_days or [])
    )


def next_dose_window(
    campaign: Campaign,
    today: dt.date,
    last_dose: int | None = None,
    last_date: dt.date | None = None,
    last_vaccine: str | None = None,
) -> DoseWindow | None:
    """The dose after ``last_dose`` (given on ``last_date``) and its window; None when done."""
    start = max(today, campaign.starts_on)
    if last_dose is None or last_date is None:
        return DoseWindow(dose=1, earliest=start)
    dose = last_dose + 1
    if dose <= campaign.doses:
        mins, maxs = _intervals(campaign, last_vaccine)
        gap = last_dose - 1  # interval between dose ``last_dose`` and the next
        low = int(mins[gap]) if gap < len(mins) and mins[gap] is not None else 0
        high = maxs[gap] if gap < len(maxs) else None
        booster = False
    else:
        if campaign.booster_min_days is None:
            return None
        if campaign.boosters is not None and dose > campaign.doses + campaign.boosters:
            return None
        low, high, booster = campaign.booster_min_days, None, True
    return DoseWindow(
        dose=dose,
        earliest=max(start, last_date + dt.timedelta(days=low)),
        latest=last_date + dt.timedelta(days=int(high)) if high is not None else None,
        previous=last_date,
        previous_vaccine=last_vaccine,
        booster=booster,
    )


async def eligible_doses(
    session: AsyncSession, book: HealthBook, campaign: Campaign | str | int, today: dt.date
) -> DoseWindow | None:
    """Which dose of the campaign is next for this person, from their recorded vaccinations,
    with its earliest and latest date; None once the schedule (and any booster) is complete."""
    campaign = await get_campaign(session, campaign)
    last = (
        await session.execute(
            select(Vaccination.dose, Vaccination.given_at, Vaccination.vaccine_code)
            .where(Vaccination.health_book_id == book.id, Vaccination.campaign_id == campaign.id)
            .order_by(Vaccination.dose.desc())
            .limit(1)
        )
    ).first()
    if last is None:
        return next_dose_window(campaign, today)
    return next_dose_window(
        campaign, today, last.dose, local_date(last.given_at), last.vaccine_code
    )


def _screening_answers(
    book: HealthBook, today: dt.date
) -> list[tuple[v.ScreeningItem, v.Answer, v.ScreeningGroup]]:
    """Every screening item with the book's answer (the age-65 item derived from the date of
    birth; an unanswered item counts as "don't know") and the group it points to."""
    answers = book.screening or {}
    known = {a.value for a in v.Answer}
    found = []
    for item in v.screening_items(asked_only=False):
        if item.derived:
            answer = item.derived_answer(age=v.age_on(book.date_of_birth, today))
        else:
            raw = answers.get(item.code)
            answer = v.Answer(raw) if raw in known else v.Answer.UNKNOWN
        found.append((item, answer, item.group_for(answer)))
    return found


def screening_group(book: HealthBook, today: dt.date | None = None) -> v.ScreeningGroup:
    """The strongest group over the book's screening answers, with the age-65 item derived from
    the date of birth (an unanswered item counts as "don't know"). Advisory only."""
    today = today or dt.datetime.now(LOCAL_TZ).date()
    worst = v.ScreeningGroup.ELIGIBLE
    for _, _, group in _screening_answers(book, today):
        if group.severity > worst.severity:
            worst = group
    return worst


def screening_reasons(
    book: HealthBook, today: dt.date | None = None
) -> tuple[v.ScreeningGroup, list[tuple[str, v.Answer]]]:
    """The book's screening group and what set it: the ``(item code, answer)`` of each item that
    points to that group, in the declaration's order (none for the eligible group)."""
    today = today or dt.datetime.now(LOCAL_TZ).date()
    answered = _screening_answers(book, today)
    worst = max(
        (group for _, _, group in answered),
        key=lambda g: g.severity,
        default=v.ScreeningGroup.ELIGIBLE,
    )
    if worst is v.ScreeningGroup.ELIGIBLE:
        return worst, []
    return worst, [(item.code, answer) for item, answer, group in answered if group is worst]


def check_eligibility(
    book: HealthBook, campaign: Campaign, on: dt.date, site: Site | None = None
) -> v.ScreeningGroup:
    """Whether this person may be vaccinated in this campaign on ``on`` (at ``site``); returns
    the advisory screening group (eligible, caution or refer) or raises why not."""
    if (
        not campaign.active
        or on < campaign.starts_on
        or (campaign.ends_on is not None and on > campaign.ends_on)
    ):
        raise DomainError("campaign.closed", campaign=campaign.name)
    months = _age_months(book.date_of_birth, on)
    high = campaign.max_age_months
    if months < campaign.min_age_months or (high is not None and months > high):
        raise DomainError(
            "booking.ineligible_age",
            min_months=campaign.min_age_months,
            max_months=high,
            min_years=campaign.min_age_months // 12,
            max_years=high // 12 if high is not None else None,
        )
    group = screening_group(book, on)
    if group is v.ScreeningGroup.CONTRAINDICATED:
        raise DomainError("booking.screening_contraindicated")
    if group is v.ScreeningGroup.POSTPONE:
        raise DomainError("booking.screening_postpone")
    # caution: the usual site, watched more closely; refer: a hospital is advised, but the
    # person may still book nearer (advice only: the site screens again and decides)
    return group
