"""The command line of roles: invite codes (``healthbook invite create|list|revoke``),
volunteers (``healthbook volunteers list|suspend|resume|remove|transfer``), ``healthbook staff
remove`` and ``healthbook admin remove``. Registered on :data:`bot.cli.app` when :mod:`bot.cli`
loads.

Every option is checked before the database is opened (a usage error: exit status 2); a
refusal of the domain (an unknown site, a person who is no volunteer…) is one line and exit
status 1, as everywhere in the CLI.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated

import typer

from bot.cli import (
    ConfigOpt,
    _account_option,
    _Command,
    _group,
    _settings,
    _with_database,
    admin_app,
    app,
    staff_app,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from models.tables import Account

invite_app = _group("Invite codes for volunteers and site staff.")
volunteers_app = _group("Commune volunteers: list, suspend, resume, remove, transfer.")
app.add_typer(invite_app, name="invite")
app.add_typer(volunteers_app, name="volunteers")

TelegramIdOpt = Annotated[
    str | None,
    typer.Option("--telegram-id", help="the person's Telegram id (a number)", metavar="ID"),
]
ZaloIdOpt = Annotated[
    str | None,
    typer.Option("--zalo-id", help="the person's Zalo id (letters and digits)", metavar="ID"),
]
_ROLES = {"volunteer": "volunteer", "staff": "site_staff", "site_staff": "site_staff"}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _local(settings_tz: str, when: dt.datetime) -> str:
    from zoneinfo import ZoneInfo

    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return f"{when.astimezone(ZoneInfo(settings_tz)):%Y-%m-%d %H:%M}"


def _wards_text(codes: list[int]) -> str:
    from models.reference import ward_name

    names = []
    for code in codes:
        try:
            names.append(f"{ward_name(code)} ({code})")
        except KeyError:
            names.append(str(code))
    return ", ".join(names)


@invite_app.command("create")
def invite_create(
    role: Annotated[
        str, typer.Option("--role", help="volunteer or staff", metavar="ROLE", show_default=False)
    ],
    ward: Annotated[
        list[str] | None,
        typer.Option(
            "--ward",
            help="a commune/ward code the volunteer works in (repeat for more)",
            metavar="WARD_CODE",
        ),
    ] = None,
    site: Annotated[
        str | None, typer.Option("--site", help="the site code, for staff", metavar="SITE_CODE")
    ] = None,
    uses: Annotated[
        int, typer.Option("--uses", help="how many people may join with it", metavar="N")
    ] = 1,
    days: Annotated[int, typer.Option("--days", help="days it stays valid", metavar="D")] = 7,
    config: ConfigOpt = None,
) -> None:
    """Make an invite code. --role volunteer with one or more --ward, or --role staff with
    --site. The code is printed alone on the last line; the person sends /join CODE to the
    bot."""
    from models import invites as inv

    kind = _ROLES.get(role.strip().lower())
    if kind is None:
        raise typer.BadParameter("must be volunteer or staff", param_hint="--role")
    wards: list[int] = []
    for raw in ward or []:
        if not (raw.isascii() and raw.isdigit() and 0 < len(raw) <= 9):
            raise typer.BadParameter(f"{raw!r} is not a commune/ward code", param_hint="--ward")
        wards.append(int(raw))
    if kind == "volunteer" and not wards:
        raise typer.BadParameter("a volunteer invite needs at least one --ward")
    if kind == "volunteer" and site is not None:
        raise typer.BadParameter("--site is for --role staff; a volunteer gets --ward")
    if kind == "site_staff" and site is None:
        raise typer.BadParameter("a staff invite needs --site")
    if kind == "site_staff" and wards:
        raise typer.BadParameter("--ward is for --role volunteer; staff get --site")
    if not 1 <= uses <= inv.MAX_USES:
        raise typer.BadParameter(f"must be 1 to {inv.MAX_USES}", param_hint="--uses")
    if not 1 <= days <= inv.MAX_DAYS:
        raise typer.BadParameter(f"must be 1 to {inv.MAX_DAYS}", param_hint="--days")
    settings = _settings(config)
    province = settings.bot.default_province
    try:
        if wards:
            wards = inv.check_wards(province, wards)
    except Exception as exc:  # a DomainError: name the ward, in English as the CLI speaks
        from models.errors import DomainError

        if not isinstance(exc, DomainError):
            raise
        raise typer.BadParameter(
            f"not a commune/ward of province {province}: {exc.params.get('ward', '')}"
            if exc.key == "invite.ward_unknown"
            else f"at most {inv.MAX_WARDS} wards",
            param_hint="--ward",
        ) from None

    async def work(session: AsyncSession) -> tuple[str, str, dt.datetime]:
        made = await inv.create_invite(
            session,
            role=kind,
            now=_now(),
            province=province,
            wards=wards,
            site=site,
            uses=uses,
            days=days,
        )
        target = _wards_text(made.invite.ward_codes) if wards else f"site {site}"
        return made.code, target, made.invite.expires_at

    code, target, expires = _with_database(config, work)
    who = "volunteer" if kind == "volunteer" else "site staff"
    typer.echo(
        f"invite for {who} of {target}: {uses} use{'s' if uses != 1 else ''}, "
        f"valid until {_local(settings.bot.timezone, expires)}"
    )
    typer.echo("the person sends /join followed by this code to the bot:")
    typer.echo(inv.format_code(code))


@invite_app.command("list")
def invite_list(
    every: Annotated[
        bool, typer.Option("--all", help="also the expired, used up and revoked ones")
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """List the invites still usable. With --all, every invite: id, role, status, uses left,
    end, communes or site. Codes are not kept: they cannot be shown again."""
    from models import invites as inv
    from models.tables import Site

    settings = _settings(config)
    now = _now()

    async def work(session: AsyncSession) -> list[str]:
        rows = []
        for invite in await inv.invites(session, now, every=every):
            if invite.role == "volunteer":
                target = _wards_text(invite.ward_codes)
            else:
                site = await session.get(Site, invite.site_id) if invite.site_id else None
                target = f"site {site.code if site else '?'}"
            rows.append(
                f"{invite.id:>5}  {invite.role:<10}  {inv.status(invite, now):<8}  "
                f"{invite.uses_left} left  until {_local(settings.bot.timezone, invite.expires_at)}"
                f"  {target}"
            )
        return rows

    rows = _with_database(config, work)
    typer.echo("\n".join(rows) if rows else "no invites")


@invite_app.command("revoke", cls=_Command)
def invite_revoke(
    invite_id: Annotated[int, typer.Argument(help="the invite's id (invite list)", metavar="ID")],
    config: ConfigOpt = None,
) -> None:
    """Withdraw an invite: its code no longer works. Who joined with it keeps their role (use
    volunteers remove or staff remove)."""
    from models import invites as inv

    if not 0 < invite_id < 2**31:
        raise typer.BadParameter("not an invite id", param_hint="ID")

    async def work(session: AsyncSession) -> None:
        await inv.revoke(session, invite_id, _now())

    _with_database(config, work)
    typer.echo(f"invite {invite_id} revoked")


async def _account(session: AsyncSession, channel: str, external_id: str) -> Account:
    """The person's account (the primary one when linked); ``roles.no_account`` if none."""
    from models import healthbook as hb
    from models.errors import DomainError

    found = await hb.find_account(session, channel, external_id)
    if found is None:
        raise DomainError("roles.no_account")
    return found


@volunteers_app.command("list")
def volunteers_list(config: ConfigOpt = None) -> None:
    """List the volunteers. Each with their status, residents registered and communes."""
    from models import invites as inv

    async def work(session: AsyncSession) -> list[str]:
        return [
            f"{row.account.channel}:{row.account.external_id}  "
            f"{'suspended' if row.suspended else 'active'}  "
            f"{row.registered} registered  {_wards_text(row.wards)}"
            for row in await inv.volunteers(session)
        ]

    rows = _with_database(config, work)
    typer.echo("\n".join(rows) if rows else "no volunteers")


def _volunteer_command(name: str, doc: str) -> None:
    """``volunteers suspend|resume|remove``: one account by --telegram-id or --zalo-id."""

    def command(
        telegram_id: TelegramIdOpt = None, zalo_id: ZaloIdOpt = None, config: ConfigOpt = None
    ) -> None:
        from models import assist as ma
        from models import invites as inv

        channel, external_id = _account_option(telegram_id, zalo_id)

        async def work(session: AsyncSession) -> str:
            account = await _account(session, channel, external_id)
            if name == "suspend":
                done = await inv.suspend(session, account, _now())
                return "suspended" if done else "was already suspended"
            if name == "resume":
                done = await inv.resume(session, account)
                return "resumed" if done else "was not suspended"
            count = await inv.remove(session, account)
            said = f"is no longer a volunteer ({count} communes removed; now {account.role})"
            return said + _left_without(await ma.without_volunteer(session, account))

        said = _with_database(config, work)
        typer.echo(f"{channel} user {external_id} {said}")

    command.__doc__ = doc
    volunteers_app.command(name)(command)


_volunteer_command(
    "suspend",
    "Suspend a volunteer's or staff member's rights. At once: they act as a resident until "
    "resumed. Give exactly one of --telegram-id and --zalo-id.",
)
_volunteer_command("resume", "Give a suspended volunteer or staff member their rights back.")
_volunteer_command(
    "remove",
    "Remove a volunteer. Their communes go, their role falls back (staff stay staff); the "
    "residents they registered keep their records.",
)


def _left_without(count: int) -> str:
    """What a removal leaves behind: residents nobody can act for (no holder, no other active
    volunteer), and how to give them one."""
    if not count:
        return ""
    return (
        f"\n{count} resident{'s' if count != 1 else ''} left without an active volunteer: "
        "move them with `healthbook volunteers transfer --from-telegram-id/--from-zalo-id ID "
        "--to-telegram-id/--to-zalo-id ID` (a volunteer of their commune who types a "
        "resident's full ID number in /assist takes them on too)"
    )


@volunteers_app.command("transfer")
def volunteers_transfer(
    from_telegram_id: Annotated[
        str | None,
        typer.Option("--from-telegram-id", help="the volunteer leaving: Telegram id", metavar="ID"),
    ] = None,
    from_zalo_id: Annotated[
        str | None,
        typer.Option("--from-zalo-id", help="the volunteer leaving: Zalo id", metavar="ID"),
    ] = None,
    to_telegram_id: Annotated[
        str | None,
        typer.Option(
            "--to-telegram-id", help="the volunteer taking over: Telegram id", metavar="ID"
        ),
    ] = None,
    to_zalo_id: Annotated[
        str | None,
        typer.Option("--to-zalo-id", help="the volunteer taking over: Zalo id", metavar="ID"),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Move the residents a volunteer helps (registered, or left without a volunteer) to
    another volunteer, for those who live in a commune the other serves. Prints how many moved
    and how many could not (another commune; a book with a holder of its own, who accepts a
    new volunteer's request). Give one --from-… and one --to-… id."""
    from models import assist as ma

    for side, telegram, zalo in (
        ("from", from_telegram_id, from_zalo_id),
        ("to", to_telegram_id, to_zalo_id),
    ):
        if (telegram is None) == (zalo is None):
            raise typer.BadParameter(
                f"give exactly one of --{side}-telegram-id and --{side}-zalo-id"
            )
    source_channel, source_id = _account_option(from_telegram_id, from_zalo_id)
    target_channel, target_id = _account_option(to_telegram_id, to_zalo_id)

    async def work(session: AsyncSession) -> ma.Transfer:
        source = await _account(session, source_channel, source_id)
        target = await _account(session, target_channel, target_id)
        return await ma.transfer(session, source, target)

    done = _with_database(config, work)
    typer.echo(f"moved {done.moved} resident{'s' if done.moved != 1 else ''} to "
               f"{target_channel} user {target_id}")  # fmt: skip
    if done.other_commune:
        typer.echo(f"{done.other_commune} not moved: they live in a commune that volunteer does "
                   "not serve")  # fmt: skip
    if done.with_holder:
        typer.echo(f"{done.with_holder} not moved: the book has a holder of its own (a new "
                   "volunteer sends them a request from /assist)")  # fmt: skip


@staff_app.command("remove")
def staff_remove(
    telegram_id: TelegramIdOpt = None,
    zalo_id: ZaloIdOpt = None,
    site: Annotated[
        str | None,
        typer.Option("--site", help="only this site (default: every site)", metavar="CODE"),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Remove a staff member from their sites. From one with --site, else from every site;
    their role falls back. Give exactly one of --telegram-id and --zalo-id."""
    from models import invites as inv

    channel, external_id = _account_option(telegram_id, zalo_id)

    async def work(session: AsyncSession) -> tuple[int, str]:
        account = await _account(session, channel, external_id)
        count = await inv.remove_staff(session, account, site)
        return count, account.role

    count, role = _with_database(config, work)
    typer.echo(f"{channel} user {external_id} removed from {count} site(s); now {role}")


@admin_app.command("remove")
def admin_remove(
    telegram_id: TelegramIdOpt = None, zalo_id: ZaloIdOpt = None, config: ConfigOpt = None
) -> None:
    """Take the admin role away. Back to staff or volunteer if still bound, else resident.
    Give exactly one of --telegram-id and --zalo-id."""
    from models.roles import revoke_admin

    channel, external_id = _account_option(telegram_id, zalo_id)

    async def work(session: AsyncSession) -> str:
        return (await revoke_admin(session, channel, external_id)).role

    role = _with_database(config, work)
    typer.echo(f"{channel} user {external_id} is now {role}")
    if f"{channel}:{external_id}" in _settings(config).roles.admins:
        typer.echo(
            "warning: still listed in [roles] admins: admin again at the next start unless "
            "taken off that list",
            err=True,
        )
