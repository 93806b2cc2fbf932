"""Install a verified download into the model cache: unpack safely, check the model, swap it in.

Apart from pull.py because it is the filesystem half of a pull: nothing here
touches the network, and the runtime must never see half a model, so a new
model is built in a staging directory next to its destination, checked, and
renamed into place (an old install is replaced only after that).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import uuid
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from ivr.models.catalogue import ModelEntry, piper_problems, vosk_problems
from ivr.models.errors import BadArchive, InvalidModel, UnsafeArchive

log = logging.getLogger(__name__)

MAX_UNPACKED_BYTES = 16 << 30  # refuse zip bombs; the biggest Vosk models are ~4 GB unpacked


def installed_problems(entry: ModelEntry, final: Path) -> list[str]:
    if entry.kind == "vosk":
        return vosk_problems(final)
    problems = piper_problems(final, entry.sample_rate)
    if problems:
        return problems
    for rf in entry.files:  # cheap guard against a truncated copy; checksums were checked at pull
        size = (final.parent / rf.filename).stat().st_size
        if rf.size is not None and size != rf.size:
            problems.append(f"{rf.filename} has {size} bytes, expected {rf.size}")
    return problems


def install(entry: ModelEntry, files: list[Path], final: Path) -> None:
    """Build the model in a staging dir next to its destination, check it, swap it in."""
    target = final if entry.kind == "vosk" else final.parent
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".staging-{entry.name}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        if entry.kind == "vosk":
            _safe_unzip(files[0], staging)
            root = _single_root(staging)
            problems = vosk_problems(root)
        else:
            root = staging / entry.name
            root.mkdir()
            for path in files:
                os.replace(path, root / path.name)
            problems = piper_problems(root / f"{entry.name}.onnx", entry.sample_rate)
        if problems:
            raise InvalidModel(f"{entry.kind} model {entry.name!r} downloaded but is not usable: {'; '.join(problems)}")
        _swap_into_place(root, target)
        log.info("installed %s %s at %s", entry.kind, entry.name, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _safe_unzip(zip_path: Path, dest: Path) -> None:
    """Extract ``zip_path`` into ``dest``, refusing any member that could escape it."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            total = 0
            for info in zf.infolist():
                name = info.filename
                pure = PurePosixPath(name.replace("\\", "/"))
                if not name or pure.is_absolute() or ".." in pure.parts or re.match(r"^[A-Za-z]:", name):
                    raise UnsafeArchive(
                        f"{zip_path.name}: refusing to unpack member {name!r}: its path leaves the model directory"
                    )
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise UnsafeArchive(f"{zip_path.name}: refusing symlink member {name!r}")
                total += info.file_size
            if total > MAX_UNPACKED_BYTES:
                raise UnsafeArchive(f"{zip_path.name}: would unpack to {total} bytes; refusing")
            zf.extractall(dest)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise BadArchive(f"{zip_path.name} is not a valid zip archive: {exc}") from exc


def _single_root(staging: Path) -> Path:
    """Upstream zips wrap the model in one top-level folder; unwrap it if so."""
    children = [p for p in staging.iterdir() if p.name != "__MACOSX"]
    if len(children) == 1 and children[0].is_dir():
        return children[0]
    return staging


def _swap_into_place(src: Path, target: Path) -> None:
    """Rename ``src`` to ``target`` (same filesystem), replacing an old install."""
    if not target.exists():
        os.replace(src, target)
        return
    old = target.with_name(f".old-{target.name}-{uuid.uuid4().hex[:8]}")
    os.replace(target, old)
    try:
        os.replace(src, target)
    except OSError:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)
