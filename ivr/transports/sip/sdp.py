"""SDP offer/answer for one audio stream (RFC 4566, RFC 3264, RFC 4733).

We answer, never offer: the caller's offer lists codecs in its preference
order and we take the first one we speak (PCMU or PCMA at 8 kHz), plus
telephone-event for keypad digits. Every m-line of the offer gets a line in the
answer (RFC 3264 §6); streams we do not take are refused with port 0. Hold is
the offer's direction: sendonly or inactive from the caller means we stop
sending (RFC 3264 §8.4). RTCP goes to the port the offer names with a=rtcp
(RFC 3605), else the RTP port + 1, or shares the RTP port when the offer asks
for a=rtcp-mux (RFC 5761 §5.1.1: we accept it by repeating the attribute).
Connection addresses must be IP literals: an offer naming a host gets 488,
since we do not resolve names for media.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

STATIC_CODECS = {0: "PCMU", 8: "PCMA"}
OUR_CODECS = ("PCMU", "PCMA")
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
ANSWER_DIRECTION = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}
MAX_SDP = 16384


class SdpError(ValueError):
    """An offer we cannot answer (488 Not Acceptable Here) or cannot read (400)."""

    def __init__(self, message: str, status: int = 488):
        super().__init__(message)
        self.status = status


@dataclass
class MediaOffer:
    media: str
    port: int
    proto: str
    formats: list[str]
    address: str | None = None
    rtpmap: dict[int, tuple[str, int]] = field(default_factory=dict)  # pt -> (encoding, rate)
    direction: str | None = None
    ptime: int | None = None
    rtcp_port: int | None = None  # a=rtcp (RFC 3605)
    rtcp_address: str | None = None
    rtcp_mux: bool = False  # a=rtcp-mux (RFC 5761)


@dataclass
class Offer:
    origin_address: str
    address: str | None
    direction: str
    media: list[MediaOffer]


@dataclass(frozen=True)
class Negotiated:
    """What both sides agreed for the audio stream."""

    codec: str  # PCMU | PCMA
    payload_type: int
    dtmf_payload_type: int | None  # telephone-event, None = keys only as in-band tones
    remote_address: str
    remote_port: int
    direction: str  # the caller's direction: sendonly/inactive = we are on hold
    ptime: int = 20
    rtcp_port: int | None = None  # where the caller wants RTCP; None: the RTP port + 1
    rtcp_address: str | None = None  # None: the RTP address
    rtcp_mux: bool = False  # RTCP shares the RTP port

    @property
    def rtcp_destination(self) -> tuple[str, int]:
        if self.rtcp_mux:
            return self.remote_address, self.remote_port
        return self.rtcp_address or self.remote_address, self.rtcp_port or self.remote_port + 1

    @property
    def we_send(self) -> bool:
        return self.direction in ("sendrecv", "recvonly") and self.remote_address not in ("0.0.0.0", "::")

    @property
    def we_receive(self) -> bool:
        return self.direction in ("sendrecv", "sendonly")


def parse_offer(body: bytes) -> Offer:
    if len(body) > MAX_SDP:
        raise SdpError(f"SDP of {len(body)} bytes is too large", 400)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SdpError("SDP is not UTF-8", 400) from None
    origin = ""
    session_address: str | None = None
    session_direction = "sendrecv"
    media: list[MediaOffer] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if len(line) < 2 or line[1] != "=":
            raise SdpError(f"SDP line {number}: not 'x=value' ({line[:30]!r})", 400)
        kind, value = line[0], line[2:]
        try:
            if kind == "o":
                origin = value.split()[5]
            elif kind == "c":
                net, addrtype, address = value.split()[:3]
                address = address.split("/")[0]
                if media:
                    media[-1].address = address
                else:
                    session_address = address
            elif kind == "m":
                parts = value.split()
                port = int(parts[1].split("/")[0])
                if not 0 <= port < 65536:
                    raise ValueError(f"port {port}")
                media.append(MediaOffer(parts[0], port, parts[2], parts[3:]))
            elif kind == "a":
                _attribute(value, media[-1] if media else None)
                if not media and value in DIRECTIONS:
                    session_direction = value
        except (IndexError, ValueError) as exc:
            raise SdpError(f"SDP line {number}: {line[:40]!r} ({str(exc) or 'too few fields'})", 400) from None
    if not media:
        raise SdpError("SDP offer has no m= line")
    return Offer(origin, session_address, session_direction, media)


def _attribute(value: str, media: MediaOffer | None) -> None:
    if media is None:
        return
    name, _, rest = value.partition(":")
    if name == "rtpmap":
        pt, encoding = rest.split(None, 1)
        enc_parts = encoding.split("/")
        media.rtpmap[int(pt)] = (enc_parts[0], int(enc_parts[1]) if len(enc_parts) > 1 else 8000)
    elif name == "ptime":
        media.ptime = int(float(rest))
    elif name == "rtcp":  # RFC 3605 §2.1: port [nettype addrtype address]
        fields = rest.split()
        media.rtcp_port = int(fields[0])
        if not 0 < media.rtcp_port < 65536:
            raise ValueError(f"RTCP port {media.rtcp_port}")
        if len(fields) >= 4:
            media.rtcp_address = fields[3]
    elif value == "rtcp-mux":
        media.rtcp_mux = True
    elif value in DIRECTIONS:
        media.direction = value


def _is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def negotiate(offer: Offer) -> tuple[Negotiated, int]:
    """The audio stream we take and its index among the m-lines; SdpError if none is acceptable."""
    for index, media in enumerate(offer.media):
        if media.media != "audio" or media.port == 0 or media.proto not in ("RTP/AVP", "RTP/AVPF"):
            continue
        codec: tuple[str, int] | None = None
        dtmf: int | None = None
        for fmt in media.formats:
            if not fmt.isdigit():
                continue
            pt = int(fmt)
            encoding, rate = media.rtpmap.get(pt, (STATIC_CODECS.get(pt, ""), 8000))
            encoding = encoding.upper()
            if codec is None and encoding in OUR_CODECS and rate == 8000:
                codec = (encoding, pt)
            elif encoding == "TELEPHONE-EVENT" and rate == 8000 and dtmf is None:
                dtmf = pt
        if codec is None:
            continue
        address = media.address or offer.address
        if not address:
            raise SdpError("SDP offer has no connection address (c=)", 400)
        for named in (address, media.rtcp_address):
            if named is not None and not _is_ip(named):
                # Resolving it would block the event loop (on every packet, as sendto resolves), and a name
                # can point anywhere; every SIP peer we know puts an IP literal here.
                raise SdpError(
                    "SDP connection address (c= or a=rtcp) is not an IP address; host names are not resolved"
                )
        direction = media.direction or offer.direction
        return Negotiated(codec[0], codec[1], dtmf, address, media.port, direction, rtcp_port=media.rtcp_port,
                          rtcp_address=media.rtcp_address, rtcp_mux=media.rtcp_mux), index  # fmt: skip
    offered = ", ".join(f"{m.media} {' '.join(m.formats)}" for m in offer.media)
    raise SdpError(f"no audio stream with PCMU or PCMA at 8000 Hz in the offer ({offered})")


def answer(offer: Offer, chosen: Negotiated, index: int, local_address: str, local_port: int,
           session_id: int, version: int) -> bytes:  # fmt: skip
    ip = "IP6" if ":" in local_address else "IP4"
    lines = [
        "v=0",
        f"o=ivr {session_id} {version} IN {ip} {local_address}",
        "s=ivr",
        f"c=IN {ip} {local_address}",
        "t=0 0",
    ]
    for i, media in enumerate(offer.media):
        if i != index:
            lines.append(f"m={media.media} 0 {media.proto} {' '.join(media.formats) or '0'}")
            continue
        formats = [str(chosen.payload_type)] + (
            [str(chosen.dtmf_payload_type)] if chosen.dtmf_payload_type is not None else []
        )
        lines.append(f"m=audio {local_port} RTP/AVP {' '.join(formats)}")
        lines.append(f"a=rtpmap:{chosen.payload_type} {chosen.codec}/8000")
        if chosen.dtmf_payload_type is not None:
            lines.append(f"a=rtpmap:{chosen.dtmf_payload_type} telephone-event/8000")
            lines.append(f"a=fmtp:{chosen.dtmf_payload_type} 0-16")
        lines.append("a=ptime:20")
        if chosen.rtcp_mux:
            lines.append("a=rtcp-mux")
        lines.append(f"a={ANSWER_DIRECTION[chosen.direction]}")
    return ("\r\n".join(lines) + "\r\n").encode()
