"""Agent desktop logins in `ivr.yml`: the users (`agents`) and the limits on password checks (`logins`)."""

from typing import Any, Literal

from pydantic import StrictStr, validator

from ivr.settings.sip import Network
from ivr.yaml_config import Loc, Text, config, integer, matching, non_empty, number


@config
class AgentUser:
    """A login of the agent desktop. Only the password's scrypt hash is stored (`ivr agents hash-password`)."""

    username: matching(r"^[a-z][a-z0-9_.-]{1,31}$")
    password_hash: matching(r"^scrypt\$")
    role: Literal["agent", "supervisor", "admin"]
    tenants: tuple[Text, ...]  # tenant numbers this user may see; "*" = all
    skills: tuple[Text, ...] = ()  # queue names the agent takes calls from; empty = every queue of their tenants
    name: StrictStr = ""  # shown to supervisors; default: the username

    _some = validator("tenants", allow_reuse=True)(
        non_empty('[] should be non-empty (a tenant number, or "*" for all)')
    )

    @validator("name", always=True)
    def _username_by_default(cls, name: str, values: dict[str, Any]) -> str:
        return name or values.get("username", "")

    def sees(self, tenant: str) -> bool:
        return "*" in self.tenants or tenant in self.tenants

    def works(self, queue: str) -> bool:
        return not self.skills or queue in self.skills


@config
class LoginSettings:
    """Limits of password checks (ivr/agents/auth.py), so logins can neither starve the server nor be sprayed.

    scrypt runs on `hash_threads` threads of its own (never the pool storage
    uses); beyond `hash_queue` waiting checks a login is answered 503. Each
    source address may start `attempt_burst` checks at once, refilled at
    `attempts_per_minute`. The source is the connection's peer, or, when the
    peer is in `trusted_proxies` (networks), the address X-Forwarded-For names.
    """

    hash_threads: integer(ge=1, le=8) = 1
    hash_queue: integer(ge=0, le=1000) = 16
    attempts_per_minute: number(gt=0) = 30.0
    attempt_burst: integer(ge=1) = 30
    trusted_proxies: tuple[Network, ...] = ()


def agent_problems(data: dict[str, Any]) -> list[tuple[Loc, str]]:
    """Agents must be unique and name tenants and queues that exist.

    This crosses sections (agents, tenants), so it reads the file's mapping
    rather than validated sections: an agent with another mistake (a bad
    password hash) still gets these checks in the same run.
    """
    agents: Any = data.get("agents")
    tenants: Any = data.get("tenants") if isinstance(data.get("tenants"), dict) else {}
    found: list[tuple[Loc, str]] = []
    seen: set[str] = set()
    for i, agent in enumerate(agents if isinstance(agents, list) else ()):
        if not isinstance(agent, dict):
            continue
        name: Any = agent.get("username")
        if name in seen:
            found.append((("agents", i, "username"), f"{name!r} is listed twice"))
        seen.add(name)
        own: Any = agent.get("tenants") if isinstance(agent.get("tenants"), list) else []
        for j, tenant in enumerate(own):
            if tenant != "*" and tenant not in tenants:
                found.append((("agents", i, "tenants", j), f'{tenant!r} is not one of the tenants (or "*" for all)'))
        # A skill is a queue name; a typo would leave the agent waiting for calls that never come.
        queues = {"default"}
        for dialled, tenant in tenants.items():
            if isinstance(tenant, dict) and ("*" in own or dialled in own) and isinstance(tenant.get("queues"), dict):
                queues.update(str(q) for q in tenant["queues"].values())
        skills: Any = agent.get("skills") if isinstance(agent.get("skills"), list) else []
        for j, skill in enumerate(skills):
            if skill not in queues:
                message = f"{skill!r} is not a queue of the agent's tenants ({', '.join(sorted(queues))})"
                found.append((("agents", i, "skills", j), message))
    return found
