"""Declarative YAML configuration: one pydantic model per file format, errors as `file:line: field: message`.

Every file people write (`ivr.yml`, `voices/catalogue.yml`, seed files) is
described once, by frozen pydantic (v1) dataclasses built with `@config`:
field types, defaults, constraints and validators are the whole description,
and unknown keys are errors. The classes stay ordinary dataclasses for the
rest of the code (positional construction, `dataclasses.replace`), and
constructing one in code validates it the same way a file is validated.

`load_file` reads a file with ruamel.yaml so that `validate` can map each
pydantic error location back to the line of the YAML node it names. All
problems of a file are reported at once, sorted by line, in words an operator
understands (`'fr' is not one of ['de', 'en']`, `unknown key 'wekly' (did you
mean 'weekly'?)`), because the reader is setting up a phone line, not
debugging Python.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConstrainedFloat, Extra, ValidationError, conint, constr, validate_model
from pydantic import dataclasses as pydantic_dataclasses
from pydantic.error_wrappers import ErrorWrapper
from pydantic.errors import DictError, ExtraError, FloatError
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError
from typing_extensions import dataclass_transform

from ivr.errors import ConfigError

T = TypeVar("T")
Loc = tuple[Any, ...]


class _Config:
    extra = Extra.forbid


@dataclass_transform(frozen_default=True)
def config(cls: type[T]) -> type[T]:
    """A frozen pydantic dataclass that validates a YAML mapping with precise errors.

    Mappings are validated through the class's pydantic model (all errors at
    once, unknown keys reported with the known ones) rather than by calling
    the dataclass with keyword arguments, which stops at the first TypeError.
    """
    # pydantic refuses field names its model metaclass (an ABCMeta) has, such as `register` (sip.register),
    # though model instances never see metaclass attributes; hide them while the model is built.
    hidden = [name for name in cls.__annotations__ if hasattr(type(BaseModel), name) and name not in BaseModel.__dict__]
    for name in hidden:
        setattr(BaseModel, name, None)
    try:
        dc: Any = pydantic_dataclasses.dataclass(frozen=True, config=_Config)(cls)
    finally:
        for name in hidden:
            delattr(BaseModel, name)

    def validate(klass: Any, value: Any) -> Any:
        if isinstance(value, klass):
            return value
        if not isinstance(value, Mapping):
            raise DictError()
        values, _, error = validate_model(klass.__pydantic_model__, dict(value), cls=klass)
        if error:
            raise ValidationError([_explain_extra(e, klass) for e in error.raw_errors], klass)
        instance = object.__new__(klass)
        for name, field_value in values.items():
            object.__setattr__(instance, name, field_value)
        object.__setattr__(instance, "__pydantic_initialised__", True)
        return instance

    dc.__validate__ = classmethod(validate)
    return dc


def parse(cls: type[T], data: Any) -> T:
    """An instance of a `@config` class from a mapping; pydantic's ValidationError when invalid (see `validate`)."""
    return cls.__validate__(data)  # type: ignore[attr-defined]


def _explain_extra(error: Any, klass: Any) -> Any:
    if not isinstance(error, ErrorWrapper) or not isinstance(error.exc, ExtraError):
        return error
    key = error.loc_tuple()[-1]
    known = [f.name for f in dataclasses.fields(klass)]
    close = difflib.get_close_matches(str(key), known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ErrorWrapper(ValueError(f"unknown key {key!r}{hint}; known keys: {', '.join(known)}"), error.loc_tuple())


def problems(found: Iterable[tuple[Loc, str | Exception]], model: Any = None) -> ValidationError:
    """Several problems below one field, for a validator to raise: each at its own path and line.

    A problem is a message or an exception (such as the ValidationError of an item validated on its own).
    """
    errors = [ErrorWrapper(ValueError(p) if isinstance(p, str) else p, loc) for loc, p in found]
    owner: Any = model or object  # pydantic only uses it for the error's title
    return ValidationError(errors, owner)


def raise_problems(found: Sequence[tuple[Loc, str | Exception]]) -> None:
    """Raise `problems(found)` if there are any; validators collect first so that all are reported at once."""
    if found:
        raise problems(found)


def empty_means_default(value: Any, field: Any) -> Any:
    """Validator (pre=True): an empty YAML key (`catalogue:`) means the same as leaving it out."""
    return field.get_default() if value is None else value


def non_empty(message: str) -> Callable[[Any], Any]:
    """Validator: a list or mapping that must hold something; `message` says what belongs there."""

    def check(value: Any) -> Any:
        if not value:
            raise ValueError(message)
        return value

    return check


# --------------------------------------------------------------------------- value types


if TYPE_CHECKING:  # what the value is to the code that reads it
    Text = str
else:
    Text = constr(strict=True, min_length=1)


def integer(**limits: Any) -> Any:
    """A YAML integer (never a bool, a float or a string) within `limits` (ge, gt, le, lt, multiple_of)."""
    return conint(strict=True, **limits)


class _Number(ConstrainedFloat):
    @classmethod
    def __get_validators__(cls) -> Any:
        yield _yaml_number
        yield from super().__get_validators__()


def _yaml_number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FloatError()
    return value


def number(**limits: Any) -> Any:
    """A YAML number (int or float, never a bool or a string) within `limits`, read as float."""
    return type("Number", (_Number,), limits)


def checked(kind: str, check: Callable[[Any], Any]) -> Any:
    """A type validated by `check`, which returns the value to keep or raises ValueError with the message.

    Its messages include the value, so they also work for dict keys (whose
    error location does not say which key it was).
    """

    def validators(cls: Any) -> Any:
        yield check

    return type(kind, (), {"__get_validators__": classmethod(validators)})


def matching(regex: str, message: str = "{value!r} does not match {regex!r}") -> Any:
    """A string matching `regex` (re.match), e.g. a key or a SIP URI."""
    compiled = re.compile(regex)

    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not of type 'string'")
        if not compiled.match(value):
            raise ValueError(message.format(value=value, regex=regex))
        return value

    return checked("Matching", check)


# --------------------------------------------------------------------------- files and errors


def load_file(path: Path, what: str) -> tuple[Any, Any]:
    """(plain data, ruamel source with line numbers) of a YAML file; ConfigError when unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read {what}: {exc.strerror or exc}"]) from exc
    try:
        source = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError([f"{where}: invalid YAML: {exc.problem}"]) from exc
    return to_plain(source), source


def to_plain(node: Any) -> Any:
    """Plain dicts and lists with string keys; an unquoted `2026-12-24` (a YAML timestamp) becomes its text."""
    if isinstance(node, dict):
        return {str(k): to_plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [to_plain(v) for v in node]
    if isinstance(node, date):
        return node.isoformat()
    return node


def line_of(source: Any, path: Sequence[Any]) -> int | None:
    """1-based line of the deepest node of `path` that the YAML source has."""
    line = None
    node = source
    for key in path:
        lc = getattr(node, "lc", None)
        try:
            if lc is not None and isinstance(node, dict) and key in node:
                line = lc.key(key)[0] + 1
            elif lc is not None and isinstance(node, list) and isinstance(key, int):
                line = lc.item(key)[0] + 1
            node = node[key]
        except (KeyError, IndexError, TypeError):
            break
    return line


def validate(
    cls: type[T],
    data: Any,
    source: Any,
    path: str,
    extra: Sequence[tuple[Loc, str]] = (),
    env: Mapping[Loc, str] | None = None,
) -> T:
    """An instance of `cls` from a file's data, or ConfigError with every problem as `file:line: field: message`.

    `extra` are problems found outside the model (cross-section checks);
    `env` maps a location to the environment variable that set it, so a bad
    override names the variable instead of a line of the file.
    """
    found: list[tuple[Loc, str]] = list(extra)
    instance = None
    try:
        instance = parse(cls, data)
    except ValidationError as exc:
        found = [*_explain(exc, data), *found]
    except (TypeError, ValueError):  # the whole file is not a mapping
        found.insert(0, ((), f"{data!r} is not of type 'object' (a mapping of keys to values)"))
    if found:
        raise ConfigError(format_problems(found, source, path, env or {}))
    return instance  # type: ignore[return-value]


def format_problems(found: Sequence[tuple[Loc, str]], source: Any, path: str, env: Mapping[Loc, str]) -> list[str]:
    lines: list[tuple[float, int, str]] = []
    for order, (loc, message) in enumerate(found):
        dotted = ".".join(str(p) for p in loc) or "(top level)"
        variable = next((var for where, var in env.items() if loc[: len(where)] == where), None)
        if variable:
            lines.append((0, order, f"{variable} (environment): {dotted}: {message}"))
            continue
        line = line_of(source, loc)
        where = f"{path}:{line}" if line else path
        lines.append((line or 0, order, f"{where}: {dotted}: {message}"))
    return [text for _, _, text in sorted(lines)]


_TYPE_NAMES = {
    "integer": "integer",
    "float": "number",
    "str": "string",
    "bool": "boolean",
    "list": "array",
    "tuple": "array",
    "set": "array",
    "frozenset": "array",
    "dict": "object",
    "dataclass": "object",
}
_COMPARISONS = {
    "not_ge": "less than the minimum of",
    "not_gt": "less than or equal to the minimum of",
    "not_le": "greater than the maximum of",
    "not_lt": "greater than or equal to the maximum of",
}


def _explain(error: ValidationError, data: Any) -> list[tuple[Loc, str]]:
    """pydantic's errors as (location in the file, message naming the wrong value)."""
    found = []
    for err in error.errors():
        loc = tuple(p for p in err["loc"] if p not in ("__root__", "__key__"))
        kind, ctx = err["type"], err.get("ctx") or {}
        missing = object()
        value = _value_at(data, loc, missing)
        shown = repr(value) if value is not missing else "the value"
        if kind == "value_error.missing":
            loc, message = loc[:-1], f"{loc[-1]!r} is a required property"
        elif kind == "value_error.const":
            message = f"{ctx['given']!r} is not one of {list(ctx['permitted'])}"
        elif kind.startswith("value_error.number.") and kind.rsplit(".", 1)[1] in _COMPARISONS:
            message = f"{shown} is {_COMPARISONS[kind.rsplit('.', 1)[1]]} {ctx['limit_value']}"
        elif kind == "value_error.number.not_multiple":
            message = f"{shown} is not a multiple of {ctx['multiple_of']}"
        elif kind == "value_error.any_str.min_length":
            message = f"{shown} must not be empty"
        elif kind == "type_error.none.not_allowed":
            message = "must not be empty"
        elif kind == "value_error.strictbool":
            message = f"{shown} is not of type 'boolean'"
        elif kind.startswith("type_error.") and kind.split(".")[1] in _TYPE_NAMES:
            message = f"{shown} is not of type '{_TYPE_NAMES[kind.split('.')[1]]}'"
        else:
            message = err["msg"]
        found.append((loc, message))
    return found


def _value_at(data: Any, loc: Loc, default: Any) -> Any:
    for key in loc:
        try:
            data = data[key]
        except (KeyError, IndexError, TypeError):
            return default
    return data
