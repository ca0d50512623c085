"""SQLAlchemy 2.0 typed tables: accounts, consents, health books, drafts, conversation states;
vaccination booking: vaccines, campaigns, sites, sessions, bookings, waitlist, vaccinations."""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    Time,
    TypeDecorator,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JsonType = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> dt.datetime:
    """Timezone-aware now, in UTC."""
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    """Declarative base with constraint naming (Alembic batch mode on SQLite needs names)."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dt.datetime: DateTime(timezone=True),
        dict[str, Any]: JsonType,
    }


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored in UTC and read back timezone-aware on every database (SQLite keeps
    no offset: without this, what was written aware would come back naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass a timezone-aware one")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None or value.tzinfo is not None:
            return value
        return value.replace(tzinfo=dt.UTC)


class Account(Base):
    """A person talking to the bot on one channel (a Telegram user, a Zalo user). Accounts
    linked with /link point at the person's first account (``linked_to``), which holds the
    health book, bookings and language; ``reply_via`` is the account to message (the one
    the person used last, or chose), None meaning this one."""

    __tablename__ = "accounts"
    __table_args__ = (UniqueConstraint("channel", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str] = mapped_column(String(64))
    locale: Mapped[str | None] = mapped_column(String(8))
    role: Mapped[str] = mapped_column(String(16), default="resident")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, server_default=func.now())
    linked_to: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    reply_via: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL", use_alter=True)
    )
    link_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    link_failed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # the messenger refused a message to this chat (blocked the bot): nothing more is sent to it
    # until the person writes to the bot again
    unreachable_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # an admin suspended this account's volunteer and staff rights (``healthbook volunteers
    # suspend``): it acts as a resident until resumed
    suspended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    consents: Mapped[list[Consent]] = relationship(
        back_populates="account", cascade="all, delete-orphan", passive_deletes=True
    )


class Consent(Base):
    """Explicit consent to the processing of personal and health data (which text, when)."""

    __tablename__ = "consents"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[str] = mapped_column(String(32))
    given_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    account: Mapped[Account] = relationship(back_populates="consents")


class HealthBook(Base):
    """A saved electronic health book (Sổ sức khỏe điện tử) of one person.

    ``account_id`` is the account that holds it: the person's own (``relation`` ``self``), or the
    relative's who registered them (``father``, ``mother``, ``spouse``, ``child``, ``other``);
    None for a resident a volunteer registered who has no account (``relation`` ``assisted``; the
    volunteers helping them are in ``assists``). ``consent_kind`` says whose consent the data
    was collected on: ``own``, ``relative`` (the holder confirmed the relative agreed),
    ``guardian`` (a parent or legal guardian, for a child), ``verbal`` (given aloud to the
    volunteer ``consent_by``, after they read the text out), at ``consent_at``."""

    __tablename__ = "health_books"
    __table_args__ = (
        Index("ix_health_books_ward", "province_code", "ward_code"),
        # a relative or a resident without an ID number is told apart by name and birth date
        Index("ix_health_books_dob", "date_of_birth"),
        # SQLite would give a deleted book's id to the next book, and the audit trail (no
        # foreign key, it outlives the book) would show on the new one: ids are never reused
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    relation: Mapped[str] = mapped_column(String(16), default="self")
    registered_by: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), index=True
    )
    consent_kind: Mapped[str] = mapped_column(String(16), default="own", server_default="own")
    consent_by: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), index=True
    )
    consent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    full_name: Mapped[str] = mapped_column(String(80))
    date_of_birth: Mapped[dt.date] = mapped_column(Date)
    gender: Mapped[str] = mapped_column(String(8))
    id_kind: Mapped[str | None] = mapped_column(String(8))
    id_number: Mapped[str | None] = mapped_column(String(16), unique=True)
    phone: Mapped[str | None] = mapped_column(String(20))
    bhyt: Mapped[str | None] = mapped_column(String(20))
    ethnicity: Mapped[int] = mapped_column(Integer)
    occupation: Mapped[str] = mapped_column(String(32))
    priority_group: Mapped[str] = mapped_column(String(32))
    province_code: Mapped[int] = mapped_column(Integer)
    ward_code: Mapped[int] = mapped_column(Integer)
    address_line: Mapped[str | None] = mapped_column(String(200))
    screening: Mapped[dict[str, Any]] = mapped_column(default=dict)
    allergies: Mapped[str | None] = mapped_column(Text)
    chronic_conditions: Mapped[str | None] = mapped_column(Text)
    consent_version: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Draft(Base):
    """Answers given so far, written as each is accepted, so nothing typed is lost."""

    __tablename__ = "drafts"
    # health books left unfinished are found by it, every minute (models/reminders.py)
    __table_args__ = (Index("ix_drafts_updated_at", "updated_at"),)

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    book_id: Mapped[int | None] = mapped_column(ForeignKey("health_books.id", ondelete="CASCADE"))
    answers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    editing: Mapped[str | None] = mapped_column(String(32))
    # whose book this draft is: ``self``, ``relative`` (``relation`` says who), ``assisted``
    # (a volunteer registering a resident); ``consent``: how consent was given for it (kind,
    # version, when, and for a child the guardian's confirmation), see models/custody.py
    subject: Mapped[str] = mapped_column(String(12), default="self", server_default="self")
    relation: Mapped[str | None] = mapped_column(String(16))
    consent: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # No longer written: updates delivered again are recognised by handled_updates now (the
    # column stays for the databases that have it).
    last_update_id: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ConversationState(Base):
    """Where each conversation stands: python-telegram-bot's persisted conversation states,
    per channel (Zalo ids are strings; a Telegram id and a Zalo id never meet)."""

    __tablename__ = "conversation_states"

    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    chat_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ChatOffer(Base):
    """The numbered choices a chat was last offered, so that a typed ``2`` (or a label) means
    what the second button would have sent, after a restart too."""

    __tablename__ = "chat_offers"

    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    chat_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    choices: Mapped[list[Any]] = mapped_column(JsonType, default=list)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class LinkCode(Base):
    """A one-time code from /link: sent on another messenger, it joins that account to the
    person. Only its hash is kept; it expires and is deleted when used."""

    __tablename__ = "link_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


# --- vaccination booking ---------------------------------------------------------------------
# Places are counted on the session row itself (``booked``) and taken with one conditional
# UPDATE, so no number of processes can overbook; see models/booking.py.

# Bookings that still claim their dose: a person holds at most one per campaign and dose.
BOOKING_ACTIVE = ("booked", "checked_in")
_ACTIVE_SQL = "status IN ('booked', 'checked_in')"
_WAITING_SQL = "status IN ('waiting', 'offered')"


class Vaccine(Base):
    """A vaccine product (``astrazeneca``, ``vaxigrip_tetra``…)."""

    __tablename__ = "vaccines"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    manufacturer: Mapped[str] = mapped_column(String(120))


class Campaign(Base):
    """A vaccine (or several products), its dose schedule and who may receive it.

    ``min_days[i]``/``max_days[i]`` is the interval between dose ``i + 1`` and dose ``i + 2``
    (``None`` in ``max_days``: no upper bound); ``schedules`` overrides both per product of the
    previous dose (``{"astrazeneca": {"min_days": [56], "max_days": [84]}}``). After the primary
    series, ``boosters`` further doses (``None``: no limit, e.g. one per influenza season) may
    follow, each at least ``booster_min_days`` after the dose before; no booster if that is None.
    Ages are whole months, both ends included (``max_age_months`` None: no upper limit).
    """

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    vaccine_codes: Mapped[list[str]] = mapped_column(JsonType, default=list)
    doses: Mapped[int] = mapped_column(Integer, default=1)
    min_days: Mapped[list[int]] = mapped_column(JsonType, default=list)
    max_days: Mapped[list[int | None]] = mapped_column(JsonType, default=list)
    schedules: Mapped[dict[str, Any]] = mapped_column(default=dict)
    booster_min_days: Mapped[int | None] = mapped_column(Integer)
    boosters: Mapped[int | None] = mapped_column(Integer)
    min_age_months: Mapped[int] = mapped_column(Integer, default=0)
    max_age_months: Mapped[int | None] = mapped_column(Integer)
    starts_on: Mapped[dt.date] = mapped_column(Date)
    ends_on: Mapped[dt.date | None] = mapped_column(Date)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Site(Base):
    """A vaccination site: a commune health station or a hospital (for the "caution" group)."""

    __tablename__ = "sites"
    __table_args__ = (
        Index("ix_sites_ward", "province_code", "ward_code"),
        CheckConstraint("kind IN ('commune_station', 'hospital')", name="kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    address: Mapped[str] = mapped_column(String(200))
    province_code: Mapped[int] = mapped_column(Integer)
    ward_code: Mapped[int] = mapped_column(Integer)
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    kind: Mapped[str] = mapped_column(String(20))
    notes: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Session(Base):
    """A vaccination session of one campaign at one site: a date, hours and places.

    ``booked`` counts every place in use: bookings not cancelled plus places held for a waitlist
    offer. The CHECK constraint is a last line of defence; the conditional UPDATE never hits it.
    """

    __tablename__ = "sessions"
    __table_args__ = (
        UniqueConstraint("site_id", "campaign_id", "date", "start_time"),
        Index("ix_sessions_campaign_date", "campaign_id", "date"),
        CheckConstraint("booked >= 0 AND booked <= capacity", name="places"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    date: Mapped[dt.date] = mapped_column(Date)
    start_time: Mapped[dt.time] = mapped_column(Time)
    end_time: Mapped[dt.time] = mapped_column(Time)
    capacity: Mapped[int] = mapped_column(Integer)
    booked: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # cancelled by an admin (``healthbook sessions cancel``): no place in it can be taken
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    cancel_reason: Mapped[str | None] = mapped_column(String(200))

    site: Mapped[Site] = relationship(lazy="raise")
    campaign: Mapped[Campaign] = relationship(lazy="raise")

    @property
    def remaining(self) -> int:
        """Free places as last read (a snapshot; booking re-checks atomically)."""
        return max(0, self.capacity - self.booked)


class Booking(Base):
    """A place taken by one health book for one dose of a campaign; ``code`` is shown at check-in.

    status: booked → checked_in → vaccinated | not_vaccinated; booked → cancelled | expired.
    """

    __tablename__ = "bookings"
    __table_args__ = (
        # One active booking per person, campaign and dose, enforced by the database itself
        # (a double-pressed "confirm" in two processes cannot slip through).
        Index(
            "uq_bookings_active_dose",
            "health_book_id",
            "campaign_id",
            "dose",
            unique=True,
            sqlite_where=text(_ACTIVE_SQL),
            postgresql_where=text(_ACTIVE_SQL),
        ),
        Index("ix_bookings_session_status", "session_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(8), unique=True)
    health_book_id: Mapped[int] = mapped_column(
        ForeignKey("health_books.id", ondelete="CASCADE"), index=True
    )
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"))
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    dose: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="booked")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    checked_in_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    checked_in_by: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL")
    )
    # not_vaccinated: why (the site postponed, refused…), who recorded it and when
    outcome_reason: Mapped[str | None] = mapped_column(Text)
    outcome_by: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    outcome_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    session: Mapped[Session] = relationship(lazy="raise")
    health_book: Mapped[HealthBook] = relationship(lazy="raise")
    campaign: Mapped[Campaign] = relationship(lazy="raise")


class WaitlistEntry(Base):
    """Someone waiting for a place in a session, or in any session of a site (on ``date``, or
    on any day from ``not_before``, the first day their dose is due).

    status: waiting → offered (a place is held until ``offer_expires_at``) → accepted | expired;
    waiting/offered → cancelled. The row is the scheduled work: a restart loses no offer.
    """

    __tablename__ = "waitlist_entries"
    __table_args__ = (
        Index(
            "uq_waitlist_entries_active",
            "health_book_id",
            "campaign_id",
            "dose",
            unique=True,
            sqlite_where=text(_WAITING_SQL),
            postgresql_where=text(_WAITING_SQL),
        ),
        Index("ix_waitlist_entries_status", "status", "created_at"),
        CheckConstraint("session_id IS NOT NULL OR site_id IS NOT NULL", name="target"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    health_book_id: Mapped[int] = mapped_column(
        ForeignKey("health_books.id", ondelete="CASCADE"), index=True
    )
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    dose: Mapped[int] = mapped_column(Integer)
    session_id: Mapped[int | None] = mapped_column(ForeignKey("sessions.id"))
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"))
    date: Mapped[dt.date | None] = mapped_column(Date)
    not_before: Mapped[dt.date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), default="waiting")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    offered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    offer_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # the session whose place is held while the offer stands
    held_session_id: Mapped[int | None] = mapped_column(ForeignKey("sessions.id"))
    booking_id: Mapped[int | None] = mapped_column(ForeignKey("bookings.id", ondelete="SET NULL"))


class Vaccination(Base):
    """A dose given, as recorded by site staff (the source of truth for the next dose)."""

    __tablename__ = "vaccinations"
    __table_args__ = (UniqueConstraint("health_book_id", "campaign_id", "dose"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    health_book_id: Mapped[int] = mapped_column(
        ForeignKey("health_books.id", ondelete="CASCADE"), index=True
    )
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    dose: Mapped[int] = mapped_column(Integer)
    vaccine_code: Mapped[str] = mapped_column(ForeignKey("vaccines.code"))
    lot_number: Mapped[str] = mapped_column(String(32))
    given_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"))
    recorded_by: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    booking_id: Mapped[int | None] = mapped_column(
        ForeignKey("bookings.id", ondelete="SET NULL"), unique=True
    )


class StaffSite(Base):
    """An account (role ``site_staff``) working at a site: may check people in and record doses."""

    __tablename__ = "staff_sites"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    site_id: Mapped[int] = mapped_column(
        ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class BookingDraft(Base):
    """The campaign a person is booking for, while they type a commune or share a location
    (the other choices travel in the buttons); removed once the booking is made."""

    __tablename__ = "booking_drafts"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    dose: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # whose place is being booked: a relative's or an assisted resident's book (access checked
    # again on every step, models/custody.py); None: the person's own
    health_book_id: Mapped[int | None] = mapped_column(
        ForeignKey("health_books.id", ondelete="CASCADE"), index=True
    )


class ReferenceData(Base):
    """Which release of a vendored reference list the stored codes follow (``admin_units`` →
    ``2026.9.0``); a data migration moves the codes and this row together."""

    __tablename__ = "reference_data"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    version: Mapped[str] = mapped_column(String(32))
    applied_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class HandledUpdate(Base):
    """An update whose answer was committed, so that a copy of it is not applied again: after a
    crash Telegram gives again every update the bot had not confirmed, handled or not. Kept 48
    hours (Telegram keeps an update for 24); ``update_key`` is the channel's own id of the
    update (Telegram's ``update_id`` as text)."""

    __tablename__ = "handled_updates"

    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    update_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    handled_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class InboxEvent(Base):
    """An event a messenger gave that cannot be given again (Zalo), written before it is
    handled and deleted once it was: after a crash the bot handles what is left here first.
    Holds the message (personal data) only while it is under way."""

    __tablename__ = "inbox"

    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    update_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    chat_id: Mapped[str] = mapped_column(String(64), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JsonType)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class ReminderRule(Base):
    """When a kind of reminder is sent, as data (like RapidPro's campaign events): ``offset``
    ``unit``s after (or, negative, before) its anchor (the appointment, the day a dose is due,
    the moment a health book was left unfinished…), at ``delivery_time`` local time when set
    (else at the exact moment). ``quiet_ok``: may go out in quiet hours (same-day appointment
    reminders); ``texts``: a text per language replacing the catalogue's ``reminder.KIND``.
    Editing a rule re-plans the pending reminders of its kind (``healthbook reminders set``)."""

    __tablename__ = "reminder_rules"

    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    anchor: Mapped[str] = mapped_column(String(32))
    offset: Mapped[int] = mapped_column(Integer)
    unit: Mapped[str] = mapped_column(String(8))  # minutes | hours | days
    delivery_time: Mapped[dt.time | None] = mapped_column(Time)
    quiet_ok: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    texts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


_OUTBOX_OPEN_SQL = "status IN ('pending', 'claimed')"


class OutboxMessage(Base):
    """One message to send (a reminder, a waitlist offer, a broadcast's copy, an after-care
    check-in): the row is the schedule, so a restart loses none. Its text is rendered when it
    is sent, in the recipient's language, to the messenger they use then.

    status: pending → claimed (a dispatcher is sending it since ``claimed_at``) → sent | failed
    (``error`` says why, never with personal data); pending → cancelled (its appointment was
    cancelled, the person erased their data…). A claim older than the dispatcher's timeout is
    taken again: only a message in flight at a crash can go twice."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index(
            "ix_outbox_due",
            "due_at",
            sqlite_where=text(_OUTBOX_OPEN_SQL),
            postgresql_where=text(_OUTBOX_OPEN_SQL),
        ),
        Index("ix_outbox_booking", "booking_id", "status"),
        Index("ix_outbox_broadcast", "broadcast_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    # who receives it: whoever holds the health book's account (a relative, a volunteer…)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    health_book_id: Mapped[int | None] = mapped_column(
        ForeignKey("health_books.id", ondelete="CASCADE")
    )
    booking_id: Mapped[int | None] = mapped_column(ForeignKey("bookings.id", ondelete="CASCADE"))
    broadcast_id: Mapped[int | None] = mapped_column(
        ForeignKey("broadcasts.id", ondelete="CASCADE")
    )
    ref_id: Mapped[int | None] = mapped_column(Integer)  # a waitlist entry, a campaign…
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # planned from: the rule's offset and delivery time applied to this (re-planned on a change)
    anchor_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    due_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    quiet_ok: Mapped[bool] = mapped_column(Boolean, default=False)
    # at most one message per key (a kind planned once per booking, dose, person…)
    dedupe: Mapped[str | None] = mapped_column(String(96), unique=True)
    status: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    claimed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(40))
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Broadcast(Base):
    """A text an admin sent to an audience (everyone, a commune, a site's day, those due for a
    dose); its copies are outbox rows. The admin's progress message is updated as they go."""

    __tablename__ = "broadcasts"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    audience: Mapped[str] = mapped_column(String(16))  # everyone | commune | site_day | due
    audience_params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    total: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(12), default="sending")  # sending | done
    # where its progress is shown (the admin's chat and message), when it was last shown
    progress_channel: Mapped[str | None] = mapped_column(String(16))
    progress_chat: Mapped[str | None] = mapped_column(String(64))
    progress_message: Mapped[str | None] = mapped_column(String(64))
    progress_shown: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Reaction(Base):
    """How someone felt the day after a dose (fine, mild, serious), as they answered the
    after-care check-in; shown to the staff of the site that gave it."""

    __tablename__ = "reactions"
    __table_args__ = (Index("ix_reactions_site", "site_id", "reported_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    booking_id: Mapped[int | None] = mapped_column(ForeignKey("bookings.id", ondelete="CASCADE"))
    health_book_id: Mapped[int] = mapped_column(
        ForeignKey("health_books.id", ondelete="CASCADE"), index=True
    )
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id", ondelete="SET NULL"))
    dose: Mapped[int | None] = mapped_column(Integer)
    severity: Mapped[str] = mapped_column(String(12))  # fine | mild | serious
    reported_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


# --- assisted registration: roles by invitation, volunteers, families, the audit trail --------


class Invite(Base):
    """An invite code an admin made (``/invite``, ``healthbook invite create``): sent with
    ``/join CODE`` it gives that role, bound to ``ward_codes`` (volunteers) or ``site_id``
    (site staff). Only its hash is kept; it has ``uses_left`` uses until ``expires_at``."""

    __tablename__ = "invites"
    __table_args__ = (CheckConstraint("role IN ('volunteer', 'site_staff')", name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    province_code: Mapped[int | None] = mapped_column(Integer)
    ward_codes: Mapped[list[int]] = mapped_column(JsonType, default=list)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    uses_left: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class VolunteerWard(Base):
    """A commune (ward) a volunteer works in: they register and help residents there only."""

    __tablename__ = "volunteer_wards"
    __table_args__ = (Index("ix_volunteer_wards_ward", "province_code", "ward_code"),)

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    ward_code: Mapped[int] = mapped_column(Integer, primary_key=True)
    province_code: Mapped[int] = mapped_column(Integer)
    invite_id: Mapped[int | None] = mapped_column(ForeignKey("invites.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Assist(Base):
    """A volunteer helping a resident: they registered them (``registered``), or the book's
    holder accepted their request (``linked``). Gives access only while the volunteer is active
    and the resident lives in one of their communes (models/custody.py)."""

    __tablename__ = "assists"

    health_book_id: Mapped[int] = mapped_column(
        ForeignKey("health_books.id", ondelete="CASCADE"), primary_key=True
    )
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    via: Mapped[str] = mapped_column(String(12), default="registered")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class HandoverCode(Base):
    """A one-time code an account holder made so that a relative (or a resident a volunteer
    registered) takes over their own health book with ``/join CODE``. Only its hash is kept."""

    __tablename__ = "handover_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    health_book_id: Mapped[int] = mapped_column(
        ForeignKey("health_books.id", ondelete="CASCADE"), index=True
    )
    created_by: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditEntry(Base):
    """Something done for another person: who (``actor_id``, in which role), for whom
    (``health_book_id``; no foreign key, so the entry outlives a deleted book), when, what
    (``action``), and which fields changed (their names, never their values). The book's
    commune is kept for the admins' filters."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_book", "health_book_id", "at"),
        Index("ix_audit_log_actor", "actor_id", "at"),
        Index("ix_audit_log_at", "at"),
        # the admins' filters (/audit, healthbook audit): by commune, by action
        Index("ix_audit_log_ward", "ward_code", "at"),
        Index("ix_audit_log_action", "action", "at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    actor_role: Mapped[str] = mapped_column(String(16))  # volunteer | relative | site_staff | admin
    health_book_id: Mapped[int | None] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(24))
    fields: Mapped[list[str]] = mapped_column(JsonType, default=list)
    ward_code: Mapped[int | None] = mapped_column(Integer)


class ParkedDraft(Base):
    """A registration left unfinished while its author started another (a volunteer between
    two residents, a parent between two children): put back with "continue", never lost."""

    __tablename__ = "parked_drafts"
    # the old ones are purged by it (models/healthbook.py purge_parked, every hour)
    __table_args__ = (Index("ix_parked_drafts_updated_at", "updated_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    book_id: Mapped[int | None] = mapped_column(
        ForeignKey("health_books.id", ondelete="CASCADE"), index=True
    )
    subject: Mapped[str] = mapped_column(String(12))
    relation: Mapped[str | None] = mapped_column(String(16))
    consent: Mapped[dict[str, Any]] = mapped_column(default=dict)
    answers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    editing: Mapped[str | None] = mapped_column(String(32))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


# --------------------------------------------------------------------------------------------
# Agencies and weekly reports (models/agencies.py, models/reports.py)
# --------------------------------------------------------------------------------------------

_MEMBER_OPEN_SQL = "left_at IS NULL"


class Agency(Base):
    """An agency of the province's tree: a department (sở, ban, ngành), a commune people's
    committee, a school, a hospital, a business, or one of their sub-units. ``path`` is the ids
    from the root down to it, ``/1/5/23/``: its subtree is every agency whose path starts with
    it (one indexed prefix match, no recursive query)."""

    __tablename__ = "agencies"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    # department | commune | school | hospital | business | unit | other (models/agencies.KINDS)
    kind: Mapped[str] = mapped_column(String(16))
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("agencies.id", ondelete="RESTRICT"), index=True
    )
    path: Mapped[str] = mapped_column(String(400), index=True)
    expected_staff: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class AgencyHead(Base):
    """A head of an agency (by messenger account): sees its members and its tree's reports,
    and receives its weekly report."""

    __tablename__ = "agency_heads"

    agency_id: Mapped[int] = mapped_column(
        ForeignKey("agencies.id", ondelete="CASCADE"), primary_key=True
    )
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class AgencyMember(Base):
    """A staff member's time in an agency (``/agency CODE``): one open row per account
    (``left_at`` NULL); moving closes it (``left_reason`` ``moved``) and opens the next, so a
    report counts each person where they were at its moment."""

    __tablename__ = "agency_members"
    __table_args__ = (
        Index(
            "uq_agency_members_open",
            "account_id",
            unique=True,
            sqlite_where=text(_MEMBER_OPEN_SQL),
            postgresql_where=text(_MEMBER_OPEN_SQL),
        ),
        Index("ix_agency_members_agency", "agency_id", "joined_at"),
        Index("ix_agency_members_account", "account_id", "joined_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id", ondelete="CASCADE"))
    joined_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    left_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    left_reason: Mapped[str | None] = mapped_column(String(12))  # moved | left | removed
    removed_by: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))


class ReportWeek(Base):
    """A week whose figures were taken (``2026-W48``): at ``moment``, the end of the week in
    the province's time; ``planned_at``: when its Monday messages were planned (once)."""

    __tablename__ = "report_weeks"

    week: Mapped[str] = mapped_column(String(8), primary_key=True)
    moment: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    taken_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    planned_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class AgencyWeek(Base):
    """One agency's own figures in a week's snapshot (its members only; its subtree is summed
    when a report is built). The agency's code, name, place in the tree and expected staff are
    copied as they were, so a past week's report comes out the same after any change."""

    __tablename__ = "report_agency_weeks"
    __table_args__ = (Index("ix_report_agency_weeks_path", "week", "path"),)

    week: Mapped[str] = mapped_column(
        ForeignKey("report_weeks.week", ondelete="CASCADE"), primary_key=True
    )
    agency_id: Mapped[int] = mapped_column(Integer, primary_key=True)  # no foreign key: outlives
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    parent_id: Mapped[int | None] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(400))
    expected_staff: Mapped[int] = mapped_column(Integer, default=0)
    joined: Mapped[int] = mapped_column(Integer, default=0)
    complete: Mapped[int] = mapped_column(Integer, default=0)
    booked: Mapped[int] = mapped_column(Integer, default=0)
    relatives: Mapped[int] = mapped_column(Integer, default=0)
    # staff vaccinated with dose 1, 2, 3…: doses[0] is dose 1
    doses: Mapped[list[int]] = mapped_column(JsonType, default=list)


class WardWeek(Base):
    """Residents of one commune or ward in a week's snapshot: every health book whose address
    is there (own, relatives', assisted residents')."""

    __tablename__ = "report_ward_weeks"

    week: Mapped[str] = mapped_column(
        ForeignKey("report_weeks.week", ondelete="CASCADE"), primary_key=True
    )
    ward_code: Mapped[int] = mapped_column(Integer, primary_key=True)
    province_code: Mapped[int] = mapped_column(Integer)
    registered: Mapped[int] = mapped_column(Integer, default=0)
    adults: Mapped[int] = mapped_column(Integer, default=0)
    booked: Mapped[int] = mapped_column(Integer, default=0)
    vaccinated: Mapped[int] = mapped_column(Integer, default=0)
    adults_vaccinated: Mapped[int] = mapped_column(Integer, default=0)
