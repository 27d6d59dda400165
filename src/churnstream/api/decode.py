"""Request bodies to validated customer records, or a 422 with pydantic's field errors.

The body is decoded with orjson and validated as a whole, so the list-size cap applies before
any record is validated; malformed JSON (``NaN`` and ``Infinity`` included, JSON has
neither), wrong types, unknown categories and extra fields are all 422s, never a 500.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError

from churnstream.schemas import TIMESTAMP_COLUMN, CustomerEvent, utc_now_iso

logger = logging.getLogger(__name__)

JSON_MEDIA_TYPES = ("application/json",)

_EVENTS: TypeAdapter[list[CustomerEvent]] = TypeAdapter(list[CustomerEvent])


def json_safe(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    return str(value)  # e.g. the ValueError behind a custom validator's message


def _field_errors(exc: ValidationError, *, single: bool) -> list[dict[str, Any]]:
    """pydantic's errors for ``list[CustomerEvent]``, located in the request body."""
    errors = []
    for err in exc.errors(include_url=False):
        loc = list(err["loc"])
        if single:
            loc = loc[1:]  # the body was one record, not a list of one
        error: dict[str, Any] = {"type": err["type"], "loc": ["body", *loc], "msg": err["msg"]}
        # A missing field's "input" is the whole record around it: noise, once per field.
        if "input" in err and err["type"] != "missing":
            error["input"] = json_safe(err["input"])
        if err.get("ctx"):
            error["ctx"] = json_safe(err["ctx"])
        errors.append(error)
    return errors


def _body_error(kind: str, msg: str, **extra: Any) -> RequestValidationError:
    return RequestValidationError([{"type": kind, "loc": ["body"], "msg": msg, **extra}])


def decode_records(body: bytes, max_records: int) -> tuple[list[CustomerEvent], bool]:
    """The body's customer records, validated, and whether it was one record (not a list).

    Raises RequestValidationError (422) with pydantic-style errors located in the body.
    """
    if not body.strip():
        raise _body_error("missing", "a customer record, or a list of them, is required")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ["body", exc.pos],
                    "msg": "JSON decode error",
                    "ctx": {"error": exc.msg},
                }
            ]
        ) from None
    single = isinstance(data, dict)
    if single:
        items: list[Any] = [data]
    elif isinstance(data, list):
        if len(data) > max_records:
            raise _body_error(
                "too_long",
                f"List should have at most {max_records} items, not {len(data)}",
                ctx={"field_type": "List", "max_length": max_records, "actual_length": len(data)},
            )
        items = data
    else:
        raise _body_error(
            "model_type",
            "Input should be a customer record (a JSON object) or a list of them",
            input=data,
        )
    now = utc_now_iso()
    for item in items:
        if isinstance(item, dict):
            item.setdefault(TIMESTAMP_COLUMN, now)
    try:
        events = _EVENTS.validate_python(items)
    except ValidationError as exc:
        raise RequestValidationError(_field_errors(exc, single=single)) from None
    return events, single


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) one larger than ``limit`` without reading it all."""
    too_large = HTTPException(413, f"request body larger than {limit} bytes (api.max_body_bytes)")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def check_media_type(request: Request) -> None:
    content_type = request.headers.get("content-type")
    if content_type is None:
        return  # be lenient with clients that send no type at all
    media = content_type.split(";", 1)[0].strip().lower()
    if media not in JSON_MEDIA_TYPES and not media.endswith("+json"):
        raise HTTPException(415, "send the records as JSON (Content-Type: application/json)")
