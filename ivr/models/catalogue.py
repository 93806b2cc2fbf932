"""The catalogue of downloadable speech models, and finding installed ones.

The catalogue (``voices/catalogue.yml``) is data an operator may edit, so it is
validated up front and every problem is reported with file, line, entry and
field: a typo should fail at ``ivr models list``, not halfway through a
download.  ``locate`` is what the runtime calls to turn a configured model
spec into a path; it fails with a message that says how to fix the problem,
because the person reading it is setting up a phone line, not debugging Python.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import StrictBool, StrictStr, ValidationError, root_validator, validator
from pydantic.error_wrappers import ErrorWrapper

from ivr.errors import ConfigError, ModelMissing
from ivr.models.packaged import PREFIX as PACKAGED_PREFIX
from ivr.models.packaged import packaged_path
from ivr.yaml_config import (
    checked,
    config,
    integer,
    load_file,
    matching,
    non_empty,
    parse,
    raise_problems,
    validate,
)

#: The catalogue shipped with the repository.
DEFAULT_CATALOGUE_PATH = Path(__file__).resolve().parents[2] / "voices" / "catalogue.yml"

KINDS = ("vosk", "piper")
PULL_HINT = "ivr models pull"
_SHORTHAND = ("url", "size", "checksum")  # one file, written into the entry itself


def _download_url(value: Any) -> str:
    if (
        not isinstance(value, str)
        or urlsplit(value).scheme not in ("http", "https")
        or not PurePosixPath(urlsplit(value).path).name
    ):
        raise ValueError(f"{value!r} is not an http(s) URL ending in a file name")
    return value


# --------------------------------------------------------------------------- the file's format


@config
class RemoteFile:
    """One file to download; ``checksum`` is ``"md5:<hex>"``/``"sha256:<hex>"`` or None."""

    url: checked("DownloadUrl", _download_url)
    size: integer(gt=0) | None = None  # bytes
    checksum: (
        matching(
            r"^(md5:[0-9a-f]{32}|sha256:[0-9a-f]{64})$", "{value!r} is not 'sha256:<64 hex>', 'md5:<32 hex>' or null"
        )
        | None
    ) = None

    @property
    def filename(self) -> str:
        """Last path segment of the URL: the name the file gets on disk."""
        return PurePosixPath(unquote(urlsplit(self.url).path)).name


@config
class ModelEntry:
    """A catalogue entry: a Vosk model (one zip) or a Piper voice (.onnx + .onnx.json).

    In the file, ``kind`` comes from the section, and a single file may be
    written as ``url``/``size``/``checksum`` in the entry instead of ``files``.
    """

    name: matching(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", "{value!r} is not a plain name (letters, digits, . _ -)")
    kind: Literal["vosk", "piper"]
    language: matching(r"^[a-z]{2,3}$", "{value!r} is not a language code like 'de' or 'en'")
    files: tuple[RemoteFile, ...]
    default: StrictBool = False
    sample_rate: integer(gt=0) | None = None  # Hz; piper voices only
    description: StrictStr = ""

    @root_validator(pre=True)
    def _one_file_written_inline(cls, values: dict[str, Any]) -> dict[str, Any]:
        inline = {key: values[key] for key in _SHORTHAND if key in values}
        if inline and "files" in values:
            raise ValueError("use either 'url'/'size'/'checksum' or 'files', not both")
        if not inline and "files" not in values:
            raise ValueError("'url' (or 'files') is required")
        if inline:
            values = {key: value for key, value in values.items() if key not in _SHORTHAND}
            values["files"] = [inline]
        return values

    _some = validator("files", allow_reuse=True)(non_empty("[] should be non-empty: a list of {url, size, checksum}"))

    @root_validator(skip_on_failure=True)
    def _fits_its_kind(cls, values: dict[str, Any]) -> dict[str, Any]:
        kind, name, names = values["kind"], values["name"], [f.filename for f in values["files"]]
        found = []
        if kind == "piper" and values.get("sample_rate") is None:
            found.append((("sample_rate",), "a positive integer (Hz) is required for a piper voice"))
        if kind == "vosk" and values.get("sample_rate") is not None:
            found.append((("sample_rate",), "only piper voices have one"))
        if kind == "vosk" and (len(names) != 1 or not names[0].endswith(".zip")):
            found.append((("files",), f"a vosk entry needs exactly one .zip URL, got {names}"))
        if kind == "piper" and sorted(names) != sorted([f"{name}.onnx", f"{name}.onnx.json"]):
            found.append((("files",), f"a piper entry needs {name}.onnx and {name}.onnx.json, got {names}"))
        raise_problems(found)
        return values

    @property
    def size(self) -> int | None:
        """Total download size in bytes, or None if any file's size is unknown."""
        sizes = [f.size for f in self.files]
        return None if any(s is None for s in sizes) else sum(sizes)  # type: ignore[arg-type]


def _section(kind: str) -> Any:
    """The entries of one section, each validated on its own so that the checks across entries
    (unique names, one default per language) still run on the valid ones when another is wrong."""

    def check(value: Any) -> tuple[ModelEntry, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise ValueError(f"{value!r} is not of type 'array' (a list of entries)")
        found: list[tuple[tuple[Any, ...], Any]] = []
        entries: list[ModelEntry] = []
        defaults: dict[str, str] = {}
        for i, raw in enumerate(value):
            try:
                entry = parse(ModelEntry, {"kind": kind, **raw} if isinstance(raw, dict) else raw)
            except ValidationError as exc:
                inline = isinstance(raw, dict) and any(key in raw for key in _SHORTHAND)
                found.append(((i,), _at_inline_keys(exc) if inline else exc))
                continue
            except TypeError as exc:  # not a mapping
                found.append(((i,), exc))
                continue
            if entry.kind != kind:
                found.append(((i, "kind"), f"{entry.kind!r} does not match section {kind!r}"))
            if any(e.name == entry.name for e in entries):
                found.append(((i, "name"), f"{kind} entry {entry.name!r} appears twice"))
            if entry.default and entry.language in defaults:
                message = (
                    f"{kind} entries {defaults[entry.language]!r} and {entry.name!r} are both "
                    f"'default: true' for language {entry.language!r}; keep one"
                )
                found.append(((i, "default"), message))
            elif entry.default:
                defaults[entry.language] = entry.name
            entries.append(entry)
        raise_problems(found)
        return tuple(entries)

    return checked(f"{kind.title()}Section", check)


def _at_inline_keys(error: ValidationError) -> ValidationError:
    """Problems of an inline `url`/`size`/`checksum` named as written (`url`), not as read (`files.0.url`)."""

    def moved(errors: Any) -> Any:
        if isinstance(errors, list):  # pydantic nests the errors of a sequence's items in lists
            return [moved(e) for e in errors]
        loc = errors.loc_tuple()
        return ErrorWrapper(errors.exc, loc[2:]) if loc[:2] == ("files", 0) else errors

    owner: Any = ModelEntry  # a pydantic dataclass; pydantic's stubs only know BaseModel
    return ValidationError(moved(error.raw_errors), owner)


@config
class CatalogueFile:
    """``voices/catalogue.yml``: the ``vosk`` and ``piper`` sections; one default per kind and language."""

    version: integer(ge=1) | None = None
    vosk: _section("vosk") = ()
    piper: _section("piper") = ()


@dataclass(frozen=True)
class Catalogue:
    """All entries of one catalogue file, in file order."""

    entries: tuple[ModelEntry, ...]
    source: Path | None = None

    def get(self, name: str, kind: str | None = None) -> ModelEntry | None:
        """The entry called ``name`` (of ``kind``, if given), or None."""
        for entry in self.entries:
            if entry.name == name and (kind is None or entry.kind == kind):
                return entry
        return None

    def languages(self) -> list[str]:
        """Languages that have at least one default model, sorted."""
        return sorted({e.language for e in self.entries if e.default})

    def default_for(self, kind: str, language: str) -> ModelEntry:
        """The default ``kind`` model for ``language``; KeyError names what exists."""
        for entry in self.entries:
            if entry.kind == kind and entry.language == language and entry.default:
                return entry
        known = sorted({e.language for e in self.entries if e.kind == kind and e.default})
        raise KeyError(
            f"no default {kind} model for language {language!r} in {self._where()}; "
            f"languages with one: {', '.join(known) or 'none'}"
        )

    def _where(self) -> str:
        return str(self.source) if self.source else "the catalogue"


# --------------------------------------------------------------------------- loading


def load_catalogue(path: Path | str | None = None) -> Catalogue:
    """Read and validate a catalogue file (default: ``voices/catalogue.yml``).

    Raises ConfigError listing *all* problems, each as ``file:line: field: message``,
    so an operator fixes the file in one go rather than one error per run.
    """
    path = Path(path) if path is not None else DEFAULT_CATALOGUE_PATH
    data, nodes = load_file(path, "model catalogue")
    return parse_catalogue(data, source=path, nodes=nodes)


def parse_catalogue(data: Any, source: Path | str | None = None, nodes: Any = None) -> Catalogue:
    """Validate already-parsed catalogue data (a dict with ``vosk``/``piper`` lists).

    Separate from ``load_catalogue`` so tests and tools can build a catalogue
    in memory and get exactly the same checks; ``nodes`` is the ruamel.yaml
    document, for line numbers.
    """
    where = str(source) if source is not None else "<catalogue>"
    parsed = validate(CatalogueFile, data, nodes, where)
    return Catalogue(parsed.vosk + parsed.piper, Path(source) if source is not None else None)


def default_for(kind: str, language: str, catalogue: Catalogue | None = None) -> ModelEntry:
    """The default ``kind`` ("vosk"/"piper") model for ``language`` in the catalogue."""
    return (catalogue or load_catalogue()).default_for(kind, language)


# --------------------------------------------------------------------------- on disk


def install_path(kind: str, name: str, cache_dir: Path | str) -> Path:
    """Where a catalogue model lives once pulled: the Vosk dir or the Piper .onnx."""
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r} (expected one of {KINDS})")
    cache_dir = Path(cache_dir)
    if kind == "vosk":
        return cache_dir / "vosk" / name
    return cache_dir / "piper" / name / f"{name}.onnx"


def vosk_problems(model_dir: Path) -> list[str]:
    """What is missing for ``model_dir`` to be a usable Vosk model (empty: fine).

    Vosk itself only says "Failed to create a model" on a broken dir; naming the
    missing file is what lets someone fix it.
    """
    if not model_dir.is_dir():
        return [f"{model_dir} is not a directory"]
    problems = [f"missing {rel}" for rel in ("am/final.mdl", "conf/model.conf") if not (model_dir / rel).is_file()]
    graph = model_dir / "graph"
    if not graph.is_dir():
        problems.append("missing graph/")
    elif not ((graph / "HCLG.fst").is_file() or ((graph / "HCLr.fst").is_file() and (graph / "Gr.fst").is_file())):
        problems.append("graph/ has neither HCLG.fst nor HCLr.fst+Gr.fst")
    return problems


def piper_problems(onnx_path: Path, sample_rate: int | None = None) -> list[str]:
    """What is wrong with a Piper voice (.onnx + .onnx.json beside it); empty: fine."""
    problems: list[str] = []
    if not onnx_path.is_file():
        problems.append(f"missing {onnx_path.name}")
    elif onnx_path.stat().st_size == 0:
        problems.append(f"{onnx_path.name} is empty")
    config_path = onnx_path.with_name(onnx_path.name + ".json")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return problems + [f"missing {config_path.name}"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return problems + [f"{config_path.name} is not valid JSON: {exc}"]
    audio = config.get("audio") if isinstance(config, dict) else None
    rate = audio.get("sample_rate") if isinstance(audio, dict) else None
    if not _is_int(rate):
        problems.append(f"{config_path.name} has no audio.sample_rate")
    elif sample_rate is not None and rate != sample_rate:
        problems.append(f"{config_path.name} says sample_rate {rate}, catalogue says {sample_rate}")
    if not isinstance(config, dict) or not isinstance(config.get("phoneme_id_map"), dict):
        problems.append(f"{config_path.name} has no phoneme_id_map")
    return problems


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _looks_like_path(spec: str) -> bool:
    return os.sep in spec or "/" in spec or spec.startswith(("~", ".")) or spec.endswith(".onnx") or Path(spec).exists()


def locate(kind: str, spec: str, cache_dir: Path | str, catalogue: Catalogue | None = None) -> Path:
    """Resolve a model spec to the path the engine loads (Vosk dir, Piper .onnx).

    ``spec`` is either a filesystem path (a Vosk model directory, a Piper
    ``.onnx`` file) or a catalogue name looked up in ``cache_dir``.  Raises
    ModelMissing saying which model, where it looked and which command fixes it.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r} (expected one of {KINDS})")
    what = "Vosk model" if kind == "vosk" else "Piper voice"
    spec = spec.strip()
    if not spec:
        raise ModelMissing(f"No {what} configured (empty model setting).")
    if spec.startswith(PACKAGED_PREFIX):
        spec = str(packaged_path(kind, spec[len(PACKAGED_PREFIX) :]))

    if _looks_like_path(spec):
        path = Path(spec).expanduser()
        if kind == "piper" and path.is_dir():
            onnx = sorted(path.glob("*.onnx"))
            if len(onnx) == 1:
                path = onnx[0]
        if not path.exists():
            raise ModelMissing(f"{what} {spec!r} not found: {path} does not exist.")
        problems = vosk_problems(path) if kind == "vosk" else piper_problems(path)
        if problems:
            raise ModelMissing(f"{what} at {path} is not usable: {'; '.join(problems)}.")
        return path

    path = install_path(kind, spec, cache_dir)
    problems = vosk_problems(path) if kind == "vosk" else piper_problems(path)
    if not problems:
        return path

    entry = None
    try:
        entry = (catalogue or load_catalogue()).get(spec, kind)
    except ConfigError:
        pass  # a broken catalogue must not hide the real problem: the missing model
    looked = path if kind == "vosk" else path.parent
    state = "is not installed" if not looked.exists() else f"is incomplete ({'; '.join(problems)})"
    if entry is not None:
        fix = f"run `{PULL_HINT} {entry.language}`" if entry.default else f"run `{PULL_HINT} {entry.name}`"
        msg = f"{what} {spec!r} {state}: looked in {looked}. To fix it, {fix}."
    else:
        msg = (
            f"{what} {spec!r} {state}: looked in {looked}, and it is not a name in the model "
            f"catalogue. Use a catalogue name (see `ivr models list`) and run "
            f"`{PULL_HINT} <lang>`, or set the path of a model directory/.onnx file."
        )
    raise ModelMissing(msg)
