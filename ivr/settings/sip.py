"""The `sip` section of `ivr.yml`: the SIP user agent (ivr/transports/sip), its registration and TLS."""

import ipaddress
from typing import TYPE_CHECKING, Any, Literal

from pydantic import StrictBool, validator

from ivr.settings.sections import Port, Seconds
from ivr.yaml_config import Text, checked, config, integer, matching, number


def network(value: Any) -> str:
    """A network in CIDR notation (a bare address is a /32 or /128), kept as written."""
    try:
        ipaddress.ip_network(str(value), strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not a network (e.g. 10.0.0.0/8)") from None
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not of type 'string'")
    return value


def _port_range(value: Any) -> tuple[int, int]:
    """'20000-20999' as written in the file, or (20000, 20999)."""
    if isinstance(value, str) and value.count("-") == 1 and all(p.isdigit() for p in value.split("-")):
        low, high = (int(p) for p in value.split("-"))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(type(p) is int for p in value):
        low, high = value
    else:
        low = high = 0
    if not 1024 <= low < high <= 65535:
        raise ValueError(f"{value!r}: want LOW-HIGH with 1024 <= LOW < HIGH <= 65535")
    return low, high


if TYPE_CHECKING:  # what the values are to the code that reads them
    Network = str
    PortRange = tuple[int, int]
else:
    Network = checked("Network", network)
    PortRange = checked("PortRange", _port_range)


@config
class SipRegistration:
    """REGISTER with a PBX or trunk; the account is read from the named environment variables."""

    registrar: matching(r"^sip:")  # sip:pbx.example.com:5060
    domain: Text | None = None  # of the address of record; default: the registrar's host
    user_env: Text = "IVR_SIP_USER"
    password_env: Text = "IVR_SIP_PASSWORD"
    expires_s: integer(ge=60) = 600
    retry_s: Seconds = 30.0


@config
class SipTls:
    """SIP over TLS (RFC 3261 §26.2): a certificate and key in PEM files, on its own port."""

    certificate: Text
    key: Text
    port: Port = 5061


@config
class SipSettings:
    """The SIP user agent (ivr/transports/sip): calls from trunks, PBXs and phones, next to the media stream.

    `advertise` is the address put into Contact, Via and SDP when peers reach
    this machine under another address (NAT). `transfer_to` is the REFER target
    for a handoff in `telephony` mode; `{queue}` is replaced by the queue name.
    """

    enabled: StrictBool = False
    host: Text = "127.0.0.1"
    port: Port = 5060
    transports: tuple[Literal["udp", "tcp"], ...] = ("udp", "tcp")
    advertise: Text | None = None
    rtp_ports: PortRange | None = (20000, 20999)  # None: any free port
    jitter_ms: integer(ge=20, le=500, multiple_of=20) = 60
    inband_dtmf: Literal["auto", "always", "never"] = "auto"  # auto: listen for tones without telephone-event
    answer_delay_s: number(ge=0, le=30) = 0.0
    max_calls: integer(ge=1) = 200
    allow_from: tuple[Network, ...] = ()  # networks that may place calls (CIDR); empty: anyone who reaches the port
    transfer_to: matching(r"^sips?:") | None = None
    transfer_timeout_s: Seconds = 10.0
    register: SipRegistration | None = None
    tls: SipTls | None = None

    @validator("transports")
    def _udp(cls, transports: tuple[str, ...]) -> tuple[str, ...]:
        if "udp" not in transports:
            raise ValueError(f"{list(transports)} must include 'udp' (RFC 3261 §18: every SIP element supports UDP)")
        return transports
