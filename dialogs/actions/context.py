"""What every action needs: the caller's tenant, language and the storage.

The action server is its own process (`python -m rasa_sdk --actions
dialogs.actions`), started by `ivr serve` with `IVR_SETTINGS` and
`IVR_DATABASE_URL` so that it sees the same tenants and database as the voice
front end. Settings and storage are opened once per process, on first use.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any, Optional

from rasa_sdk import Tracker

from ivr.settings import Settings, Tenant, load_settings
from ivr.storage import Storage, open_storage


@lru_cache(maxsize=1)
def settings() -> Settings:
    return load_settings(os.environ.get("IVR_SETTINGS", "ivr.yml"))


@lru_cache(maxsize=1)
def storage() -> Storage:
    return open_storage(settings().storage.url)


def tenant_of(tracker: Tracker) -> tuple[str, Tenant]:
    """The tenant the IVR put into the `tenant` slot at call start (its number is the key)."""
    return settings().tenant_for(tracker.get_slot("tenant"))


def language_of(tracker: Tracker) -> str:
    language = tracker.get_slot("language")
    return language if language in ("de", "en") else tenant_of(tracker)[1].language


def latest_intent(tracker: Tracker) -> Optional[str]:
    return (tracker.latest_message.get("intent") or {}).get("name")


def latest_text(tracker: Tracker) -> str:
    return (tracker.latest_message.get("text") or "").strip()


def ivr_payload(**flags: Any) -> dict[str, Any]:
    """The `custom` payload the voice front end reads (see ivr/dialog/payloads.py)."""
    return {"ivr": flags}
