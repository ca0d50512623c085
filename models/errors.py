"""Errors raised by the domain layer; each names a localized message, never a literal text."""

from __future__ import annotations

from typing import Any


class InvalidAnswer(ValueError):
    """An answer that cannot be accepted; ``key`` is a message id in ``locales/``."""

    def __init__(self, key: str, **params: Any) -> None:
        super().__init__(key)
        self.key = key
        self.params = params

    def __repr__(self) -> str:  # params may hold personal data: keep them out of reprs
        return f"InvalidAnswer({self.key!r})"


class DomainError(Exception):
    """A refused operation (duplicate ID, not found, not allowed); ``key`` is a message id."""

    def __init__(self, key: str, **params: Any) -> None:
        super().__init__(key)
        self.key = key
        self.params = params
