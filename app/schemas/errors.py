"""The error answer as clients see it: ``{"error": {code, message, details}}``, ``details`` typed per code.

The codes come from ``app.errors`` (``error_codes()``: every ``DomainError`` class, wherever it is
defined, and the HTTP-level codes), so a new error class is in the contract without anyone listing it.
Codes whose details have a fixed shape get their own variant; every other code carries an object.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.domain import ActionPath, Status
from app.schemas.imports import ImportRowError


class ValidationIssue(BaseModel):
    loc: list[str | int] = Field(description="where: body / query / path / header, then the field")
    msg: str
    type: str


class IllegalTransitionDetails(BaseModel):
    order_id: int
    status: Status = Field(description="the order's current status")
    allowed_actions: list[ActionPath] = Field(description="what the caller may do now: POST /orders/{id}/{segment}")


class VersionMismatchDetails(BaseModel):
    order_id: int
    current_version: int = Field(description="send it as If-Match to act on the order as it is now")
    status: Status


class InvalidInputDetails(BaseModel):
    """``errors`` for a request that does not validate; a rule the service checks names its ``field`` (or
    the offending ids) instead."""

    model_config = ConfigDict(extra="allow")

    errors: list[ValidationIssue] | list[ImportRowError] | None = Field(
        default=None,
        description="one entry per problem: where in the request, or (a roster import) the file's row and column",
    )
    error_count: int | None = Field(
        default=None, description="a roster import: row errors found (errors: the first 1000)"
    )
    field: str | None = None


class RetryDetails(BaseModel):
    retry_after_seconds: int = Field(description="as the Retry-After header: seconds before a retry may succeed")


class IllegalTransitionError(BaseModel):
    """409: the order's state does not allow the action; nothing changed."""

    code: Literal["illegal_transition"]
    message: str
    details: IllegalTransitionDetails


class VersionMismatchError(BaseModel):
    """409: ``If-Match`` named another version than the order's; nothing changed."""

    code: Literal["version_mismatch"]
    message: str
    details: VersionMismatchDetails


class InvalidInputError(BaseModel):
    """422: the request is not valid; nothing changed."""

    code: Literal["invalid_input"]
    message: str
    details: InvalidInputDetails


class RetryLaterError(BaseModel):
    """429 ``rate_limited``, 409 ``busy``, 503 ``unavailable``: nothing changed; retry after the seconds given."""

    code: Literal["rate_limited", "busy", "unavailable"]
    message: str
    details: RetryDetails


# The codes with a variant of their own above (tests/test_contract.py checks they are the classes' codes).
TYPED_CODES = frozenset(
    {"illegal_transition", "version_mismatch", "invalid_input", "rate_limited", "busy", "unavailable"}
)


def _other_codes(schema: dict[str, Any]) -> None:
    from app.errors import error_codes  # the error classes import this module's answer model

    schema["enum"] = [code for code in error_codes() if code not in TYPED_CODES]


class OtherError(BaseModel):
    """Every other error (401, 403, 404, 405, 409 ``conflict``, 413, 415 …); ``details`` as the code has them."""

    code: str = Field(json_schema_extra=_other_codes)
    message: str
    details: dict[str, Any]


class ErrorResponse(BaseModel):
    """Every error the API returns has this shape."""

    error: IllegalTransitionError | VersionMismatchError | InvalidInputError | RetryLaterError | OtherError
