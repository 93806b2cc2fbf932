"""The counters of one call's RTP and RTCP (`SendStats`), and their sum over calls.

A module of its own so that the endpoint can total the counters of live and
finished calls (SipEndpoint.health, for /healthz) without depending on the 20 ms
clock in stream.py that fills them in.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SendStats:
    packets: int = 0
    late_ticks: int = 0  # woke more than one frame after the scheduled time
    max_lateness_ms: float = 0.0
    resyncs: int = 0
    dtmf_sent: int = 0
    dropped_bad: int = 0  # received datagrams that were not usable RTP
    dropped_foreign: int = (
        0  # RTP or RTCP from a host we do not expect, or from a second source while we hear the first
    )
    rtcp_sent: int = 0
    rtcp_received: int = 0
    rtcp_dropped: int = 0  # RTCP datagrams that were not valid compound packets

    def add(self, other: SendStats) -> None:
        """Sums counters (a finished call's into the endpoint's totals); the maximum stays a maximum."""
        for name, value in vars(other).items():
            mine = getattr(self, name)
            setattr(self, name, max(mine, value) if name.startswith("max_") else mine + value)
