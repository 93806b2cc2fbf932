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
    """A transport received a message it cannot accept (bad JSON, wrong codec, …)."""
