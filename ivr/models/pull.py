"""Download, verify and install catalogue models into the model cache.

Models are tens of megabytes and phone-line hosts often sit behind flaky
links, so downloads go to ``<cache>/.partial/…/<file>.part`` and resume with
an HTTP Range request, both within one run (a few retries) and across runs.
Nothing is moved into ``<cache>/vosk/<name>`` or ``<cache>/piper/<name>``
until size, checksum and structure are verified: the runtime never sees half a
model, and a bad download never shadows a good one.

Layout::

    <cache>/vosk/<name>/                      unpacked Vosk model
    <cache>/piper/<name>/<name>.onnx(.json)   Piper voice
    <cache>/.partial/<kind>/<name>/           downloads in progress (resumable)
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from ivr.models.catalogue import (
    Catalogue,
    ModelEntry,
    RemoteFile,
    install_path,
    load_catalogue,
)
from ivr.models.errors import BadArchive, ChecksumMismatch, DownloadError, InvalidModel, PullError, UnsafeArchive
from ivr.models.install import install, installed_problems

log = logging.getLogger(__name__)

#: progress(file_name, bytes_done, bytes_total_or_None), called as data arrives.
ProgressFn = Callable[[str, int, "int | None"], None]

PARTIAL_DIR = ".partial"
CHUNK = 1 << 16
_RETRY_STATUSES = {408, 429, 500, 502, 503, 504}


class _Retry(Exception):
    """Internal: transient failure, try the request again (resuming if possible)."""


# --------------------------------------------------------------------------- public API


async def pull(
    languages: list[str],
    cache_dir: Path,
    catalogue: Catalogue | None = None,
    progress: ProgressFn | None = None,
    base_url_override: str | None = None,
    *,
    force: bool = False,
    retries: int = 3,
) -> list[Path]:
    """Install the default Vosk model and Piper voice for each language.

    Each item of ``languages`` is a language code ("de") or a catalogue model
    name ("de_DE-thorsten-low"); an empty list means every language that has
    defaults. Already-installed valid models are skipped (``force`` reinstalls).
    ``base_url_override`` fetches every file as ``<base>/<file name>``, for an
    internal mirror. Returns the installed paths (Vosk dir, Piper .onnx).
    """
    cat = catalogue if catalogue is not None else load_catalogue()
    entries = resolve_targets(languages, cat)
    paths: list[Path] = []
    async with _new_session() as session:
        for entry in entries:
            paths.append(
                await pull_entry(
                    entry,
                    cache_dir,
                    session=session,
                    progress=progress,
                    base_url_override=base_url_override,
                    force=force,
                    retries=retries,
                )
            )
    return paths


async def pull_entry(
    entry: ModelEntry,
    cache_dir: Path,
    *,
    session: aiohttp.ClientSession | None = None,
    progress: ProgressFn | None = None,
    base_url_override: str | None = None,
    force: bool = False,
    retries: int = 3,
) -> Path:
    """Download, verify and install one catalogue entry; returns its installed path."""
    cache_dir = Path(cache_dir)
    final = install_path(entry.kind, entry.name, cache_dir)
    if not force and not installed_problems(entry, final):
        log.info("%s %s already installed at %s", entry.kind, entry.name, final)
        return final
    if session is None:
        async with _new_session() as own:
            return await pull_entry(
                entry,
                cache_dir,
                session=own,
                progress=progress,
                base_url_override=base_url_override,
                force=force,
                retries=retries,
            )

    work = cache_dir / PARTIAL_DIR / entry.kind / entry.name
    work.mkdir(parents=True, exist_ok=True)
    files = [
        await _fetch(session, _effective_url(rf, base_url_override), rf, work / rf.filename, progress, retries)
        for rf in entry.files
    ]
    try:
        await asyncio.to_thread(install, entry, files, final)
    except (BadArchive, InvalidModel):
        shutil.rmtree(work, ignore_errors=True)  # verified but unusable: don't reuse it
        raise
    shutil.rmtree(work, ignore_errors=True)
    _prune_empty(work.parent, cache_dir)
    return final


def resolve_targets(items: list[str], catalogue: Catalogue) -> list[ModelEntry]:
    """Turn ``pull`` arguments (languages or model names) into catalogue entries."""
    wanted = list(items) or catalogue.languages()
    out: list[ModelEntry] = []
    for item in wanted:
        named = catalogue.get(item)
        if named is not None:
            found = [named]
        else:
            found = [e for e in catalogue.entries if e.language == item and e.default]
            if not found:
                raise PullError(
                    f"{item!r} is neither a language nor a model in the catalogue. "
                    f"Languages: {', '.join(catalogue.languages()) or 'none'}; "
                    f"models: see `ivr models list`."
                )
        out.extend(e for e in found if e not in out)
    return out


def list_models(cache_dir: Path, catalogue: Catalogue | None = None) -> list[dict[str, Any]]:
    """One row per catalogue entry for ``ivr models list``.

    Keys: name, kind, language, default, installed (bool: present *and*
    structurally valid), path (where it is or would be installed), size
    (download bytes per the catalogue, None if unknown).
    """
    cat = catalogue if catalogue is not None else load_catalogue()
    rows: list[dict[str, Any]] = []
    for entry in cat.entries:
        path = install_path(entry.kind, entry.name, cache_dir)
        rows.append(
            {
                "name": entry.name,
                "kind": entry.kind,
                "language": entry.language,
                "default": entry.default,
                "installed": not installed_problems(entry, path),
                "path": path,
                "size": entry.size,
            }
        )
    return rows


# --------------------------------------------------------------------------- download


def _new_session() -> aiohttp.ClientSession:
    # identity encoding: byte offsets for Range must refer to the stored file.
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=120),
        headers={"Accept-Encoding": "identity", "User-Agent": "ivr-models/1"},
    )


def _effective_url(rf: RemoteFile, base_url_override: str | None) -> str:
    if not base_url_override:
        return rf.url
    return f"{base_url_override.rstrip('/')}/{quote(rf.filename)}"


async def _fetch(
    session: aiohttp.ClientSession, url: str, rf: RemoteFile, dest: Path, progress: ProgressFn | None, retries: int
) -> Path:
    """Download ``url`` to ``dest`` via ``dest.part``, verified against ``rf``."""
    if dest.exists():  # verified earlier, but the model as a whole was not installed
        if not await asyncio.to_thread(_verify_problem, dest, rf):
            return dest
        dest.unlink()
    part = dest.with_name(dest.name + ".part")
    retries = max(1, retries)
    for attempt in range(1, retries + 1):
        try:
            await _download_once(session, url, part, rf.size, progress)
            break
        except _Retry as exc:
            got = part.stat().st_size if part.exists() else 0
            if attempt == retries:
                raise DownloadError(
                    f"download of {url} failed after {attempt} attempts ({exc}); "
                    f"{got} bytes are kept in {part} - run the command again to resume"
                ) from exc
            log.warning("download of %s interrupted at %d bytes (%s); retrying", url, got, exc)
            await asyncio.sleep(min(0.5 * 2 ** (attempt - 1), 10))

    problem = await asyncio.to_thread(_verify_problem, part, rf)
    if problem:
        part.unlink(missing_ok=True)  # wrong bytes can't be fixed by resuming
        raise ChecksumMismatch(f"{url}: {problem}; the download was discarded")
    os.replace(part, dest)
    return dest


async def _download_once(
    session: aiohttp.ClientSession, url: str, part: Path, expected: int | None, progress: ProgressFn | None
) -> None:
    offset = part.stat().st_size if part.exists() else 0
    if expected is not None and offset > expected:
        part.unlink()
        offset = 0
    if expected is not None and offset == expected:
        return  # complete from an earlier run; verification decides
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    label = part.name[: -len(".part")]
    try:
        async with session.get(url, headers=headers) as resp:
            if resp.status == 416 and offset:
                part.unlink()  # our partial file doesn't fit the remote file: start over
                raise _Retry("server rejected the resume offset")
            if resp.status in _RETRY_STATUSES:
                raise _Retry(f"HTTP {resp.status} {resp.reason}")
            if resp.status == 206:
                start = _range_start(resp.headers.get("Content-Range", ""))
                if start != offset:
                    part.unlink(missing_ok=True)
                    raise _Retry(f"server resumed at {start}, not {offset}")
            elif resp.status == 200:
                offset = 0  # server ignored Range (or none sent): restart the file
                if expected is not None and resp.content_length not in (None, expected):
                    raise DownloadError(
                        f"{url}: server announces {resp.content_length} bytes, catalogue expects {expected}"
                    )
            else:
                raise DownloadError(f"{url}: HTTP {resp.status} {resp.reason}")
            if offset:
                log.info("resuming %s at byte %d", url, offset)
            total = expected
            if total is None and resp.content_length is not None:
                total = offset + resp.content_length
            done = offset
            # Buffered writes of one chunk each to local disk; `ivr models pull` runs before serving, so no
            # call shares this event loop.
            with open(part, "ab" if offset else "wb") as fh:  # noqa: ASYNC230
                if progress:
                    progress(label, done, total)
                async for chunk in resp.content.iter_chunked(CHUNK):
                    fh.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(label, done, total)
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
        raise _Retry(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from exc


def _range_start(content_range: str) -> int | None:
    match = re.match(r"\s*bytes\s+(\d+)-", content_range)
    return int(match.group(1)) if match else None


def _verify_problem(path: Path, rf: RemoteFile) -> str | None:
    """Why ``path`` is not the file ``rf`` describes, or None if it is."""
    size = path.stat().st_size
    if rf.size is not None and size != rf.size:
        return f"size mismatch: expected {rf.size} bytes, got {size}"
    if rf.checksum:
        algo, _, expected = rf.checksum.partition(":")
        digest = hashlib.new(algo)
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != expected:
            return f"checksum mismatch: expected {algo}:{expected}, got {algo}:{digest.hexdigest()}"
    return None


def _prune_empty(directory: Path, stop: Path) -> None:
    """Remove now-empty ``.partial`` parents so the cache stays tidy."""
    while directory != stop and directory.is_dir():
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent


__all__ = [
    "BadArchive",
    "ChecksumMismatch",
    "DownloadError",
    "InvalidModel",
    "ProgressFn",
    "PullError",
    "UnsafeArchive",
    "list_models",
    "pull",
    "pull_entry",
    "resolve_targets",
]
