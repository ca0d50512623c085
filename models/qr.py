"""QR codes as PNG images (tickets, certificates), with segno: no Telegram, no network."""

from __future__ import annotations

import io

import segno


def qr_png(data: str, *, scale: int = 8) -> bytes:
    """A PNG of a QR code for ``data`` (error correction M: survives a creased printout)."""
    buffer = io.BytesIO()
    segno.make(data, error="m", micro=False).save(buffer, kind="png", scale=scale, border=4)
    return buffer.getvalue()


def checkin_link(bot_username: str, code: str) -> str:
    """The deep link a ticket's QR encodes: scanning it opens the bot's check-in for ``code``."""
    return f"https://t.me/{bot_username}?start=checkin-{code}"
