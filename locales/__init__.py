"""Message catalogues, ``<lang>/LC_MESSAGES/*.po``: data, shipped in the wheel beside ``bot``
(read by :mod:`bot.i18n`, which checks at start-up that every language has every message)."""
