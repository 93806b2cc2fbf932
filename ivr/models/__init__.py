"""Speech models (Vosk ASR, Piper TTS): catalogue, lookup and download.

``locate`` is what the runtime needs; ``pull``/``list_models`` back the
``ivr models`` commands.
"""

from ivr.errors import ModelMissing
from ivr.models.catalogue import (
    DEFAULT_CATALOGUE_PATH,
    Catalogue,
    ModelEntry,
    RemoteFile,
    default_for,
    install_path,
    load_catalogue,
    locate,
    parse_catalogue,
)
from ivr.models.pull import (
    BadArchive,
    ChecksumMismatch,
    DownloadError,
    InvalidModel,
    PullError,
    UnsafeArchive,
    list_models,
    pull,
    pull_entry,
)

__all__ = [
    "DEFAULT_CATALOGUE_PATH",
    "BadArchive",
    "Catalogue",
    "ChecksumMismatch",
    "DownloadError",
    "InvalidModel",
    "ModelEntry",
    "ModelMissing",
    "PullError",
    "RemoteFile",
    "UnsafeArchive",
    "default_for",
    "install_path",
    "list_models",
    "load_catalogue",
    "locate",
    "parse_catalogue",
    "pull",
    "pull_entry",
]
