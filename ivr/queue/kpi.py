"""Call-center KPIs computed from the flat call-event log alone, as from Asterisk's queue_log.

Nothing is aggregated when calls happen; these figures are folded from the
rows, so they work for any period and for calls stored before a KPI existed.

Definitions (per tenant and queue, over the events given):
- offered: callers who entered the queue (ENTERQUEUE; a transfer enters again).
- answered: CONNECT. ASA: mean hold time of answered calls.
- service level: share of answered-or-abandoned callers answered within `threshold_s`
  (callers who gave up sooner than the threshold are not held against it, the usual
  "short abandons excluded" definition).
- abandoned: ABANDON; abandon rate = abandoned / offered.
- callbacks instead of waiting: EXITWITHKEY + EXITWITHTIMEOUT + EXITEMPTY.
- AHT: mean talk time of completed calls (COMPLETEAGENT, COMPLETECALLER, TRANSFER).
- containment (per tenant): calls that ended without a HANDOFF / all calls.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from ivr.storage import CallEvent, EventName

SHORT_ABANDON_S = 5.0


@dataclass
class QueueKpis:
    tenant: str
    queue: str
    offered: int = 0
    answered: int = 0
    answered_in_threshold: int = 0
    abandoned: int = 0
    short_abandons: int = 0
    left_for_callback: int = 0
    ring_no_answer: int = 0
    hold_total_s: float = 0.0
    talk_total_s: float = 0.0
    completed: int = 0

    @property
    def asa_s(self) -> float | None:
        return round(self.hold_total_s / self.answered, 1) if self.answered else None

    @property
    def aht_s(self) -> float | None:
        return round(self.talk_total_s / self.completed, 1) if self.completed else None

    @property
    def abandon_rate(self) -> float | None:
        return round(self.abandoned / self.offered, 3) if self.offered else None

    @property
    def service_level(self) -> float | None:
        counted = self.answered + self.abandoned - self.short_abandons
        return round(self.answered_in_threshold / counted, 3) if counted > 0 else None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "asa_s": self.asa_s, "aht_s": self.aht_s, "abandon_rate": self.abandon_rate,
                "service_level": self.service_level}  # fmt: skip


def queue_kpis(events: Iterable[CallEvent], threshold_s: float = 20.0) -> list[QueueKpis]:
    """KPIs per (tenant, queue), sorted by tenant and queue."""
    table: dict[tuple[str, str], QueueKpis] = {}

    def row(event: CallEvent) -> QueueKpis:
        key = (event.tenant, str(event.data.get("queue", "")))
        return table.setdefault(key, QueueKpis(*key))

    for event in events:
        data, name = event.data, event.event
        if name == EventName.ENTERQUEUE:
            row(event).offered += 1
        elif name == EventName.CONNECT:
            k = row(event)
            k.answered += 1
            hold = float(data.get("holdtime", 0))
            k.hold_total_s += hold
            k.answered_in_threshold += hold <= threshold_s
        elif name == EventName.ABANDON:
            k = row(event)
            k.abandoned += 1
            k.short_abandons += float(data.get("waittime", 0)) < min(SHORT_ABANDON_S, threshold_s)
        elif name in (EventName.EXITWITHKEY, EventName.EXITWITHTIMEOUT, EventName.EXITEMPTY):
            row(event).left_for_callback += 1
        elif name == EventName.RINGNOANSWER:
            row(event).ring_no_answer += 1
        elif name in (EventName.COMPLETEAGENT, EventName.COMPLETECALLER, EventName.TRANSFER):
            k = row(event)
            k.completed += 1
            k.talk_total_s += float(data.get("calltime", 0))
    return [table[key] for key in sorted(table)]


def containment(events: Iterable[CallEvent]) -> dict[str, float | None]:
    """Per tenant: the share of calls the bot finished without handing over to a person."""
    calls: dict[str, set[str]] = defaultdict(set)
    handed: dict[str, set[str]] = defaultdict(set)
    for event in events:
        if event.event == EventName.CALL_START:
            calls[event.tenant].add(event.call_id)
        elif event.event == EventName.HANDOFF:
            handed[event.tenant].add(event.call_id)
    return {t: round(1 - len(handed[t] & ids) / len(ids), 3) if ids else None for t, ids in sorted(calls.items())}
