"""Storage: calls and transcripts (SQLite by default, any SQLAlchemy URL)."""

from ivr.storage.base import CallRecord, Storage, Utterance
from ivr.storage.sql import SqlStorage

__all__ = ["CallRecord", "Storage", "Utterance", "SqlStorage", "open_storage"]


def open_storage(url: str) -> Storage:
    return SqlStorage(url)
