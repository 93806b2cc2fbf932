"""What arrives on a call's media sockets: the RTCP socket's protocol, and IP hosts to compare senders by.

Kept out of stream.py, which drives the 20 ms clock: `RtcpPort` hands each
datagram to a callback, so it needs nothing of `RtpStream`, and `ip_host`
is the one place that decides when two addresses name the same host.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable

Host = ipaddress.IPv4Address | ipaddress.IPv6Address


class RtcpPort(asyncio.DatagramProtocol):
    """The RTCP socket next to the RTP one (RFC 3550 §11: RTP port + 1)."""

    def __init__(self, on_datagram: Callable[[bytes, tuple[str, int]], None]):
        self.on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.on_datagram(data, addr[:2])


def ip_host(address: str | None) -> Host | None:
    """An IP address for comparing hosts, None for anything else (the SDP has only IP literals: sdp.negotiate)."""
    try:
        host = ipaddress.ip_address((address or "").split("%")[0])
    except ValueError:
        return None
    return (
        (host.ipv4_mapped or host) if isinstance(host, ipaddress.IPv6Address) else host
    )  # a dual-stack socket's IPv4 peer
