"""``healthbook demo``: the real Application, talking to an in-process Bot API stand-in,
driven from the terminal. The bot's messages are printed with their buttons numbered; type an
answer, or a button's number, or a /command. Ctrl-D or /quit ends the demo."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Any

from bot.settings import Settings
from bot.standin import BotApiStandIn, ChatDriver, TgUser

DEMO_TOKEN = "1000001:demo-token-no-network"
QUIT = {"/quit", "/exit"}


def render(calls: list[Any], out: Any = sys.stdout) -> list[dict[str, Any]]:
    """Print what the bot sent; return the buttons now on screen, numbered from 1."""
    for call in calls:
        params = call.params
        if call.method in ("sendMessage", "editMessageText"):
            prefix = "(edited) " if call.method == "editMessageText" else ""
            out.write(f"\n🤖 {prefix}{params.get('text', '')}\n")
        elif call.method in ("sendDocument", "sendPhoto"):
            kind = "file" if call.method == "sendDocument" else "picture"
            caption = params.get("caption") or ""
            out.write(f"\n🤖 [{kind}] {caption}\n")
        elif call.method == "answerCallbackQuery" and params.get("text"):
            out.write(f"   ({params['text']})\n")
    return []


def numbered_buttons(driver: ChatDriver) -> list[tuple[str, dict[str, Any]]]:
    """Buttons on screen: the newest inline keyboard, then a reply keyboard if one is open."""
    found: list[tuple[str, dict[str, Any]]] = []
    newest = driver.last_message or {}
    markup = newest.get("reply_markup") or {}
    for row in markup.get("inline_keyboard", []):  # only the newest message's buttons
        found.extend(("inline", {"label": b.get("text", "")}) for b in row)
    for button in driver.reply_buttons:
        found.append(("reply", button))
    return found


async def _read_line(prompt: str) -> str | None:
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(None, lambda: input(prompt))
    except EOFError:
        return None


async def run_demo(settings: Settings, *, language: str = "vi") -> None:
    """Start the stand-in and the bot, then relay the terminal to the bot until /quit."""
    from bot.app import build_application, engine_of, prepare_database
    from bot.logs import setup_logging

    setup_logging("WARNING")
    async with BotApiStandIn() as api:
        settings.telegram.base_url = api.base_url
        settings.telegram.base_file_url = api.base_file_url
        app = build_application(settings, token=DEMO_TOKEN, rate_limit=False)
        await prepare_database(app)
        await _sample_data(app)
        async with app:
            assert app.updater is not None
            await app.updater.start_polling(poll_interval=0, timeout=1)
            await app.start()
            try:
                await _loop(
                    ChatDriver(api, TgUser(id=1000001, first_name="Demo", language_code=language))
                )
            finally:
                await app.updater.stop()
                await app.stop()
        await engine_of(app).dispose()


async def _sample_data(app: Any) -> None:
    """The shipped Lào Cai campaigns, sites and sessions, so /book works out of the box."""
    from models.campaigns import load_sample_data

    services = app.bot_data["services"]
    async with services.sessions() as session, session.begin():
        await load_sample_data(session, services.today())


async def _loop(driver: ChatDriver) -> None:
    print("healthbook demo — type /start to begin, a button's number to press it, /quit to end.")
    print(f"(database: the one in your settings; this demo user is Telegram id {driver.user.id})")
    while True:
        buttons = numbered_buttons(driver)
        for n, (kind, button) in enumerate(buttons, 1):
            label = button.get("label") or button.get("text")
            print(f"   [{n}] {label}" + ("  (keyboard)" if kind == "reply" else ""))
        line = await _read_line("\n👤 > ")
        if line is None or line.strip() in QUIT:
            print("bye")
            return
        line = line.strip()
        if not line:
            continue
        with contextlib.suppress(asyncio.TimeoutError, AssertionError):
            if line.isdigit() and 1 <= int(line) <= len(buttons):
                kind, button = buttons[int(line) - 1]
                if kind == "inline":
                    render(await driver.press(button["label"]))
                elif button.get("request_contact"):
                    phone = await _read_line("   phone number to share: ")
                    render(await driver.share_contact((phone or "").strip() or "0912345678"))
                else:
                    render(await driver.send(button["text"]))
            else:
                render(await driver.send(line))
