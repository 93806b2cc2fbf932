"""`ivr serve`: everything on one machine with the embedded defaults.

Order matters for a good first call: settings are validated, the Rasa model is
trained if the project changed, every speech model is loaded (a missing one
stops start-up with the command that fixes it), Rasa is started and answers,
and only then does the HTTP server accept calls.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import Awaitable
from pathlib import Path

from aiohttp import web

from ivr.app import make_app
from ivr.dialog import channel_token
from ivr.dialog.project import RasaProject, latest_model
from ivr.dialog.supervisor import ActionServer, RasaServer, claim_port
from ivr.runtime import Runtime
from ivr.settings import Settings
from ivr.transports.sip.endpoint import SipEndpoint

log = logging.getLogger("ivr.server")

# How long calls get to end properly on shutdown: a waiting caller hears why and that we call back (~10 s).
SHUTDOWN_GRACE_S = 20.0


def model_is_stale(project: RasaProject, model: Path | None) -> bool:
    """True when there is no model or a project file is newer than it."""
    if model is None:
        return True
    built = model.stat().st_mtime
    sources = [project.config, *project.root.glob("dialogs/**/*.yml"), *project.root.glob("nlu/**/*.yml")]
    return any(path.stat().st_mtime > built for path in sources if path.is_file())


async def _all_or_none(steps: list[Awaitable[object]]) -> None:
    """Run the start-up steps concurrently; when one fails, cancel the others before raising its error."""
    tasks = [asyncio.ensure_future(step) for step in steps]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class Server:
    """The running product: Rasa and its action server (supervised or external), runtime, HTTP app."""

    def __init__(self, settings: Settings, project_root: Path, settings_file: Path):
        self.settings = settings
        self.settings_file = settings_file
        self.project = RasaProject(project_root)
        self.rasa: RasaServer | None = None
        self.actions: ActionServer | None = None
        self.runtime: Runtime | None = None
        self.runner: web.AppRunner | None = None
        self.port: int | None = None
        self.sip: SipEndpoint | None = None

    async def start(self, train: bool = True) -> None:
        dialog = self.settings.dialog
        url = dialog.url
        if url is None:
            model_dir = self.project.root / dialog.model_dir
            if train and model_is_stale(self.project, latest_model(model_dir)):
                log.info("rasa.training", extra={"out": str(model_dir)})
                print("Training the dialog model (first start, or the dialog files changed; about 5 minutes on 2 cores)",
                      file=sys.stderr, flush=True)  # fmt: skip
                code = await asyncio.to_thread(self.project.train, model_dir)
                if code != 0:
                    raise SystemExit(f"rasa train failed with exit code {code}; run `ivr check` for details")
            model = latest_model(model_dir)
            if model is None:
                raise SystemExit(f"no trained Rasa model in {model_dir}: run `ivr train`")
            actions_url = dialog.actions_url
            if actions_url is None:
                self.actions = ActionServer(claim_port(dialog.actions_port, "dialog.actions_port"), self.project.root,
                                            self.settings_file, self.settings.storage.url, dialog.startup_timeout_s)  # fmt: skip
                actions_url = self.actions.url
            self.rasa = RasaServer(model, claim_port(dialog.port, "dialog.port"), self.project.root, actions_url,
                                   dialog.startup_timeout_s)  # fmt: skip
            url = self.rasa.url
        # An external `rasa run` (dialog.url) started with IVR_DIALOG_TOKEN set wants the same token from us.
        token = self.rasa.token if self.rasa else os.environ.get(channel_token.ENV)
        self.runtime = Runtime.create(self.settings, url, token)
        print("Loading the speech models" + (" and starting the dialog engine" if self.rasa else ""), file=sys.stderr,
              flush=True)  # fmt: skip
        # Loading the speech models, the action server and Rasa's model take seconds each and need nothing from
        # one another: side by side, start-up takes as long as the slowest of them (Rasa), not their sum.
        await _all_or_none([asyncio.to_thread(self.runtime.preload),
                            *(child.start() for child in (self.actions, self.rasa) if child is not None)])  # fmt: skip
        self.runtime.prerender(self.project.domain)  # in the background: calls are taken meanwhile
        children = {child.name: child for child in (self.rasa, self.actions) if child is not None}
        if children:
            self.runtime.dialog_health = lambda: {name: child.health() for name, child in children.items()}
        self.runner = web.AppRunner(make_app(self.runtime), handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.settings.server.host, self.settings.server.port)
        await site.start()
        self.port = self.runner.addresses[0][1]
        log.info("server.listening", extra={"host": self.settings.server.host, "port": self.port})
        if self.settings.sip.enabled:
            self.sip = SipEndpoint(self.runtime, self.settings.sip)
            await self.sip.start()
            self.runtime.sip_health = self.sip.health
        # What start-up loaded (models, modules, settings) lives as long as the process. Frozen, it is left
        # out of the garbage collector's full passes, which took 350-400 ms with 25 calls up and stalled
        # every call's 20 ms audio clock (bench/sip_calls.py; docs/performance.md).
        gc.collect()
        gc.freeze()

    async def stop(self) -> None:
        """SIGTERM or Ctrl-C: every call ends properly before the sockets close (waiting callers get a callback)."""
        if self.runtime is not None:
            await self.runtime.shut_down_calls(SHUTDOWN_GRACE_S)
        if self.sip is not None:
            await self.sip.stop()
        if self.runner is not None:
            await self.runner.cleanup()
        if self.runtime is not None:
            await self.runtime.close()
        if self.rasa is not None:
            await self.rasa.stop()
        if self.actions is not None:
            await self.actions.stop()


async def serve_forever(settings: Settings, project_root: Path, settings_file: Path) -> None:
    server = Server(settings, project_root, settings_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
        base = f"{settings.server.host}:{server.port}"
        sip = (
            f", sip:{settings.sip.advertise or settings.sip.host}:{server.sip.port} (SIP, udp/tcp)"
            if server.sip
            else ""
        )
        print(
            f"IVR ready: http://{base}/phone (browser phone), ws://{base}/media (Media Streams), "
            f"http://{base}/agent (agent desktop){sip}",
            flush=True,
        )
        await stop.wait()
    finally:
        await server.stop()
