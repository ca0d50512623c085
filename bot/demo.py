"""``healthbook demo``: the real Application, talking to an in-process Bot API stand-in,
driven from the terminal. The bot's messages are printed with their buttons numbered; type an
answer, or a button's number, or a /command. Ctrl-D or /quit ends the demo."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from bot.settings import Settings
from bot.standin import BotApiStandIn, ChatDriver, TgUser

DEMO_TOKEN = "1000001:demo-token-no-network"
QUIT = {"/quit", "/exit"}


Button = tuple[str, int | None, dict[str, Any]]  # ("inline", message id, button) or ("reply", …)


def _inline_rows(message: Any) -> list[list[dict[str, Any]]]:
    markup = message.get("reply_markup") if isinstance(message, dict) else None
    return list((markup or {}).get("inline_keyboard") or [])


def _reply_rows(params: dict[str, Any]) -> list[list[Any]]:
    markup = params.get("reply_markup")
    if isinstance(markup, str):  # PTB sends markups as JSON text
        import json

        markup = json.loads(markup)
    return list((markup or {}).get("keyboard") or [])


def render(calls: list[Any], out: Any = sys.stdout) -> list[Button]:
    """Print what the bot sent, each message's buttons numbered right under it (from 1, across
    this answer's messages); return those buttons in their numbers' order."""
    numbered: list[Button] = []

    def number(kind: str, message_id: int | None, button: dict[str, Any]) -> None:
        numbered.append((kind, message_id, button))
        note = "  (keyboard)" if kind == "reply" else ""
        out.write(f"   [{len(numbered)}] {button.get('text', '')}{note}\n")

    for call in calls:
        params = call.params
        if call.method in ("sendMessage", "editMessageText", "sendPhoto", "sendDocument"):
            if call.method == "editMessageText":
                out.write(f"\n🤖 (edited) {params.get('text', '')}\n")
            elif call.method == "sendMessage":
                out.write(f"\n🤖 {params.get('text', '')}\n")
            else:
                kind = "file" if call.method == "sendDocument" else "picture"
                out.write(f"\n🤖 [{kind}] {params.get('caption') or ''}\n")
            sent = call.result if isinstance(call.result, dict) else {}
            for row in _inline_rows(sent):
                for button in row:
                    number("inline", sent.get("message_id"), button)
            for row in _reply_rows(params):
                for button in row:
                    number("reply", None, {"text": button} if isinstance(button, str) else button)
        elif call.method == "answerCallbackQuery" and params.get("text"):
            out.write(f"   ({params['text']})\n")
    return numbered


def live(driver: ChatDriver, button: Button) -> dict[str, Any] | None:
    """The message a numbered button is still on (None once the bot removed or changed it)."""
    kind, message_id, wanted = button
    if kind == "reply":
        shown = {b.get("text") for b in driver.reply_buttons}
        return {} if wanted.get("text") in shown else None
    for message in driver.messages:
        if message.get("message_id") == message_id:
            data = wanted.get("callback_data")
            rows = _inline_rows(message)
            return message if any(b.get("callback_data") == data for r in rows for b in r) else None
    return None


def numbered_buttons(driver: ChatDriver) -> list[Button]:
    """Every live button in the chat, numbered oldest message first (for a fresh screen)."""
    found: list[Button] = []
    for message in driver.messages:
        for row in _inline_rows(message):
            found.extend(("inline", message.get("message_id"), b) for b in row)
    found.extend(("reply", None, b) for b in driver.reply_buttons)
    return found


async def press_numbered(driver: ChatDriver, button: Button) -> list[Any] | None:
    """Press a numbered button if it is still live; None when it is gone."""
    kind, _, wanted = button
    message = live(driver, button)
    if message is None:
        return None
    if kind == "inline":
        return await driver.press_data(wanted["callback_data"], message=message)
    if wanted.get("request_contact"):
        phone = await _read_line("   phone number to share: ")
        return await driver.share_contact((phone or "").strip() or "0912345678")
    if wanted.get("request_location"):
        where = await _read_line("   location to share, as lat,lon (Enter: Sa Pa): ")
        try:
            lat, lon = (float(x) for x in (where or "").split(","))
        except ValueError:
            lat, lon = 22.3364, 103.8438
        return await driver.send_location(lat, lon)
    return await driver.send(wanted["text"])


async def _read_line(prompt: str) -> str | None:
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(None, lambda: input(prompt))
    except EOFError:
        return None


async def run_demo(settings: Settings, *, language: str = "vi", sample_data: bool = True) -> None:
    """Start the stand-in and the bot, then relay the terminal to the bot until /quit; the
    sample campaigns, sites and sessions are loaded first when ``sample_data``."""
    from bot.app import build_application, engine_of, prepare_database
    from bot.logs import setup_logging
    from bot.polling import Poller
    from models.certificates import Keyring

    setup_logging("WARNING")
    async with BotApiStandIn() as api:
        settings.telegram.base_url = api.base_url
        settings.telegram.base_file_url = api.base_file_url
        # a key of the demo's own, in memory only: a demo certificate must never pass for one
        # signed by the deployment's key, and the demo must not create the deployment's key
        app = build_application(
            settings, token=DEMO_TOKEN, rate_limit=False, keyring=Keyring.ephemeral()
        )
        await prepare_database(app)
        if sample_data:
            await _sample_data(app)
        async with app:
            poller = Poller(app, timeout=1)
            await poller.start()
            await app.start()
            try:
                await _loop(
                    ChatDriver(api, TgUser(id=1000001, first_name="Demo", language_code=language))
                )
            finally:
                await poller.stop()
                await app.stop()
                await poller.confirm()
        await engine_of(app).dispose()


async def _sample_data(app: Any) -> None:
    """The shipped Lào Cai campaigns, sites and sessions, so /book works out of the box."""
    from models.campaigns import load_sample_data

    services = app.bot_data["services"]
    async with services.sessions() as session, session.begin():
        await load_sample_data(session, services.today())


async def _loop(
    driver: ChatDriver,
    read_line: Callable[[str], Awaitable[str | None]] = _read_line,
    out: Any = sys.stdout,
) -> None:
    """Relay typed lines to the bot; a number presses the button printed with that number, as
    long as its message still shows it (the numbers of the latest answer with buttons count)."""
    out.write(
        "healthbook demo — type /start to begin, a button's number to press it, /quit to end.\n"
    )
    out.write(
        f"(this demo user is Telegram id {driver.user.id})\n"
    )
    buttons = numbered_buttons(driver)
    while True:
        line = await read_line("\n👤 > ")
        if line is None or line.strip() in QUIT:
            out.write("bye\n")
            return
        line = line.strip()
        if not line:
            continue
        with contextlib.suppress(asyncio.TimeoutError, AssertionError):
            calls = None
            if line.isascii() and line.isdigit() and 1 <= int(line) <= len(buttons):
                calls = await press_numbered(driver, buttons[int(line) - 1])
            if calls is None:  # not a number on screen (or its button is gone): typed text
                calls = await driver.send(line)
            buttons = render(calls, out) or [b for b in buttons if live(driver, b) is not None]
