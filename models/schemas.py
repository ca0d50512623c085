"""Pydantic schema of a complete health book: every answer re-validated together before saving."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from models import validators as v
from models.errors import InvalidAnswer


class IdIn(BaseModel):
    """An identity document number as stored in a draft."""

    kind: Literal["cccd", "cmnd"]
    number: str


class HealthBookIn(BaseModel):
    """Everything a health book holds; built from a draft's answers at save time."""

    model_config = ConfigDict(frozen=True)

    full_name: str
    date_of_birth: dt.date
    gender: v.Gender
    id_number: IdIn | None
    phone: str | None
    bhyt: str | None
    ethnicity: int
    occupation: str
    priority_group: str
    province: int
    ward: int
    address_line: str | None
    screening: dict[str, v.Answer]
    allergies: str | None
    chronic_conditions: str | None

    @field_validator("full_name")
    @classmethod
    def _name(cls, value: str) -> str:
        return v.normalize_name(value)

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        return None if value is None else v.parse_phone(value)

    @field_validator("bhyt")
    @classmethod
    def _bhyt(cls, value: str | None) -> str | None:
        return None if value is None else v.parse_bhyt(value)

    @field_validator("ethnicity")
    @classmethod
    def _ethnicity(cls, value: int) -> int:
        v.ethnicity_by_code(value)
        return value

    @field_validator("occupation")
    @classmethod
    def _occupation(cls, value: str) -> str:
        if not v.is_occupation(value):
            raise InvalidAnswer("error.choice.unknown")
        return value

    @field_validator("priority_group")
    @classmethod
    def _priority(cls, value: str) -> str:
        if not v.is_priority_group(value):
            raise InvalidAnswer("error.choice.unknown")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> HealthBookIn:
        if self.id_number is not None and self.id_number.kind == "cccd":
            v.parse_id_number(self.id_number.number, self.date_of_birth, self.gender)
        if not v.ward_in_province(self.ward, self.province):
            raise InvalidAnswer("error.ward.none", query="")
        asked = {item.code for item in v.screening_items()}
        if set(self.screening) < asked:
            raise InvalidAnswer("error.choice.unknown")
        return self


FIELD_OF_LOC = {"id_number": "id_number", "province": "province", "ward": "ward"}


def validate_book(
    answers: dict[str, Any],
) -> tuple[HealthBookIn | None, str | None, InvalidAnswer | None]:
    """Validate a draft's answers; on failure return the field to ask again and why."""
    try:
        return HealthBookIn.model_validate(answers), None, None
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(p) for p in first.get("loc", ())]
        cause = first.get("ctx", {}).get("error")
        error = cause if isinstance(cause, InvalidAnswer) else InvalidAnswer("error.choice.unknown")
        field = loc[0] if loc else ("id_number" if error.key.startswith("error.id") else "ward")
        return None, field, error
