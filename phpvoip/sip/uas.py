"""Stateless request checks a UAS makes before it acts (RFC 3261 §8.2).

Pure functions: a request (or a `ParseError` and the bytes it came from) in, the
response to send out, or None when the request passes. Whoever calls them owns the
transport; nothing here sends.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable

from phpvoip.sip.errors import ParseError
from phpvoip.sip.headers import canonical_key, parse_name_addr, parse_via_list, split_commas
from phpvoip.sip.message import Request, Response
from phpvoip.sip.uri import URI

__all__ = [
    "KNOWN_METHODS",
    "METHOD_ORDER",
    "SCHEMES",
    "accepts",
    "allow_value",
    "check_request",
    "error_response",
    "is_local_uri",
    "reason_phrase",
    "request_tag",
    "stateless_tag",
]

# Methods of RFC 3261 and of the extensions a softswitch meets (3262, 3265/6665,
# 3311, 3428, 3515, 3903, 6086). Anything else is "not recognised": 501 (§21.5.2).
METHOD_ORDER = (
    "INVITE",
    "ACK",
    "CANCEL",
    "BYE",
    "OPTIONS",
    "REGISTER",
    "PRACK",
    "UPDATE",
    "INFO",
    "SUBSCRIBE",
    "NOTIFY",
    "REFER",
    "MESSAGE",
    "PUBLISH",
)
KNOWN_METHODS = frozenset(METHOD_ORDER)
# URI schemes whose Request-URIs we can act on; tel (RFC 3966) is what trunks send.
SCHEMES = frozenset(("sip", "sips", "tel"))

# §8.2.7: a stateless UAS "MUST generate To tags in a manner that will generate the
# same tag for the same request consistently"; a keyed hash does that, and the
# per-process key keeps the tags unguessable (§19.3).
_TAG_KEY = os.urandom(16)
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_FOLD = re.compile(r"\r\n[ \t]+")
_MAX_REASON = 120
_ANSWERABLE = frozenset((400, 501, 505, 513))


def stateless_tag(*parts: str) -> str:
    """A To tag derived from the identifiers of a request (§8.2.7, §19.3), so a
    retransmission of the same request gets the same tag back."""
    data = "\x00".join(parts).encode("utf-8", "surrogateescape")
    return hashlib.blake2s(data, key=_TAG_KEY, digest_size=8).hexdigest()


def request_tag(request: Request) -> str:
    """The stateless To tag for `request` (§8.2.7)."""
    via = request.top_via
    from_tag = request.from_.tag or ""
    branch = (via.branch or str(via)) if via is not None else ""
    return stateless_tag(request.call_id, from_tag, branch, str(request.cseq.seq), request.method)


def allow_value(methods: Iterable[str]) -> str:
    """The Allow header for `methods`, in the conventional order."""
    wanted = set(methods)
    ordered = [m for m in METHOD_ORDER if m in wanted]
    ordered += sorted(wanted - KNOWN_METHODS)
    return ", ".join(ordered)


def check_request(
    request: Request,
    *,
    allowed_methods: Iterable[str],
    supported: Iterable[str] = (),
    schemes: Iterable[str] = SCHEMES,
    known_methods: Iterable[str] = KNOWN_METHODS,
    local: bool = False,
    to_tag: str | None = None,
) -> Response | None:
    """The response §8.2 says to refuse `request` with, or None when it passes.

    `local` says the request is addressed to this element itself (it is the
    endpoint, not a hop), which exempts it from the Max-Forwards check. `to_tag`
    defaults to a stateless tag (§8.2.7). ACK is never answered: for an ACK this
    returns None whatever it holds.
    """
    method = request.method
    if method == "ACK":
        return None
    allowed = frozenset(allowed_methods)
    tag = to_tag if to_tag is not None else request_tag(request)

    # §8.2.1: a method the UAS does not recognise gets 501 (§21.5.2); one it knows
    # but does not allow gets 405 "and MUST also add an Allow header field".
    if method not in known_methods and method not in allowed:
        response = request.response(501, None, tag)
        response.add("Allow", allow_value(allowed))
        return response
    if method not in allowed:
        response = request.response(405, None, tag)
        response.add("Allow", allow_value(allowed))
        return response

    # §8.2.2.1: "If the Request-URI uses a scheme not supported by the UAS, it
    # SHOULD reject the request with a 416 (Unsupported URI Scheme) response."
    if request.uri.scheme not in frozenset(schemes):
        return request.response(416, None, tag)

    # §8.2.2.3: an option tag in Require the UAS does not understand → 420 with an
    # Unsupported header listing them. Require "MUST NOT be used in a SIP CANCEL
    # request, or in an ACK request sent for a non-2xx response. These header
    # fields MUST be ignored if they are present in these requests."
    if method != "CANCEL":
        known = frozenset(supported)
        unknown = []
        for option in request.get_all("Require"):
            if option and option not in known and option not in unknown:
                unknown.append(option)
        if unknown:
            response = request.response(420, None, tag)
            response.add("Unsupported", ", ".join(unknown))
            return response

    # §16.3 step 3: "If the request's Max-Forwards is zero ... the element MUST NOT
    # forward the request" and answers 483. An endpoint does not forward, and RFC
    # 4475 §3.3.11 (zeromf) has it "process the request as if the Max-Forwards
    # field value were still positive".
    if not local and request.max_forwards == 0:
        return request.response(483, None, tag)
    return None


def accepts(request: Request, media_type: str) -> bool:
    """Whether a response body of `media_type` is acceptable to the sender of
    `request` (§20.1: no Accept header means application/sdp for INVITE;
    ``type/*`` and ``*/*`` ranges count, RFC 2616 §14.1). An empty Accept
    accepts no body at all."""
    if not request.has("Accept"):
        return True
    wanted = media_type.lower()
    family = wanted.split("/", 1)[0] + "/*"
    for value in request.get_all("Accept"):
        item = value.split(";", 1)[0].strip().lower()
        if item in (wanted, family, "*/*"):
            return True
    return False


def is_local_uri(uri: URI, hosts: Iterable[str]) -> bool:
    """Whether a sip/sips URI names one of `hosts` (compared without case or
    IPv6 brackets)."""
    if not uri.is_sip:
        return False
    host = uri.host.lower().strip("[]")
    return any(host == h.lower().strip("[]") for h in hosts)


def reason_phrase(text: str) -> str:
    """`text` made into a reason phrase: one line of printable ASCII, first letter
    capitalised, at most 120 characters."""
    line = _UNPRINTABLE.sub(" ", text).strip()
    if len(line) > _MAX_REASON:
        line = line[: _MAX_REASON - 3].rstrip() + "..."
    if not line:
        return "Bad Request"
    return line[0].upper() + line[1:]


def _raw_head(data: bytes) -> tuple[str | None, list[tuple[str, str]]]:
    """Start line and ``(name, value)`` header lines of `data`, read leniently:
    lines without a colon are skipped rather than fatal."""
    start = 0
    while data.startswith(b"\r\n", start):
        start += 2
    end = data.find(b"\r\n\r\n", start)
    head = data[start:] if end < 0 else data[start:end]
    text = head.decode("utf-8", "surrogateescape")
    if "\r\n " in text or "\r\n\t" in text:
        text = _FOLD.sub(" ", text)
    lines = text.split("\r\n")
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers.append((name.strip(" \t"), value.strip(" \t")))
    return (lines[0] if lines[0] else None), headers


def error_response(error: ParseError, data: bytes | None = None) -> Response | None:
    """The 400/505/513 answer to a message that could not be parsed, or None when it
    cannot be answered: it is a response, an ACK, or its Via or CSeq cannot be read
    (a client matches a response by the Via branch and the CSeq method, §17.1.3).
    From, To and Call-ID are echoed when present (§8.2.6.2); RFC 4475 §3.3.1
    (insuf) asks for a 400 to a request that lacks them.

    Header lines come from `data` when it is given (read past the fault), else from
    what the parser read before it (`error.headers`). Each of the five is parsed
    on its own where it can be and copied as received where it cannot: a
    response's Via "MUST equal the Via header field values in the request"
    (§8.2.6.2), broken or not. The reason phrase is the error's reason.
    """
    if data is not None:
        start_line, headers = _raw_head(data)
    else:
        start_line, headers = error.start_line, error.headers
    if not start_line or start_line[:4].upper() == "SIP/":
        return None
    method = start_line.split(" ", 1)[0]
    if method == "ACK":
        return None  # §17.2.1: ACK is never answered; a broken one neither
    vias: list[str] = []
    singles: dict[str, str] = {}
    for name, value in headers:
        key = canonical_key(name)
        if _CONTROL.search(value):
            continue  # a value we cannot echo without breaking our own framing
        if key == "via":
            vias.extend(v.strip(" \t") for v in split_commas(value) if v.strip(" \t"))
        elif key in ("from", "to", "call-id", "cseq") and value:
            singles.setdefault(key, value)
    if not vias or "cseq" not in singles:
        return None
    status = error.status if error.status in _ANSWERABLE else 400
    response = Response(status, reason_phrase(error.reason))
    via_values: list[object] = []
    for text in vias:
        try:
            via_values.extend(parse_via_list(text))
        except ParseError:
            via_values.append(text)
    for value in via_values:
        response.add("Via", value if isinstance(value, str) else [value])
    if "from" in singles:
        response.add("From", singles["from"])
    to_text = singles.get("to")
    if to_text is not None:
        try:
            to = parse_name_addr(to_text)
        except ParseError:
            response.add("To", to_text)  # no tag can be added safely to what we cannot read
        else:
            if to.tag is None:
                to.tag = stateless_tag(
                    singles.get("call-id", ""), singles.get("from", ""), vias[0], singles["cseq"]
                )
            response.add("To", to)
    if "call-id" in singles:
        response.add("Call-ID", singles["call-id"])
    response.add("CSeq", singles["cseq"])
    return response
