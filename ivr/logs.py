"""Structured logs: one JSON object per line, with the `extra` fields of each call.

Log records carry ids, reasons and counts; never caller numbers, recognized
text or secrets (transcripts go to storage, where access is controlled).

Exceptions are where data slips in: a database driver's message repeats the
statement's parameters (a caller's number, a transcript line), a KeyError its
key. So logged exceptions keep their types, their causes' types and the frames
(file, line, function: no locals, no source lines), never their messages.
An HTTP handler's unhandled exception never reaches aiohttp's own logging,
which would print the message: `error_middleware` logs it as above with a
request id and answers a plain 500 carrying that id, so a report from a user
can be matched with the log line.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from types import TracebackType

from aiohttp import web

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
REQUEST_ID = "X-Request-Id"

log = logging.getLogger("ivr.http")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)

    def formatException(self, ei: tuple) -> str:  # noqa: N802 (logging's name)
        """The traceback without messages: see the module's docstring."""
        return describe_exception(ei[1]) if ei[1] is not None else ""


def describe_exception(exc: BaseException) -> str:
    """`exc`'s traceback like Python prints it, but with types and frames only (causes first)."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = "".join(f"  {where}\n" for where in frames_of(current.__traceback__))
        parts.append(f"Traceback (most recent call last; message left out):\n{frames}{type_name(current)}")
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return "\n\nwhich happened while handling (or was caused by) the above:\n\n".join(reversed(parts))


def type_name(exc: BaseException) -> str:
    kind = type(exc)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def frames_of(tb: TracebackType | None) -> list[str]:
    """`path:line in function` per frame, the path as imported (`ivr/agents/api.py`), no locals or source."""
    return [f"{_importable(f.filename)}:{f.lineno} in {f.name}" for f in traceback.extract_tb(tb)]


def _importable(filename: str) -> str:
    """`filename` relative to the longest `sys.path` entry it lies under (site-packages, the project)."""
    roots = sorted((os.path.abspath(p or os.curdir) for p in sys.path), key=len, reverse=True)
    for root in roots:
        if filename.startswith(root.rstrip(os.sep) + os.sep):
            return filename[len(root.rstrip(os.sep)) + 1 :]
    return filename


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class LoggedError(Exception):
    """Stands in for a handler's exception that was logged already, when its response had begun (no 500 possible).

    aiohttp then logs and closes the connection; this carries only the request id.
    """


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A handler's unhandled exception: logged without its message (`http.unhandled_error`), answered 500 + id."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception as exc:
        request_id = secrets.token_hex(8)
        frames = frames_of(exc.__traceback__.tb_next if exc.__traceback__ else None)  # from the handler on
        route = request.match_info.route.resource
        log.error(
            "http.unhandled_error",
            extra={
                "request_id": request_id,
                "error": type_name(exc),
                "causes": _causes(exc),
                "handler": getattr(handler, "__qualname__", type(handler).__name__),
                "method": request.method,
                "route": route.canonical if route is not None else None,  # the pattern: ids in the path stay out
                "where": frames[-1] if frames else None,
                "frames": frames,
            },
        )
        if request.writer.output_size > 0:
            raise LoggedError(f"request {request_id}") from None
        body = json.dumps({"error": "internal error; the server log has the details", "request_id": request_id})
        return web.Response(status=500, text=body, content_type="application/json", headers={REQUEST_ID: request_id})


def _causes(exc: BaseException) -> list[str]:
    """The types of the exceptions behind `exc` (e.g. the driver's error under SQLAlchemy's)."""
    causes: list[str] = []
    current = exc.__cause__ or exc.__context__
    while current is not None and len(causes) < 10:
        causes.append(type_name(current))
        current = current.__cause__ or current.__context__
    return causes
