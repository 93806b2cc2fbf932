"""What can go wrong when pulling a model: one class per kind, so `ivr models pull` can say which.

Kept apart from pull.py (downloading) and install.py (unpacking, checking,
swapping in) because both raise them and the CLI catches them.
"""

from ivr.errors import IvrError


class PullError(IvrError):
    """A model could not be downloaded or installed; the message says which and why."""


class DownloadError(PullError):
    """HTTP error, refused connection, or an interrupted transfer (kept for resuming)."""


class ChecksumMismatch(PullError):
    """The downloaded bytes are not the ones the catalogue names (size or digest)."""


class BadArchive(PullError):
    """A Vosk zip that cannot be read."""


class UnsafeArchive(BadArchive):
    """A zip member would land outside the model directory (or is a symlink/zip bomb)."""


class InvalidModel(PullError):
    """Downloaded and verified, but the files do not form a usable model."""
