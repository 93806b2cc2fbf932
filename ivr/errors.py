"""Errors the IVR reports to people: each says what is wrong and where."""

from __future__ import annotations


class IvrError(Exception):
    """Base class for errors that carry a message meant for an operator."""


class ConfigError(IvrError):
    """A settings or data file is invalid; the message names file, line and field."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class ModelMissing(IvrError):
    """A speech model the configuration asks for is not installed."""


class DialogUnavailable(IvrError):
    """The dialog engine (Rasa) did not answer in time or answered with an error."""


class ProtocolError(IvrError):
    """A transport received a message it cannot accept (bad JSON, wrong codec, …).

    The message names the offending field; it is sent back to the client (an
    error event, the WebSocket close reason). `close_code` is the WebSocket
    close code when the stream ends over it: 1003 (unsupported data) for
    malformed messages, 1008 (policy violation) for a client over a limit.
    `fatal` errors end the stream at once, even in the middle of a call.
    """

    def __init__(self, message: str, close_code: int = 1003, fatal: bool = False):
        super().__init__(message)
        self.close_code = close_code
        self.fatal = fatal
