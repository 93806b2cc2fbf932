"""What every action needs: the caller's tenant, language and the storage.

The action server is its own process (`python -m rasa_sdk --actions
dialogs.actions`), started by `ivr serve` with `IVR_SETTINGS` and
`IVR_DATABASE_URL` so that it sees the same tenants and database as the voice
front end. Settings and storage are opened once per process, on first use.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from rasa_sdk import Tracker

from ivr.settings import Settings, Tenant, load_settings
from ivr.storage import Storage, open_storage


@lru_cache(maxsize=1)
def settings() -> Settings:
    return load_settings(os.environ.get("IVR_SETTINGS", "ivr.yml"))


@lru_cache(maxsize=1)
def storage() -> Storage:
    return open_storage(settings().storage.url)


class NoTenant(RuntimeError):
    """A turn without the `tenant` slot: acting on it could use another company's data."""


def tenant_of(tracker: Tracker) -> tuple[str, Tenant]:
    """The tenant the IVR puts into the `tenant` slot with every turn (its number is the key).

    Never a fallback to the default tenant: a tracker that lost its slots (Rasa
    restarted, its tracker store emptied) would otherwise look up orders and
    file handoffs in the wrong company's name. The action fails instead; Rasa
    then says nothing, and the IVR answers an empty turn with its own fallback
    and, on repeat, a person (ivr/session/conversation.py).
    """
    number = tracker.get_slot("tenant")
    if not number:
        raise NoTenant(f"conversation {tracker.sender_id}: no tenant slot; refusing to act without a company")
    return settings().tenant_for(number)


def language_of(tracker: Tracker) -> str:
    language = tracker.get_slot("language")
    return language if language in ("de", "en") else tenant_of(tracker)[1].language


def latest_intent(tracker: Tracker) -> str | None:
    return (tracker.latest_message.get("intent") or {}).get("name")


def latest_text(tracker: Tracker) -> str:
    return (tracker.latest_message.get("text") or "").strip()


def ivr_payload(**flags: Any) -> dict[str, Any]:
    """The `custom` payload the voice front end reads (see ivr/dialog/payloads.py)."""
    return {"ivr": flags}
