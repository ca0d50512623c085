"""The Telegram Bot API stand-in (moved into a package; split in the next commit)."""

from bot.standin.telegram import *  # noqa: F403
from bot.standin.telegram import __all__  # noqa: F401
