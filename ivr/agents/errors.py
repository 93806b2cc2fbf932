"""HTTP errors of the agent side with a JSON body, as the desktop and machine clients read them."""

from __future__ import annotations

import json
from typing import TypeVar

from aiohttp import web

E = TypeVar("E", bound=web.HTTPException)


def json_error(kind: type[E], message: str, headers: dict[str, str] | None = None) -> E:
    """An HTTP error with a JSON body `{"error": message}`."""
    return kind(text=json.dumps({"error": message}), content_type="application/json", headers=headers)
