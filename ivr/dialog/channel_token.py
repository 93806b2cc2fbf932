"""The per-start token between `ivr serve` and the `rasa run` it started.

Both sides import this small module: the supervisor (which makes a token for
each start and passes it in the child's environment), the client (which sends
it with every request) and the IVR channel inside the Rasa process (which
refuses requests without it). Two instances on one machine then cannot talk to
each other's Rasa by accident: the foreign one answers 401, and start-up stops.
"""

from __future__ import annotations

import hmac

ENV = "IVR_DIALOG_TOKEN"
HEADER = "X-IVR-Token"


def accepted(expected: str | None, given: str | None) -> bool:
    """Whether a request may use the channel: always without a configured token (an external `rasa run`)."""
    if not expected:
        return True
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())
