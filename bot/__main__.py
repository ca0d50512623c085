"""``python -m bot`` is the ``healthbook`` command."""

from bot.cli import main

main()
