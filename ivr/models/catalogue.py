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
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

from ivr.models.packaged import PREFIX as PACKAGED_PREFIX, packaged_path
from ivr.errors import ConfigError, ModelMissing

#: The catalogue shipped with the repository.
DEFAULT_CATALOGUE_PATH = Path(__file__).resolve().parents[2] / "voices" / "catalogue.yml"

KINDS = ("vosk", "piper")
PULL_HINT = "ivr models pull"

_LANGUAGE_RE = re.compile(r"^[a-z]{2,3}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_CHECKSUM_RE = re.compile(r"^(md5:[0-9a-f]{32}|sha256:[0-9a-f]{64})$")
_ENTRY_KEYS = {"name", "language", "kind", "default", "sample_rate", "description",
               "url", "size", "checksum", "files"}
_FILE_KEYS = {"url", "size", "checksum"}


@dataclass(frozen=True)
class RemoteFile:
    """One file to download; ``checksum`` is ``"md5:<hex>"``/``"sha256:<hex>"`` or None."""

    url: str
    size: int | None = None
    checksum: str | None = None

    @property
    def filename(self) -> str:
        """Last path segment of the URL: the name the file gets on disk."""
        return PurePosixPath(unquote(urlsplit(self.url).path)).name


@dataclass(frozen=True)
class ModelEntry:
    """A catalogue entry: a Vosk model (one zip) or a Piper voice (.onnx + .onnx.json)."""

    name: str
    kind: str
    language: str
    files: tuple[RemoteFile, ...]
    default: bool = False
    sample_rate: int | None = None
    description: str = ""

    @property
    def size(self) -> int | None:
        """Total download size in bytes, or None if any file's size is unknown."""
        sizes = [f.size for f in self.files]
        return None if any(s is None for s in sizes) else sum(sizes)  # type: ignore[arg-type]


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

    Raises ConfigError listing *all* problems, each prefixed ``file:line:``, so
    an operator fixes the file in one go rather than one error per run.
    """
    path = Path(path) if path is not None else DEFAULT_CATALOGUE_PATH
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read model catalogue: {exc.strerror or exc}"]) from exc
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text)  # same document again, for line numbers
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{where}: invalid YAML: {problem}"]) from exc
    return parse_catalogue(data, source=path, lines=_entry_lines(root))


def parse_catalogue(
    data: Any,
    source: Path | str | None = None,
    lines: dict[tuple[str, int], int] | None = None,
) -> Catalogue:
    """Validate already-parsed catalogue data (a dict with ``vosk``/``piper`` lists).

    Separate from ``load_catalogue`` so tests and tools can build a catalogue
    in memory and get exactly the same checks.
    """
    src = str(source) if source is not None else "<catalogue>"
    lines = lines or {}
    problems: list[str] = []
    if not isinstance(data, dict):
        raise ConfigError([f"{src}: expected a mapping with sections 'vosk' and 'piper'"])
    for key in data:
        if key not in KINDS and key != "version":
            problems.append(f"{src}: unknown section {key!r} (expected 'vosk' or 'piper')")

    entries: list[ModelEntry] = []
    for kind in KINDS:
        section = data.get(kind)
        if section is None:
            continue
        if not isinstance(section, list):
            problems.append(f"{src}: section {kind!r} must be a list of entries")
            continue
        for index, raw in enumerate(section):
            line = lines.get((kind, index))
            where = f"{src}:{line}" if line else src
            label = f"{kind}[{index}]"
            if isinstance(raw, dict) and isinstance(raw.get("name"), str):
                label += f" {raw['name']!r}"
            errs: list[str] = []
            entry = _parse_entry(kind, raw, errs)
            problems.extend(f"{where}: {label}: {e}" for e in errs)
            if entry is not None:
                entries.append(entry)

    seen: dict[tuple[str, str], str] = {}
    defaults: dict[tuple[str, str], str] = {}
    for entry in entries:
        if (entry.kind, entry.name) in seen:
            problems.append(f"{src}: {entry.kind} entry {entry.name!r} appears twice")
        seen[(entry.kind, entry.name)] = entry.name
        if entry.default:
            key = (entry.kind, entry.language)
            if key in defaults:
                problems.append(
                    f"{src}: {entry.kind} entries {defaults[key]!r} and {entry.name!r} are both "
                    f"'default: true' for language {entry.language!r}; keep one"
                )
            defaults.setdefault(key, entry.name)

    if problems:
        raise ConfigError(problems)
    return Catalogue(tuple(entries), Path(source) if source is not None else None)


def _parse_entry(kind: str, raw: Any, errs: list[str]) -> ModelEntry | None:
    if not isinstance(raw, dict):
        errs.append("must be a mapping with name, language, url/files …")
        return None
    for key in sorted(set(raw) - _ENTRY_KEYS, key=str):
        errs.append(f"unknown field {key!r}")

    name = raw.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        errs.append(f"field 'name': must be a plain name (letters, digits, . _ -), got {name!r}")
    language = raw.get("language")
    if not isinstance(language, str) or not _LANGUAGE_RE.match(language):
        errs.append(f"field 'language': must be a language code like 'de' or 'en', got {language!r}")
    if "kind" in raw and raw["kind"] != kind:
        errs.append(f"field 'kind': {raw['kind']!r} does not match section {kind!r}")
    default = raw.get("default", False)
    if not isinstance(default, bool):
        errs.append(f"field 'default': must be true or false, got {default!r}")
    description = raw.get("description", "")
    if not isinstance(description, str):
        errs.append("field 'description': must be text")

    sample_rate = raw.get("sample_rate")
    if kind == "piper":
        if not _is_int(sample_rate) or sample_rate <= 0:
            errs.append(f"field 'sample_rate': a positive integer (Hz) is required, got {sample_rate!r}")
    elif sample_rate is not None:
        errs.append("field 'sample_rate': only piper voices have one")

    files = _parse_files(raw, errs)
    if files and isinstance(name, str):
        names = [f.filename for f in files]
        if kind == "vosk" and (len(files) != 1 or not names[0].endswith(".zip")):
            errs.append(f"field 'url': a vosk entry needs exactly one .zip URL, got {names}")
        if kind == "piper" and sorted(names) != sorted([f"{name}.onnx", f"{name}.onnx.json"]):
            errs.append(
                f"field 'files': a piper entry needs {name}.onnx and {name}.onnx.json, got {names}"
            )
    if errs:
        return None
    return ModelEntry(
        name=name, kind=kind, language=language, files=tuple(files), default=default,
        sample_rate=sample_rate, description=description,
    )


def _parse_files(raw: dict, errs: list[str]) -> list[RemoteFile]:
    if "files" in raw:
        if any(k in raw for k in ("url", "size", "checksum")):
            errs.append("use either 'url'/'size'/'checksum' or 'files', not both")
            return []
        items, prefix = raw["files"], "files"
        if not isinstance(items, list) or not items:
            errs.append("field 'files': must be a non-empty list of {url, size, checksum}")
            return []
    elif "url" in raw:
        items, prefix = [{k: raw[k] for k in _FILE_KEYS if k in raw}], ""
    else:
        errs.append("field 'url' (or 'files') is required")
        return []

    out: list[RemoteFile] = []
    for i, item in enumerate(items):
        at = f"{prefix}[{i}]." if prefix else ""
        if not isinstance(item, dict):
            errs.append(f"field '{prefix}[{i}]': must be a mapping with url, size, checksum")
            continue
        for key in sorted(set(item) - _FILE_KEYS, key=str):
            errs.append(f"field '{at}{key}': unknown field")
        url, size, checksum = item.get("url"), item.get("size"), item.get("checksum")
        ok = True
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") \
                or not PurePosixPath(urlsplit(url).path).name:
            errs.append(f"field '{at}url': must be an http(s) URL ending in a file name, got {url!r}")
            ok = False
        if size is not None and (not _is_int(size) or size <= 0):
            errs.append(f"field '{at}size': must be a positive number of bytes or null, got {size!r}")
            ok = False
        if checksum is not None and (not isinstance(checksum, str) or not _CHECKSUM_RE.match(checksum)):
            errs.append(
                f"field '{at}checksum': must be 'sha256:<64 hex>', 'md5:<32 hex>' or null, "
                f"got {checksum!r}"
            )
            ok = False
        if ok:
            out.append(RemoteFile(url=url, size=size, checksum=checksum))
    return out


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _entry_lines(root: yaml.Node | None) -> dict[tuple[str, int], int]:
    """Map (section, index) -> 1-based line of that entry, for error messages."""
    out: dict[tuple[str, int], int] = {}
    if not isinstance(root, yaml.MappingNode):
        return out
    for key_node, value_node in root.value:
        if isinstance(value_node, yaml.SequenceNode):
            for i, item in enumerate(value_node.value):
                out[(str(key_node.value), i)] = item.start_mark.line + 1
    return out


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
    problems = [f"missing {rel}" for rel in ("am/final.mdl", "conf/model.conf")
                if not (model_dir / rel).is_file()]
    graph = model_dir / "graph"
    if not graph.is_dir():
        problems.append("missing graph/")
    elif not ((graph / "HCLG.fst").is_file()
              or ((graph / "HCLr.fst").is_file() and (graph / "Gr.fst").is_file())):
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


def _looks_like_path(spec: str) -> bool:
    return (os.sep in spec or "/" in spec or spec.startswith(("~", "."))
            or spec.endswith(".onnx") or Path(spec).exists())


def locate(kind: str, spec: str, cache_dir: Path | str,
           catalogue: Catalogue | None = None) -> Path:
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
        spec = str(packaged_path(kind, spec[len(PACKAGED_PREFIX):]))

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
        fix = (f"run `{PULL_HINT} {entry.language}`" if entry.default
               else f"run `{PULL_HINT} {entry.name}`")
        msg = f"{what} {spec!r} {state}: looked in {looked}. To fix it, {fix}."
    else:
        msg = (
            f"{what} {spec!r} {state}: looked in {looked}, and it is not a name in the model "
            f"catalogue. Use a catalogue name (see `ivr models list`) and run "
            f"`{PULL_HINT} <lang>`, or set the path of a model directory/.onnx file."
        )
    raise ModelMissing(msg)
