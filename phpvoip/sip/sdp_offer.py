"""The SDP offer/answer model (RFC 3264) for endpoints the switch terminates itself.

Sans-IO: descriptions in, descriptions out. `make_offer` writes an offer,
`answer_offer` answers one (or raises NotAcceptable: 488), `negotiated` reads
what an offer and its answer agreed on, stream by stream.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from phpvoip.sip.sdp import (
    Codec,
    Media,
    SessionDescription,
    _check_direction,
    _inet,
    answer_direction,
)

__all__ = ["Negotiated", "NotAcceptable", "answer_offer", "make_offer", "negotiated"]

# Codecs that travel beside a real one and are never "the" codec of a stream:
# RFC 4733 events and RFC 3389 comfort noise.
_AUXILIARY = frozenset(("telephone-event", "cn"))
_PROTO = "RTP/AVP"  # all we speak: plain RTP (no SRTP, no AVPF feedback)


class NotAcceptable(Exception):
    """The SIP is fine but no offered stream is usable (no common codec, unknown
    transport only): answer ``488 Not Acceptable Here`` (RFC 3261 §13.3.1.3)."""

    status = 488

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Negotiated:
    """What one stream's offer and answer agreed on.

    `codec`: the first codec of the answer that is not telephone-event or CN (the one
    both sides send with, under the answer's payload type). `telephone_event`: the
    answer's telephone-event payload type at the codec's clock rate, or None.
    `ptime`: the answer's a=ptime, else the offer's, else None. `offered_direction`
    and `answered_direction`: each side's direction attribute as it wrote it."""

    codec: Codec
    telephone_event: int | None
    ptime: int | None
    offered_direction: str
    answered_direction: str


def _origin(username: str, session_id: int | None, version: int, address: str) -> list[str]:
    if session_id is None:
        session_id = secrets.randbelow(2**31)  # RFC 4566 §5.2 only asks for uniqueness
    return ["v=0", f"o={username} {session_id} {version} {_inet(address)}", f"s={username}",
            f"c={_inet(address)}", "t=0 0"]


def _audio(port: int, codecs: Sequence[Codec], ptime: int | None, direction: str) -> Media:
    lines = [c.rtpmap_line() for c in codecs]
    lines += [f"a=fmtp:{c.payload_type} {c.fmtp}" for c in codecs if c.fmtp is not None]
    if ptime:
        lines.append(f"a=ptime:{ptime}")
    lines.append("a=" + direction)
    return Media("audio", port, _PROTO, [str(c.payload_type) for c in codecs], lines)


def make_offer(address: str, ports: Sequence[int], codecs: Sequence[Codec], *, ptime: int | None = 20,
               direction: str = "sendrecv", session_id: int | None = None, version: int = 1,
               username: str = "phpvoip") -> SessionDescription:
    """An offer of one RTP/AVP audio stream per port in `ports`, each listing `codecs`
    in that order of preference (telephone-event is a Codec with fmtp "0-16"). Every
    codec gets an rtpmap line, static payload types too. `session_id` None draws a
    random one; a later offer in the same session keeps it and bumps `version`."""
    _check_direction(direction)
    if not codecs:
        raise ValueError("an offer needs at least one codec")
    media = [_audio(port, codecs, ptime, direction) for port in ports]
    return SessionDescription(_origin(username, session_id, version, address), media)


def _common(offered: Media, supported: Sequence[Codec]) -> list[Codec]:
    """The offered codecs we support, in the offerer's order, under its payload types;
    telephone-event and CN only beside a real codec of the same clock rate."""
    ours = [c for c in offered.rtpmap.values() if any(c.same_format(s) for s in supported)]
    main = [c for c in ours if c.name.lower() not in _AUXILIARY]
    rates = {c.clock_rate for c in main}
    return [c for c in ours if c.name.lower() not in _AUXILIARY or c.clock_rate in rates] if main else []


def _rejected(offered: Media) -> Media:
    """RFC 3264 §6: a declined stream is answered with port 0 and the offer's formats."""
    return Media(offered.kind, 0, offered.proto, list(offered.formats), [])


def answer_offer(offer: SessionDescription, supported: Sequence[Codec], address: str, ports: Sequence[int],
                 *, direction: str | None = None, session_id: int | None = None, version: int = 1,
                 username: str = "phpvoip") -> SessionDescription:
    """The answer to `offer` (RFC 3264 §6): one m= line per offered one, in the same order.

    An audio RTP/AVP stream with a non-zero port and at least one codec in `supported`
    (matched by name, clock rate and channels, so a dynamic payload type such as
    telephone-event at 96 or 101 is found) is accepted on the next port of `ports`: it
    lists the common codecs in the offerer's order under the offerer's payload types,
    with the offer's fmtp, echoes its ptime, and answers its direction by
    answer_direction(offered, `direction` or sendrecv). Every other stream (other media,
    other transport, no common codec, port 0, no port left) is declined with port 0.
    Raise NotAcceptable if streams were offered live and none is accepted. An offer with
    no live stream (none at all, or all at port 0: RFC 3264 §5, §8.2) is not refused:
    it is answered in kind, with no live stream either. A later answer in the same
    session passes the same `session_id` and a higher `version`."""
    local = direction or "sendrecv"
    _check_direction(local)
    free = list(ports)
    media: list[Media] = []
    reasons: list[str] = []
    for m in offer.media:
        if m.port == 0:  # declined by the offerer itself: nothing for us to refuse
            media.append(_rejected(m))
            continue
        if m.kind != "audio":
            reasons.append(f"no audio stream (offered {m.kind})")
        elif m.proto != _PROTO:
            reasons.append(f"unsupported transport {m.proto}")
        else:
            codecs = _common(m, supported)
            if not codecs:
                known = [f"{c.name}/{c.clock_rate}" for c in m.rtpmap.values()]
                offered = ", ".join(known[:6]) + (", ..." if len(known) > 6 else "") or "none known"
                reasons.append(f"no common codec (offered {offered})")
            elif not free:
                reasons.append("no port left for the audio stream")
            else:
                media.append(_audio(free.pop(0), codecs, m.ptime, answer_direction(m.direction, local)))
                continue
        media.append(_rejected(m))
    if reasons and not any(m.port for m in media):
        # The most telling reason: a codec mismatch beats a transport, beats a media kind.
        order = ("no common codec", "unsupported transport", "no port left", "no audio")
        reasons.sort(key=lambda r: next(i for i, p in enumerate(order) if r.startswith(p)))
        raise NotAcceptable(reasons[0])
    return SessionDescription(_origin(username, session_id, version, address), media)


def negotiated(offer: SessionDescription, answer: SessionDescription) -> list[Negotiated | None]:
    """What each offered stream agreed on (one entry per offered m= line): a Negotiated,
    or None where the stream was declined (port 0 on either side, missing from the
    answer, not RTP, or no codec but telephone-event/CN in the answer)."""
    agreed: list[Negotiated | None] = []
    for i, offered in enumerate(offer.media):
        answered = answer.media[i] if i < len(answer.media) else None
        if answered is None or offered.port == 0 or answered.port == 0 or not answered.is_rtp:
            agreed.append(None)
            continue
        codecs = list(answered.rtpmap.values())
        main = next((c for c in codecs if c.name.lower() not in _AUXILIARY), None)
        if main is None:
            agreed.append(None)
            continue
        event = next((c.payload_type for c in codecs
                      if c.is_telephone_event and c.clock_rate == main.clock_rate), None)
        agreed.append(Negotiated(main, event, answered.ptime or offered.ptime,
                                 offered.direction, answered.direction))
    return agreed
