"""The `ivr` command: serve, call, train, check, test data, models, agent logins."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ivr.errors import ConfigError, IvrError
from ivr.settings import DEFAULT_SETTINGS_FILE, Settings, load_settings, replace

if TYPE_CHECKING:
    from ivr.dialog.project import RasaProject


def _settings(args: argparse.Namespace) -> Settings:
    try:
        return load_settings(args.settings)
    except ConfigError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        raise SystemExit(2) from None


def cmd_serve(args: argparse.Namespace) -> int:
    from ivr.logs import setup_logging
    from ivr.server import serve_forever
    from ivr.settings import ServerSettings

    setup_logging(args.log_level)
    settings = _settings(args)
    if args.port is not None or args.host is not None:
        server = ServerSettings(
            args.host or settings.server.host, settings.server.port if args.port is None else args.port
        )
        settings = replace(settings, server=server)
    if args.sip_port is not None:
        settings = replace(settings, sip=dataclasses.replace(settings.sip, enabled=True, port=args.sip_port))
    if args.pull:
        _pull(sorted({t.language for t in settings.tenants.values()}), settings)
    try:
        asyncio.run(serve_forever(settings, Path(args.project).resolve(), Path(args.settings).resolve()))
    except IvrError as exc:
        print(f"ivr serve: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from ivr.dialog.project import RasaProject

    settings = _settings(args)
    root = Path(args.project).resolve()
    return RasaProject(root).train(root / settings.dialog.model_dir, force=args.force)


def cmd_check(args: argparse.Namespace) -> int:
    """Validate the IVR settings, the model catalogue and the Rasa data together."""
    from ivr.dialog.project import RasaProject
    from ivr.models import load_catalogue

    problems: list[str] = []
    try:
        load_settings(args.settings)
    except ConfigError as exc:
        problems += exc.problems
    try:
        load_catalogue()
    except ConfigError as exc:
        problems += exc.problems
    project = RasaProject(Path(args.project).resolve())
    problems += faq_topic_problems(project)
    result = project.validate()
    if result.returncode != 0:
        lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
        problems += [f"rasa data validate: {line}" for line in lines[-20:]]
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print("settings, model catalogue and Rasa data are valid")
    return 1 if problems else 0


def cmd_db(args: argparse.Namespace) -> int:
    """Migrate the database to the current schema (opening it does that), and optionally load seed data."""
    from ivr.storage import open_storage
    from ivr.storage.seed import seed

    settings = _settings(args)

    async def run() -> int:
        storage = open_storage(settings.storage.url)
        try:
            return await seed(storage, args.file) if args.action == "seed" else 0
        finally:
            await storage.close()

    try:
        count = asyncio.run(run())
    except ConfigError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return 2
    print(f"database at {settings.storage.url} is up to date" + (f"; {count} seed records loaded" if count else ""))
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    """Rasa's story tests, then the conversation tests in tests/conversations/ against the whole stack."""
    import subprocess
    import tempfile

    from ivr.conversation_tests import main_sync
    from ivr.dialog.project import RasaProject, latest_model
    from ivr.dialog.supervisor import RASA
    from ivr.localhost import free_port
    from ivr.logs import setup_logging
    from ivr.server import Server, model_is_stale
    from ivr.settings import DialogSettings, ServerSettings, StorageSettings
    from ivr.storage import open_storage
    from ivr.storage.seed import seed

    root = Path(args.project).resolve()
    settings = _settings(args)
    project = RasaProject(root)
    model_dir = root / settings.dialog.model_dir
    if model_is_stale(project, latest_model(model_dir)):  # as `ivr serve`: train only what changed
        code = project.train(model_dir)
        if code != 0:
            return code
    model = latest_model(model_dir)
    stories = root / "tests" / "stories"
    if stories.is_dir():
        out = Path(tempfile.mkdtemp(prefix="ivr-rasa-test-"))
        cmd = [*RASA, "test", "core", "--model", str(model), "--stories", str(stories),
               "--out", str(out), "--fail-on-prediction-errors"]  # fmt: skip
        print(f"rasa story tests: {stories}", flush=True)
        if subprocess.call(cmd, cwd=root) != 0:
            print(f"rasa story tests failed; details in {out}", file=sys.stderr)
            return 1
    setup_logging("WARNING")
    work = Path(tempfile.mkdtemp(prefix="ivr-test-"))
    db_url = f"sqlite:///{work / 'ivr.db'}"
    settings = replace(
        settings,
        server=ServerSettings("127.0.0.1", 0),
        storage=StorageSettings(db_url),
        dialog=DialogSettings(model_dir=settings.dialog.model_dir, port=free_port(), actions_port=free_port()),
    )

    async def run() -> Server:
        storage = open_storage(db_url)
        await seed(storage)
        await storage.close()
        server = Server(settings, root, Path(args.settings).resolve())
        await server.start(train=False)
        return server

    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(run())
    try:
        storage = open_storage(db_url)
        folder = Path(args.conversations) if args.conversations else root / "tests" / "conversations"
        # The scripts run in a worker thread with their own event loop, while this loop serves the calls.
        return loop.run_until_complete(
            loop.run_in_executor(None, main_sync, f"http://127.0.0.1:{server.port}", folder, storage)
        )
    finally:
        loop.run_until_complete(server.stop())
        loop.close()


def faq_topic_problems(project: RasaProject) -> list[str]:
    """The topics tenants may answer (ivr/tenants.py) and the ones Rasa can recognize must be the same."""
    import yaml

    from ivr.tenants import FAQ_TOPICS

    recognized: dict[str, Path] = {}
    for path in sorted(project.domain.glob("*.yml")) if project.domain.is_dir() else [project.domain]:
        for name in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("responses") or {}:
            if name.startswith("utter_faq/"):
                recognized[name.split("/", 1)[1]] = path
    problems = [f"{recognized[t]}: responses.utter_faq/{t}: topic is not in ivr.tenants.FAQ_TOPICS, tenants cannot answer it"
                for t in sorted(set(recognized) - set(FAQ_TOPICS))]  # fmt: skip
    problems += [f"{project.domain}: no utter_faq/{t} response: Rasa cannot recognize the FAQ topic {t!r}"
                 for t in FAQ_TOPICS if t not in recognized]  # fmt: skip
    return problems


def _pull(languages: list[str], settings: Settings) -> None:
    from ivr.models import pull

    def progress(name: str, done: int, total: int | None) -> None:
        share = f"{done * 100 // total}%" if total else f"{done >> 20} MiB"
        print(f"\r{name}: {share}   ", end="", file=sys.stderr, flush=True)

    try:
        paths = asyncio.run(pull(languages, settings.cache_dir, progress=progress))
    except IvrError as exc:
        print(f"\nivr models pull: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    print(file=sys.stderr)
    for path in paths:
        print(path)


def cmd_models(args: argparse.Namespace) -> int:
    from ivr.models import list_models

    settings = _settings(args)
    if args.action == "pull":
        _pull(args.languages, settings)
        return 0
    for row in list_models(settings.cache_dir):
        print(json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in row.items()}))
    return 0


def cmd_agents(args: argparse.Namespace) -> int:
    """`ivr agents hash-password`: the `password_hash:` line of an `agents:` entry in ivr.yml.

    Asks twice on a terminal (a typo would lock the agent out); reads one line
    from stdin otherwise, so provisioning scripts can pipe the password in
    without it appearing in the process list.
    """
    import getpass

    from ivr.agents.passwords import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("ivr agents hash-password: the passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("ivr agents hash-password: the password must not be empty", file=sys.stderr)
        return 1
    print(f'password_hash: "{hash_password(password)}"')
    return 0


def call_main(argv: list[str]) -> int:
    from ivr.caller import main

    return main(argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ivr", description="Offline voice bot and IVR front end for call centers")
    parser.add_argument("--settings", default=DEFAULT_SETTINGS_FILE, help="IVR settings file (default: ivr.yml)")
    parser.add_argument("--project", default=".", help="Rasa project root (config.yml, dialogs/, nlu/)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="start Rasa, load models, answer calls")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--sip-port", type=int, help="answer SIP calls on this UDP/TCP port (enables sip:)")
    serve.add_argument("--pull", action="store_true", help="download missing speech models first")
    serve.add_argument("--log-level", default="INFO")
    serve.set_defaults(func=cmd_serve)

    train = sub.add_parser("train", help="train the Rasa model (skipped when nothing changed)")
    train.add_argument("--force", action="store_true")
    train.set_defaults(func=cmd_train)

    check = sub.add_parser("check", help="validate settings, catalogue and Rasa data")
    check.set_defaults(func=cmd_check)

    db = sub.add_parser("db", help="database: upgrade (migrate), seed (load demo or given seed data)")
    db.add_argument("action", choices=["upgrade", "seed"])
    db.add_argument("file", nargs="?", type=Path, help="seed file (default: the demo tenants' data)")
    db.set_defaults(func=cmd_db)

    test = sub.add_parser("test", help="Rasa story tests and conversation tests against the whole stack")
    test.add_argument("--conversations", help="folder of conversation scripts (default: tests/conversations)")
    test.set_defaults(func=cmd_test)

    models = sub.add_parser("models", help="speech models: pull, list")
    models.add_argument("action", choices=["pull", "list"])
    models.add_argument("languages", nargs="*", help="languages (de, en) or model names; default: all")
    models.set_defaults(func=cmd_models)

    agents = sub.add_parser("agents", help="agent logins: hash-password (for the agents: section of ivr.yml)")
    agents.add_argument("action", choices=["hash-password"])
    agents.set_defaults(func=cmd_agents)

    sub.add_parser("call", help="call the media stream endpoint with WAV files (see `ivr call --help`)", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if argv[:1] == ["call"]:  # `ivr call` has its own parser
        return call_main(argv[1:])
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
