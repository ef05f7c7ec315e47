"""SDP (RFC 4566) and offer/answer (RFC 3264): tables of bodies in, answers and fields out."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phpvoip.sip import sdp as sdp_module
from phpvoip.sip.sdp import (
    DIRECTIONS,
    Codec,
    Media,
    SdpError,
    SessionDescription,
    answer_direction,
    bump_version,
    continue_origin,
    hold_offer,
    parse_sdp,
    rejecting_answer,
    rewrite_media,
    with_direction,
)
from phpvoip.sip.sdp_offer import Negotiated, NotAcceptable, answer_offer, make_offer, negotiated


def body(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode()


PCMU, PCMA = Codec(0, "PCMU", 8000), Codec(8, "PCMA", 8000)
EVENTS = Codec(101, "telephone-event", 8000, fmtp="0-16")
OURS = [PCMU, PCMA, EVENTS]

LINPHONE = body(
    "v=0", "o=alice 3410 1947 IN IP4 192.168.1.10", "s=Talk", "c=IN IP4 192.168.1.10", "t=0 0",
    "a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics",
    "m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100",
    "a=rtpmap:96 opus/48000/2", "a=fmtp:96 useinbandfec=1", "a=rtpmap:97 speex/16000", "a=fmtp:97 vbr=on",
    "a=rtpmap:98 speex/8000", "a=fmtp:98 vbr=on", "a=fmtp:18 annexb=yes",
    "a=rtpmap:101 telephone-event/48000", "a=rtpmap:99 telephone-event/16000",
    "a=rtpmap:100 telephone-event/8000", "a=rtcp-fb:* trr-int 1000", "a=rtcp-fb:* ccm tmmbr",
)
BARESIP = body(
    "v=0", "o=- 1614592712 1614592713 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
    "a=tool:baresip 1.0.0", "a=ice-lite",
    "m=audio 10000 RTP/AVP 8 0 96", "b=AS:64", "a=rtpmap:8 PCMA/8000", "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:96 telephone-event/8000", "a=fmtp:96 0-15", "a=rtcp:10001", "a=rtcp-mux",
    "a=ice-ufrag:Xh3k", "a=ice-pwd:aLongPasswordOf22chars",
    "a=candidate:1 1 UDP 2113937151 127.0.0.1 10000 typ host",
    "a=end-of-candidates", "a=ptime:20", "a=sendrecv", "a=label:1", "a=ssrc:3405927744 cname:a@b",
)
BARESIP_CAPTURED = body(  # what baresip 1.0.0 sent here (g711 module only), byte for byte
    "v=0", "o=- 2703820288 78863432 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
    "a=tool:baresip 1.0.0", "m=audio 3066 RTP/AVP 0 8 101", "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15", "a=sendrecv", "a=label:1", "a=rtcp-rsize",
    "a=ssrc:2313290272 cname:sip:probe@127.0.0.1:46071", "a=minptime:20", "a=ptime:20",
)
SIPP = body(  # sipp -sn uac, as captured
    "v=0", "o=user1 53655765 2353687637 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
    "m=audio 6000 RTP/AVP 0", "a=rtpmap:0 PCMU/8000",
)
AUDIO_VIDEO_V6 = body(
    "v=0", "o=bob 1 1 IN IP6 ::1", "s=-", "t=0 0", "a=sendonly",
    "m=audio 49170/2 RTP/AVP 8", "c=IN IP6 ::1", "b=TIAS:64000", "a=recvonly",
    "m=video 51372 RTP/AVP 31 32", "c=IN IP6 2001:db8::2", "a=rtpmap:31 H261/90000",
    "m=audio 0 RTP/AVP 0",
)
REAL = {"linphone": LINPHONE, "baresip": BARESIP, "baresip_captured": BARESIP_CAPTURED, "sipp": SIPP,
        "audio_video_v6": AUDIO_VIDEO_V6}


@pytest.mark.parametrize("name", sorted(REAL))
def test_round_trip_is_byte_for_byte(name: str) -> None:
    """An untouched body goes back out exactly as it came in."""
    assert bytes(parse_sdp(REAL[name])) == REAL[name]


# body, stream index, (connection, direction, payload types, ptime, rtcp_port, port_count)
FIELDS = [
    (LINPHONE, 0, ("192.168.1.10", "sendrecv", [96, 97, 98, 0, 8, 18, 101, 99, 100], None, 7079, 1)),
    (BARESIP, 0, ("127.0.0.1", "sendrecv", [8, 0, 96], 20, 10001, 1)),
    (SIPP, 0, ("127.0.0.1", "sendrecv", [0], None, 6001, 1)),
    (AUDIO_VIDEO_V6, 0, ("::1", "recvonly", [8], None, 49171, 2)),  # media level beats session level
    (AUDIO_VIDEO_V6, 1, ("2001:db8::2", "sendonly", [31], None, 51373, 1)),  # 32 has no rtpmap
    (AUDIO_VIDEO_V6, 2, (None, "sendonly", [0], None, 1, 1)),
]


@pytest.mark.parametrize(("raw", "index", "expected"), FIELDS)
def test_media_fields(raw: bytes, index: int, expected: tuple) -> None:
    """Media helpers read address, direction (falling back to the session level), codecs,
    ptime, RTCP port (a=rtcp or port + 1) and port count from the lines."""
    m = parse_sdp(raw).media[index]
    got = (m.connection, m.direction, list(m.rtpmap), m.ptime, m.rtcp_port, m.port_count)
    assert got == expected


def test_rtpmap_static_dynamic_and_fmtp() -> None:
    """Static payload types need no rtpmap; dynamic ones carry their fmtp; names keep their case."""
    m = parse_sdp(LINPHONE).media[0]
    assert m.rtpmap[0] == PCMU and m.rtpmap[8] == PCMA
    assert m.rtpmap[18] == Codec(18, "G729", 8000, fmtp="annexb=yes")
    assert m.rtpmap[96] == Codec(96, "opus", 48000, 2, "useinbandfec=1")
    assert m.fmtp == {96: "useinbandfec=1", 97: "vbr=on", 98: "vbr=on", 18: "annexb=yes"}
    assert Codec(0, "pcmu", 8000).same_format(PCMU) and not Codec(0, "PCMU", 16000).same_format(PCMU)
    assert m.rtpmap[100].is_telephone_event and not m.rtpmap[0].is_telephone_event


BASE = ["v=0", "o=a 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0"]
MALFORMED = [
    (b"", "must start with v="),
    (body("o=a 1 1 IN IP4 h", "v=0"), "must start with v="),
    (body("v=1", *BASE[1:]), "unsupported SDP version"),
    (body(*BASE, "garbage"), "bad SDP line 'garbage'"),
    (body(*BASE, "A=x"), "bad SDP line"),
    (body("v=0", "s=-", "c=IN IP4 h", "t=0 0"), "missing o= line"),
    (body("v=0", "o=a 1 1 IN IP4 h", "c=IN IP4 h", "t=0 0"), "missing s= line"),
    (body("v=0", "o=a 1 1 IN IP4 h", "s=-", "c=IN IP4 h"), "missing t= line"),
    (body("v=0", "o=a 1 IN IP4 h", "s=-", "t=0 0"), "bad origin line"),
    (body("v=0", "o=a 1 1 IN IP4 h", "s=-", "t=0 0", "m=audio 4000 RTP/AVP 0"),
     "missing c= line for m=audio"),
    (body(*BASE[:3], "c=IN IP4", "t=0 0"), "bad connection line"),
    (body(*BASE, "m=audio 4000 RTP/AVP"), "bad media line"),
    (body(*BASE, "m=audio 70000 RTP/AVP 0"), "bad media line"),
    (body(*BASE, "m=audio x RTP/AVP 0"), "bad media line"),
    (body(*BASE, "m=audio 4000/0 RTP/AVP 0"), "bad media line"),
    (body(*BASE, "m=audio 4000 RTP/AVP PCMU"), "bad media line"),
    (body(*BASE, "m=audio 4000 RTP/AVP 128"), "bad media line"),
    ("v=0\r\nm=audio \u00b2 RTP/AVP 0\r\n".encode(), "bad media line"),
    (body(*BASE, "m=audio 4000 RTP/AVP 0", "t=0 0"), "t= line inside a media section"),
]


@pytest.mark.parametrize(("raw", "reason"), MALFORMED)
def test_malformed_bodies_raise_sdp_error_with_reason(raw: bytes, reason: str) -> None:
    """Each malformed body is refused with a reason for '400 Bad SDP: <reason>'; SdpError is a ValueError."""
    with pytest.raises(SdpError) as caught:
        parse_sdp(raw)
    assert reason in caught.value.reason
    assert isinstance(caught.value, ValueError) and caught.value.status == 400


def test_c_line_needed_only_for_live_streams() -> None:
    """Without a session-level c=, a rejected (port 0) stream needs none; live ones have their own."""
    raw = body("v=0", "o=a 1 1 IN IP4 h", "s=-", "t=0 0", "m=audio 4000 RTP/AVP 0", "c=IN IP4 10.0.0.1",
               "m=video 0 RTP/AVP 31")
    parsed = parse_sdp(raw)
    assert parsed.connection is None and parsed.media[0].connection == "10.0.0.1"
    assert parsed.media[1].connection is None


# -- answers --------------------------------------------------------------------------------

ANSWER_HEAD = ["v=0", "o=phpvoip 7 1 IN IP4 10.0.0.5", "s=phpvoip", "c=IN IP4 10.0.0.5", "t=0 0"]
ANSWERS = [
    ("linphone", LINPHONE, OURS, [20000], body(
        *ANSWER_HEAD, "m=audio 20000 RTP/AVP 0 8 100", "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:100 telephone-event/8000", "a=sendrecv")),
    ("baresip: offerer's order and its pt 96 for telephone-event", BARESIP, OURS, [20000], body(
        *ANSWER_HEAD, "m=audio 20000 RTP/AVP 8 0 96", "a=rtpmap:8 PCMA/8000", "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:96 telephone-event/8000", "a=fmtp:96 0-15", "a=ptime:20", "a=sendrecv")),
    ("baresip, as captured", BARESIP_CAPTURED, OURS, [20000], body(
        *ANSWER_HEAD, "m=audio 20000 RTP/AVP 0 8 101", "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15", "a=ptime:20", "a=sendrecv")),
    ("sipp", SIPP, OURS, [20000], body(
        *ANSWER_HEAD, "m=audio 20000 RTP/AVP 0", "a=rtpmap:0 PCMU/8000", "a=sendrecv")),
    ("audio+video+rejected", AUDIO_VIDEO_V6, OURS, [20000, 20002], body(
        *ANSWER_HEAD, "m=audio 20000 RTP/AVP 8", "a=rtpmap:8 PCMA/8000", "a=sendonly",
        "m=video 0 RTP/AVP 31 32", "m=audio 0 RTP/AVP 0")),
    ("two audio streams, one port", body(*BASE, "m=audio 4000 RTP/AVP 0", "m=audio 4002 RTP/AVP 8"),
     OURS, [20000], body(*ANSWER_HEAD, "m=audio 20000 RTP/AVP 0", "a=rtpmap:0 PCMU/8000", "a=sendrecv",
                         "m=audio 0 RTP/AVP 8")),
    ("SRTP and G729 streams declined", body(*BASE, "m=audio 4000 RTP/SAVP 0", "m=audio 4002 RTP/AVP 18",
                                            "m=audio 4004 RTP/AVP 8 0"),
     OURS, [20000], body(*ANSWER_HEAD, "m=audio 0 RTP/SAVP 0", "m=audio 0 RTP/AVP 18",
                         "m=audio 20000 RTP/AVP 8 0", "a=rtpmap:8 PCMA/8000", "a=rtpmap:0 PCMU/8000",
                         "a=sendrecv")),
    ("telephone-event not supported is dropped", BARESIP, [PCMA], [20000], body(
        *ANSWER_HEAD, "m=audio 20000 RTP/AVP 8", "a=rtpmap:8 PCMA/8000", "a=ptime:20", "a=sendrecv")),
]


@pytest.mark.parametrize(("name", "offer", "supported", "ports", "expected"), ANSWERS,
                         ids=[a[0] for a in ANSWERS])
def test_answer_offer(name: str, offer: bytes, supported: list[Codec], ports: list[int],
                      expected: bytes) -> None:
    """One m= per offered m= in order; common codecs in the offerer's order and numbering;
    declined streams at port 0 with the offered formats; ptime echoed; direction answered."""
    answer = answer_offer(parse_sdp(offer), supported, "10.0.0.5", ports, session_id=7)
    assert bytes(answer) == expected
    assert bytes(parse_sdp(bytes(answer))) == expected


@pytest.mark.parametrize(("offer_pt", "our_pt"), [(101, 96), (96, 101), (101, 101)])
def test_dynamic_telephone_event_takes_the_offerers_number(offer_pt: int, our_pt: int) -> None:
    """telephone-event is matched by name and rate; the answer and negotiated() use the offer's pt."""
    offer = parse_sdp(body(*BASE, f"m=audio 4000 RTP/AVP 0 {offer_pt}",
                           f"a=rtpmap:{offer_pt} telephone-event/8000", f"a=fmtp:{offer_pt} 0-16"))
    answer = answer_offer(offer, [PCMU, Codec(our_pt, "telephone-event", 8000, fmtp="0-16")], "h", [5000])
    assert answer.media[0].formats == ["0", str(offer_pt)]
    assert negotiated(offer, answer) == [Negotiated(PCMU, offer_pt, None, "sendrecv", "sendrecv")]


NOT_ACCEPTABLE = [
    (body(*BASE, "m=audio 4000 RTP/AVP 18", "a=rtpmap:18 G729/8000"), "no common codec (offered G729/8000)"),
    (body(*BASE, "m=audio 4000 RTP/AVP 101", "a=rtpmap:101 telephone-event/8000"), "no common codec"),
    (body(*BASE, "m=audio 4000 RTP/AVP 96"), "no common codec (offered none known)"),
    (body(*BASE, "m=audio 4000 RTP/AVP 3 4 5 7 9 12 15 18"),
     "no common codec (offered GSM/8000, G723/8000, DVI4/8000, LPC/8000, G722/8000, QCELP/8000, ...)"),
    (body(*BASE, "m=audio 4000 UDP/TLS/RTP/SAVPF 0"), "unsupported transport UDP/TLS/RTP/SAVPF"),
    (body(*BASE, "m=video 4000 RTP/AVP 31"), "no audio stream (offered video)"),
    (body(*BASE, "m=video 4000 RTP/AVP 31", "m=audio 4002 RTP/AVP 18"), "no common codec"),
]


@pytest.mark.parametrize(("offer", "reason"), NOT_ACCEPTABLE)
def test_unusable_media_is_not_acceptable(offer: bytes, reason: str) -> None:
    """Good SDP that no stream of which we can take: NotAcceptable (488) with the most telling reason."""
    with pytest.raises(NotAcceptable) as caught:
        answer_offer(parse_sdp(offer), OURS, "h", [5000])
    assert caught.value.reason.startswith(reason) and caught.value.status == 488


@pytest.mark.parametrize("streams", [[], ["m=audio 0 RTP/AVP 0", "m=video 0 RTP/AVP 31"]])
def test_offer_without_live_streams_is_answered_in_kind(streams: list[str]) -> None:
    """No m= line, or only port 0 ones (RFC 3264 §5, §8.2: streams removed): nothing for us
    to refuse, so the answer mirrors it rather than a 488."""
    answer = answer_offer(parse_sdp(body(*BASE, *streams)), OURS, "10.0.0.5", [5000], session_id=7)
    assert bytes(answer) == body(*ANSWER_HEAD, *streams)


def test_no_ports_is_not_acceptable() -> None:
    """With no port to give, a good offer is still declined, not answered with a made-up port."""
    with pytest.raises(NotAcceptable, match="no port left"):
        answer_offer(parse_sdp(SIPP), OURS, "h", [])


DIRECTION_TABLE = [  # RFC 3264 §6.1, offered x local -> answer
    ("sendrecv", "sendrecv", "sendrecv"), ("sendrecv", "sendonly", "sendonly"),
    ("sendrecv", "recvonly", "recvonly"), ("sendrecv", "inactive", "inactive"),
    ("sendonly", "sendrecv", "recvonly"), ("sendonly", "recvonly", "recvonly"),
    ("sendonly", "sendonly", "inactive"), ("sendonly", "inactive", "inactive"),
    ("recvonly", "sendrecv", "sendonly"), ("recvonly", "sendonly", "sendonly"),
    ("recvonly", "recvonly", "inactive"), ("recvonly", "inactive", "inactive"),
    ("inactive", "sendrecv", "inactive"), ("inactive", "sendonly", "inactive"),
    ("inactive", "recvonly", "inactive"), ("inactive", "inactive", "inactive"),
]


@pytest.mark.parametrize(("offered", "local", "expected"), DIRECTION_TABLE)
def test_answer_direction(offered: str, local: str, expected: str) -> None:
    """We send only if the offerer receives, and receive only if it sends."""
    assert answer_direction(offered, local) == expected


def test_bad_direction_is_a_local_error() -> None:
    """A direction that is not one of the four is our mistake: ValueError, not SdpError."""
    with pytest.raises(ValueError, match="direction must be"):
        answer_direction("hold")
    with pytest.raises(ValueError, match="direction must be"):
        hold_offer(parse_sdp(SIPP), "onhold")


@pytest.mark.parametrize(("attribute", "answered"), [
    ("a=sendonly", "a=recvonly"), ("a=inactive", "a=inactive"), ("a=recvonly", "a=sendonly"),
    ("a=sendrecv", "a=sendrecv"),
])
def test_hold_and_unhold_answers(attribute: str, answered: str) -> None:
    """A hold re-offer (sendonly or inactive) is answered recvonly/inactive; unhold sendrecv again."""
    offer = parse_sdp(body(*BASE, "m=audio 4000 RTP/AVP 0", attribute))
    answer = answer_offer(offer, OURS, "h", [5000], session_id=1)
    assert answer.media[0].lines[-1] == answered


def test_session_level_direction_answered_per_stream() -> None:
    """A session-level a=sendonly applies to streams without their own; a media-level one overrides it."""
    offer = parse_sdp(body(*BASE, "a=sendonly", "m=audio 4000 RTP/AVP 0", "m=audio 4002 RTP/AVP 8",
                           "a=sendrecv"))
    answer = answer_offer(offer, OURS, "h", [5000, 5002], direction="sendrecv")
    assert [m.direction for m in answer.media] == ["recvonly", "sendrecv"]


# -- offers, negotiated -------------------------------------------------------------------


def test_make_offer_bytes() -> None:
    """One audio m= per port, rtpmap for every codec, fmtp for telephone-event, ptime and direction."""
    offer = make_offer("::1", [30000, 30002], OURS, session_id=42, version=3, direction="sendonly")
    head = ["v=0", "o=phpvoip 42 3 IN IP6 ::1", "s=phpvoip", "c=IN IP6 ::1", "t=0 0"]
    stream = ["RTP/AVP 0 8 101", "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000",
              "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16", "a=ptime:20", "a=sendonly"]
    assert bytes(offer) == body(*head, "m=audio 30000 " + stream[0], *stream[1:],
                                "m=audio 30002 " + stream[0], *stream[1:])
    assert parse_sdp(bytes(offer)).media[1].rtpmap == {0: PCMU, 8: PCMA, 101: EVENTS}


def test_make_offer_random_session_and_refusals() -> None:
    """Without a session id, one is drawn (numeric); an offer needs a codec and a known direction."""
    origin = make_offer("127.0.0.1", [4000], [PCMU]).origin
    assert origin is not None and origin[1].isdigit() and origin[2] == "1"
    with pytest.raises(ValueError):
        make_offer("127.0.0.1", [4000], [])
    with pytest.raises(ValueError):
        make_offer("127.0.0.1", [4000], [PCMU], direction="both")


def test_offer_answer_between_two_endpoints() -> None:
    """Our offer answered by us elsewhere: both sides read the same codec, event pt and ptime."""
    offer = make_offer("127.0.0.1", [4000], [PCMA, PCMU, EVENTS], session_id=1)
    answer = answer_offer(parse_sdp(bytes(offer)), [PCMU, Codec(96, "telephone-event", 8000)],
                          "127.0.0.1", [5000], direction="recvonly")
    agreed = negotiated(offer, parse_sdp(bytes(answer)))
    assert agreed == [Negotiated(Codec(0, "PCMU", 8000), 101, 20, "sendrecv", "recvonly")]


def test_negotiated_declined_streams_are_none() -> None:
    """negotiated() has one entry per offered stream; declined or missing ones are None."""
    offer = parse_sdp(AUDIO_VIDEO_V6)
    answer = answer_offer(offer, OURS, "h", [5000])
    assert [n is None for n in negotiated(offer, answer)] == [False, True, True]
    assert negotiated(offer, SessionDescription(["v=0"], [])) == [None, None, None]
    events_only = SessionDescription(["v=0"], [Media("audio", 5000, "RTP/AVP", ["101"],
                                                     ["a=rtpmap:101 telephone-event/8000"])])
    assert negotiated(offer, events_only) == [None, None, None]


# -- rewriting ----------------------------------------------------------------------------


def test_rewrite_media_for_a_relay() -> None:
    """c= (session and media) and m= ports point at the relay, a=rtcp follows the new port,
    ICE lines go, rejected streams stay at 0, every other line is kept as it was."""
    rewritten = rewrite_media(parse_sdp(BARESIP), "10.0.0.9", [30000])
    assert bytes(rewritten) == body(
        "v=0", "o=- 1614592712 1614592713 IN IP4 127.0.0.1", "s=-", "c=IN IP4 10.0.0.9", "t=0 0",
        "a=tool:baresip 1.0.0",
        "m=audio 30000 RTP/AVP 8 0 96", "b=AS:64", "a=rtpmap:8 PCMA/8000", "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:96 telephone-event/8000", "a=fmtp:96 0-15", "a=rtcp:30001 IN IP4 10.0.0.9", "a=rtcp-mux",
        "a=ptime:20", "a=sendrecv", "a=label:1", "a=ssrc:3405927744 cname:a@b",
    )


def test_rewrite_media_ipv6_port_zero_and_none() -> None:
    """IPv6 address (a URI host's brackets removed) in every c=; None keeps a port; a port
    for a rejected stream is ignored; the original is not modified."""
    original = parse_sdp(AUDIO_VIDEO_V6)
    rewritten = rewrite_media(original, "[fd00::7]", [None, 40000, 40002])
    assert bytes(rewritten) == body(
        "v=0", "o=bob 1 1 IN IP6 ::1", "s=-", "t=0 0", "a=sendonly",
        "m=audio 49170/2 RTP/AVP 8", "c=IN IP6 fd00::7", "b=TIAS:64000", "a=recvonly",
        "m=video 40000 RTP/AVP 31 32", "c=IN IP6 fd00::7", "a=rtpmap:31 H261/90000",
        "m=audio 0 RTP/AVP 0",
    )
    assert bytes(original) == AUDIO_VIDEO_V6
    assert rewritten.media[0].direction == "recvonly" and rewritten.media[2].direction == "sendonly"


def test_hold_offer_and_bump_version() -> None:
    """hold_offer sets the direction in every live stream (replacing or adding), unhold is
    hold_offer(..., 'sendrecv'); bump_version increments the o= version only."""
    original = parse_sdp(AUDIO_VIDEO_V6)
    held = bump_version(hold_offer(original, "inactive"))
    assert [m.direction for m in held.media] == ["inactive", "inactive", "sendonly"]
    assert held.session[1] == "o=bob 1 2 IN IP6 ::1" and original.session[1] == "o=bob 1 1 IN IP6 ::1"
    sipp_held = hold_offer(parse_sdp(SIPP))
    assert sipp_held.media[0].lines == ["a=rtpmap:0 PCMU/8000", "a=sendonly"]
    assert hold_offer(sipp_held, "sendrecv").media[0].lines == ["a=rtpmap:0 PCMU/8000", "a=sendrecv"]
    odd = parse_sdp(body("v=0", "o=a 1 x IN IP4 h", "s=-", "c=IN IP4 h", "t=0 0"))
    assert bytes(bump_version(odd)) == bytes(odd)


def test_older_helpers_keep_their_behaviour() -> None:
    """with_direction changes only existing attributes (same object back when nothing changes);
    continue_origin keeps the previous origin, version + 1; rejecting_answer reads laxly."""
    assert with_direction(SIPP, "inactive") is SIPP
    assert with_direction(BARESIP, "inactive") == BARESIP.replace(b"a=sendrecv", b"a=inactive")
    assert continue_origin(SIPP, BARESIP).startswith(b"v=0\r\no=- 1614592712 1614592714 IN IP4 127.0.0.1\r\n")
    lax = b"v=0\r\nm=audio 4000 RTP/AVP\r\n"  # no o=, s=, t=, c=, no format: still declined politely
    assert rejecting_answer(lax, "10.0.0.1") == body(
        "v=0", "o=phpvoip 1 1 IN IP4 10.0.0.1", "s=phpvoip", "c=IN IP4 10.0.0.1", "t=0 0",
        "m=audio 0 RTP/AVP 0")
    assert sdp_module.answer_offer is answer_offer and sdp_module.NotAcceptable is NotAcceptable
    with pytest.raises(AttributeError):
        _ = sdp_module.no_such_name


# -- properties ---------------------------------------------------------------------------

LINE_KINDS = st.sampled_from(["v", "o", "s", "c", "t", "m", "a", "b", "i", "k", "x", "M", "", "m"])
WORDS = st.sampled_from(["0", "8", "18", "96", "101", "127", "128", "65535", "65536", "4000/2", "x", "",
                         "IN", "IP4", "IP6", "::1", "127.0.0.1", "audio", "video", "RTP/AVP", "RTP/SAVP",
                         "rtpmap:96", "rtpmap:101", "telephone-event/8000", "PCMU/8000", "opus/48000/2",
                         "fmtp:101", "0-16", "ptime:20", "ptime:x", "rtcp:9", "rtcp:\u00b2", "sendonly",
                         "recvonly", "inactive", "sendrecv", "candidate:1", "\u00b2", "/", "0/0"])
LINES = st.builds(lambda kind, words: f"{kind}={' '.join(words)}" if kind else " ".join(words),
                  LINE_KINDS, st.lists(WORDS, max_size=6))
STRUCTURED = st.lists(LINES, max_size=14).map(lambda lines: body("v=0", *BASE[1:], *lines))
STREAM = st.builds(
    lambda kind, port, proto, pts, maps, extra: [f"m={kind} {port} {proto} {' '.join(map(str, pts))}",
                                                 *maps, *extra],
    st.sampled_from(["audio", "audio", "video", "application"]), st.sampled_from([0, 4000, "4002/2"]),
    st.sampled_from(["RTP/AVP", "RTP/AVP", "RTP/SAVP", "udp"]),
    st.lists(st.sampled_from([0, 8, 9, 18, 96, 97, 101, 127]), min_size=1, max_size=5),
    st.lists(st.sampled_from(["a=rtpmap:96 telephone-event/8000", "a=rtpmap:101 telephone-event/8000",
                              "a=rtpmap:97 PCMU/8000", "a=rtpmap:96 opus/48000/2", "a=rtpmap:101 CN/16000",
                              "a=fmtp:101 0-15", "a=fmtp:96", "a=fmtp:x y"]), max_size=4),
    st.lists(st.sampled_from(["a=sendonly", "a=recvonly", "a=inactive", "a=ptime:30", "a=ptime:0",
                              "a=rtcp:4001 IN IP4 h", "a=rtcp:", "c=IN IP6 ::1", "b=AS:80",
                              "a=candidate:1 1 UDP 1 h 1 typ host"]), max_size=3))
OFFERS = st.lists(STREAM, max_size=4).map(lambda streams: body(*BASE, *(line for s in streams for line in s)))
MUTATED = st.sampled_from(list(REAL.values())).flatmap(
    lambda raw: st.tuples(st.integers(0, len(raw)), st.integers(0, 40), st.binary(max_size=12)).map(
        lambda edit: raw[:edit[0]] + edit[2] + raw[edit[0] + edit[1]:]))
PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _exercise(parsed: SessionDescription) -> None:
    """Every reader and writer over a parsed body: none may raise."""
    for m in parsed.media:
        assert m.direction in DIRECTIONS and m.port_count >= 1 and isinstance(m.rtcp_port, int)
        assert set(m.rtpmap) <= {int(f) for f in m.formats if f.isascii() and f.isdigit()}
        assert all(isinstance(pt, int) for pt in m.fmtp)
        assert m.ptime is None or m.ptime > 0
        assert m.connection is not None or m.port == 0
    rewritten = rewrite_media(parsed, "10.0.0.1", [5000, None, 0])
    assert bytes(parse_sdp(bytes(rewritten))) == bytes(rewritten)
    bytes(bump_version(hold_offer(parsed, "inactive")))
    try:
        answer = answer_offer(parsed, OURS, "10.0.0.1", [5000, 5002])
    except NotAcceptable as refused:
        assert refused.reason
        return
    assert len(answer.media) == len(parsed.media)
    assert bytes(parse_sdp(bytes(answer))) == bytes(answer)
    assert len(negotiated(parsed, answer)) == len(parsed.media)


@PROPERTY
@given(st.one_of(st.binary(max_size=600), STRUCTURED, MUTATED, OFFERS))
def test_parse_raises_only_sdp_error_and_answers_only_not_acceptable(raw: bytes) -> None:
    """parse_sdp on any bytes returns or raises SdpError; on what it returns, the readers,
    rewrite, hold, bump and answer_offer raise nothing but NotAcceptable, and what they
    write parses back to the same bytes."""
    try:
        parsed = parse_sdp(raw)
    except SdpError as refused:
        assert refused.reason
        return
    assert bytes(parse_sdp(bytes(parsed))) == bytes(parsed)
    _exercise(parsed)


@pytest.mark.parametrize("line", ["a=rtpmap:96 opus", "a=rtpmap:96 opus/x", "a=rtpmap:200 opus/48000"])
def test_a_malformed_rtpmap_names_no_codec_but_is_not_refused(line: str) -> None:
    """RFC 4475 esc01 carries "a=rtpmap:31 LPC" in a valid message: such a line is
    kept as it is and names no codec, so a dynamic type without a good rtpmap is
    left out of `Media.rtpmap`."""
    sdp = parse_sdp(body(*BASE, "m=audio 4000 RTP/AVP 96 0", line))
    assert list(sdp.media[0].rtpmap) == [0]
    assert line in sdp.media[0].lines
