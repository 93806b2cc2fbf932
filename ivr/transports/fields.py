"""Reading fields of client messages at the wire edge, with errors that name the field.

Every transport takes JSON from clients it does not control. Whatever a value's
type or size, reading it either returns what the session may rely on (a string
of bounded length, an integer, a mapping) or raises ProtocolError naming the
field, so a malformed message is a clear protocol error and never an
exception from deep inside the call (a 500, or a WebSocket dropped with 1006).
"""

from __future__ import annotations

import json
from typing import Any

from ivr.errors import ProtocolError

DTMF_DIGITS = frozenset("0123456789*#ABCD")
MAX_NUMBER_CHARS = 64  # a dialled or calling number (E.164 has 15 digits; SIP URIs and "anonymous" fit too)
MAX_ID_CHARS = 128  # call and stream ids (Twilio's are 34 characters)
MAX_PARAMETERS = 32  # customParameters of a Media Streams start
MAX_PARAMETER_CHARS = 256
SHOWN_CHARS = 40  # of a client's value quoted back in an error


def shown(value: Any) -> str:
    """A client's value for an error message or log: repr, cut so a megabyte stays a line."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


def parse_json(message: str) -> Any:
    """JSON text, or ProtocolError: also for nesting deeper than the parser's recursion limit
    (json raises RecursionError, not a decode error) and integers too long to convert."""
    try:
        return json.loads(message)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"message is not JSON: {exc.msg} at column {exc.colno}") from exc
    except RecursionError:
        raise ProtocolError("message is not JSON this IVR reads: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer literal of more than 4300 digits
        raise ProtocolError(f"message is not JSON this IVR reads: {exc}") from exc


def mapping(value: Any, name: str, required: bool = True) -> dict[str, Any]:
    """A JSON object field; absent or null is an empty one unless `required`."""
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError(f"{name} must be a JSON object, got {type_name(value)}")
    return value


def text(value: Any, name: str, limit: int, required: bool = False) -> str | None:
    """A string field of at most `limit` characters. Absent, null and empty mean None (unless `required`).

    Numbers are refused, not converted: a phone number as a JSON number has lost
    its `+` or leading zeros, and would reach another tenant or caller.
    """
    if value is None or value == "":
        if required:
            raise ProtocolError(f"missing field {name}")
        return None
    if not isinstance(value, str):
        raise ProtocolError(f"{name} must be a string, got {type_name(value)}")
    if len(value) > limit:
        raise ProtocolError(f"{name} is {len(value)} characters long; at most {limit} are accepted")
    return value


def integer(value: Any, name: str, default: int) -> int:
    """An integer field; integral numbers (8000.0) and decimal strings ("8000") are accepted, as providers send both."""
    if value is None:
        return default
    if isinstance(value, bool):
        raise ProtocolError(f"{name} must be an integer, got {type_name(value)}")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit() and len(value) <= 12:
        return int(value)
    if isinstance(value, int):
        return value
    raise ProtocolError(f"{name} must be an integer, got {shown(value)}")


def digit(value: Any, name: str) -> str:
    """One DTMF key."""
    key = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    if key is None or key not in DTMF_DIGITS:
        raise ProtocolError(f"{name} {shown(value)} is not a DTMF digit")
    return key


def type_name(value: Any) -> str:
    """JSON's name for a decoded value's type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
