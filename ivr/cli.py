"""The `ivr` command: serve, call, train, check, test data, models."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Optional

from ivr.errors import ConfigError, IvrError
from ivr.settings import DEFAULT_SETTINGS_FILE, load_settings, replace


def _settings(args: argparse.Namespace):
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
        server = ServerSettings(args.host or settings.server.host, settings.server.port if args.port is None else args.port)
        settings = replace(settings, server=server)
    if args.pull:
        _pull(sorted({t.language for t in settings.tenants.values()}), settings)
    try:
        asyncio.run(serve_forever(settings, Path(args.project).resolve()))
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
    result = RasaProject(Path(args.project).resolve()).validate()
    if result.returncode != 0:
        lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
        problems += [f"rasa data validate: {line}" for line in lines[-20:]]
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print("settings, model catalogue and Rasa data are valid")
    return 1 if problems else 0


def _pull(languages: list[str], settings) -> None:
    from ivr.models import pull

    def progress(name: str, done: int, total: Optional[int]) -> None:
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
    serve.add_argument("--pull", action="store_true", help="download missing speech models first")
    serve.add_argument("--log-level", default="INFO")
    serve.set_defaults(func=cmd_serve)

    train = sub.add_parser("train", help="train the Rasa model (skipped when nothing changed)")
    train.add_argument("--force", action="store_true")
    train.set_defaults(func=cmd_train)

    check = sub.add_parser("check", help="validate settings, catalogue and Rasa data")
    check.set_defaults(func=cmd_check)

    models = sub.add_parser("models", help="speech models: pull, list")
    models.add_argument("action", choices=["pull", "list"])
    models.add_argument("languages", nargs="*", help="languages (de, en) or model names; default: all")
    models.set_defaults(func=cmd_models)

    sub.add_parser("call", help="call the media stream endpoint with WAV files (see `ivr call --help`)", add_help=False)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if argv[:1] == ["call"]:  # `ivr call` has its own parser
        return call_main(argv[1:])
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
