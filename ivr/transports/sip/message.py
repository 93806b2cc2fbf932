"""SIP message framing and validation (RFC 3261 §7, §18.3, §20).

Header grammar (addresses, URIs, Via, CSeq, digest parameters) comes from
`sipmessage`, a small, typed, pure-Python parser by the aiortc authors. This
module adds what a server on the open network needs on top of it: a size
limit, header folding, the mandatory headers checked up front, Content-Length
framing for stream transports, and one error type, so every malformed input
ends as a 400 answer or a dropped datagram, never as an exception in a
transport callback.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable

from sipmessage import URI, Address, Request, Response, Via
from sipmessage.message import COMPACT_FORMS

Message = Request | Response

MAX_MESSAGE = 65535  # the largest UDP datagram; stream transports get the same limit per message
MAX_HEADERS = 128
MAX_FORWARDS = 255  # RFC 3261 §20.22 suggests 70; anything above 255 is not a real hop count
MAX_DIGITS = 10  # longer header numbers are refused before int() sees them (it raises ValueError past 4,300 digits)
SERVER = "ivr-sip/0.1"
METHODS = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REFER", "NOTIFY", "INFO")
ALLOW = ", ".join(METHODS)
BRANCH_MAGIC = "z9hG4bK"  # RFC 3261 §8.1.1.7

_TOKEN = re.compile(r"^[A-Za-z0-9.!%*_+`'~-]+$")
_REQUEST_LINE = re.compile(r"^([A-Za-z0-9.!%*_+`'~-]+) (\S+) SIP/2\.0$")
_STATUS_LINE = re.compile(r"^SIP/2\.0 ([1-6][0-9][0-9]) ?(.*)$")
_REQUIRED = ("Via", "From", "To", "Call-ID", "CSeq")
_ASCII_DIGITS = re.compile(r"[0-9]+")  # not str.isdigit() or \d: they take '²' and '٣', which int() refuses or reads
_ASCII_ONLY = ("Via", "CSeq")  # their grammar is ASCII; sipmessage reads their numbers with \d, which takes "٣"

REASONS = {
    100: "Trying", 180: "Ringing", 200: "OK", 202: "Accepted", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 413: "Request Entity Too Large", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension", 480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist", 482: "Loop Detected",
    483: "Too Many Hops", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 491: "Request Pending", 500: "Server Internal Error", 503: "Service Unavailable",
}  # fmt: skip


class SipParseError(ValueError):
    """A message that cannot be processed; `status` is the answer a request gets (RFC 3261 §8.2).

    `detail` quotes the offending input: it goes back to the sender in the
    Warning header, never into our logs (it may hold a caller's number).
    """

    def __init__(self, reason: str, status: int = 400, detail: str = ""):
        super().__init__(f"{reason} ({detail})" if detail else reason)
        self.reason = reason
        self.status = status


def parse(data: bytes) -> Message:
    """One complete message (a datagram, or a frame cut by StreamFramer)."""
    if len(data) > MAX_MESSAGE:
        raise SipParseError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE}", 413)
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise SipParseError("no empty line after the headers")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError(f"headers are not UTF-8 (byte {exc.start})") from None
    lines = _unfold(text.split("\r\n"))
    if len(lines) > MAX_HEADERS + 1:
        raise SipParseError(f"more than {MAX_HEADERS} header lines", 413)
    message = _start_line(lines[0])
    for number, line in enumerate(lines[1:], start=2):
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not _TOKEN.match(name):
            raise SipParseError(f"line {number}: not a header", detail=repr(line[:40]))
        message.headers.add(COMPACT_FORMS.get(name.lower(), name), value.strip())
    _check(message)
    if len(message.headers.getlist("Content-Length")) > 1:
        raise SipParseError("more than one Content-Length header")  # two framings of one message: refuse both
    length = header_number("Content-Length", message.headers.get("Content-Length"), MAX_MESSAGE, 413)
    if length is not None:
        if length > len(body):
            raise SipParseError(f"Content-Length {length} but only {len(body)} body bytes")
        body = body[:length]
    message.body = body
    return message


def header_number(name: str, value: str | None, maximum: int, too_large: int = 400) -> int | None:
    """A header that is a plain number (Content-Length, Max-Forwards): ASCII digits, at most `maximum`.

    Why not int(): it accepts Unicode digits ('٣' is 3), and with str.isdigit()
    in front it raises on '²'; a 5,000-digit value exceeds Python's conversion
    limit. Each of those escaped the parser as an unhandled exception.
    """
    if value is None:
        return None
    if not _ASCII_DIGITS.fullmatch(value):
        raise SipParseError(f"{name} is not a number", detail=repr(value[:20]))
    if len(value) > MAX_DIGITS or int(value) > maximum:
        raise SipParseError(f"{name} is larger than {maximum}", too_large, repr(value[:20]))
    return int(value)


def _unfold(lines: list[str]) -> list[str]:
    """Joins continuation lines (starting with a space or tab) to the header before them."""
    out: list[str] = []
    for line in lines:
        if line[:1] in (" ", "\t") and len(out) > 1:
            out[-1] += " " + line.strip()
        elif line:
            out.append(line)
    if not out:
        raise SipParseError("empty message")
    return out


def _start_line(line: str) -> Message:
    if match := _REQUEST_LINE.match(line):
        try:
            uri = URI.parse(match.group(2))
        except ValueError:
            raise SipParseError("Request-URI is not a SIP or tel URI", 416, repr(match.group(2)[:60])) from None
        return Request(match.group(1).upper(), uri)
    if match := _STATUS_LINE.match(line):
        return Response(int(match.group(1)), match.group(2))
    raise SipParseError("first line is neither a request nor a status line", detail=repr(line[:40]))


def _check(message: Message) -> None:
    """The headers every transaction depends on, parsed once so later code can trust them."""
    for name in _REQUIRED:
        if message.headers.get(name) is None:
            raise SipParseError(f"missing {name} header")
    for name in _ASCII_ONLY:
        if not all(value.isascii() for value in message.headers.getlist(name)):
            raise SipParseError(f"{name} header is not ASCII")
    try:
        vias = message.via
        message.from_address, message.to_address  # noqa: B018 - parse, raising on bad syntax
        cseq = message.cseq
    except (ValueError, IndexError, KeyError) as exc:
        raise SipParseError("malformed header", detail=str(exc)) from None
    if not vias:
        raise SipParseError("empty Via header")
    if isinstance(message, Request):
        if cseq.method != message.method:
            raise SipParseError(f"CSeq method {cseq.method} does not match {message.method}")
        header_number("Max-Forwards", message.headers.get("Max-Forwards"), MAX_FORWARDS)
    if not 0 <= cseq.sequence < 2**31:
        raise SipParseError("CSeq number out of range")


class StreamFramer:
    """Cuts a TCP byte stream into messages by Content-Length (mandatory on streams, §18.3)."""

    def __init__(self, limit: int = MAX_MESSAGE):
        self.limit = limit
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer.extend(data)
        frames: list[bytes] = []
        while True:
            while self._buffer[:2] == b"\r\n":  # keep-alive CRLFs between messages (RFC 5626 §3.5.1)
                del self._buffer[:2]
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > self.limit:
                    raise SipParseError(f"no end of headers within {self.limit} bytes", 413)
                return frames
            match = re.search(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*(.*?)[ \t]*\r?$", bytes(self._buffer[:end]))
            if match is None:
                raise SipParseError("message on a stream transport without Content-Length")
            length = header_number("Content-Length", match.group(1).decode("latin-1"), self.limit, 413)
            assert length is not None
            total = end + 4 + length
            if total > self.limit:
                raise SipParseError(f"message of {total} bytes exceeds {self.limit}", 413)
            if len(self._buffer) < total:
                return frames
            frames.append(bytes(self._buffer[:total]))
            del self._buffer[:total]


def new_tag() -> str:
    return secrets.token_hex(6)


def new_branch() -> str:
    return BRANCH_MAGIC + secrets.token_hex(8)


def response(request: Request, code: int, to_tag: str | None = None, body: bytes = b"",
             content_type: str | None = None, headers: Iterable[tuple[str, str]] = ()) -> Response:  # fmt: skip
    """A response echoing the request's Via, From, To (with our tag), Call-ID and CSeq (§8.2.6)."""
    answer = Response(code, REASONS.get(code, "Unknown"), body)
    for name in ("Via", "From", "To", "Call-ID", "CSeq", "Record-Route"):
        for value in request.headers.getlist(name):
            answer.headers.add(name, value)
    if to_tag and code != 100:
        to = request.to_address
        if "tag" not in to.parameters:
            answer.to_address = Address(to.uri, to.name, to.parameters.replace(tag=to_tag))
    answer.headers.add("Server", SERVER)
    for name, value in headers:
        answer.headers.add(name, value)
    if content_type:
        answer.headers.add("Content-Type", content_type)
    answer.headers.add("Content-Length", str(len(body)))
    return answer


def transaction_key(message: Message) -> tuple[str, str, str]:
    """RFC 3261 §17.2.3: top Via branch and sent-by, and the method (ACK and CANCEL matched separately)."""
    via: Via = message.via[0]
    branch = str(via.parameters.get("branch") or "")
    method = message.cseq.method if isinstance(message, Response) else message.method
    return branch, f"{via.host}:{via.port or 5060}", method
