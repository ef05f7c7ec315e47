"""The 49 RFC 4475 torture messages: valid ones parse, invalid ones raise ParseError."""

from __future__ import annotations

from pathlib import Path

import pytest

from phpvoip.sip.errors import ParseError
from phpvoip.sip.message import Request, Response, parse
from tests.rfc4475 import CASES, EXPECTED, INVALID, VALID

FOLDER = Path(__file__).parents[2].parent / "shared" / "rfc4475"

needs_folder = pytest.mark.skipif(
    not FOLDER.is_dir(), reason=f"RFC 4475 messages not found at {FOLDER} (shared folder absent)"
)


def message(name: str) -> bytes:
    return (FOLDER / f"{name}.dat").read_bytes()


def test_table_covers_all_49_messages() -> None:
    """The expectations table classifies exactly 49 messages, each once."""
    assert len(CASES) == 49
    assert VALID | INVALID == set(CASES) == set(EXPECTED)
    assert not VALID & INVALID


@needs_folder
def test_every_file_is_in_the_table() -> None:
    """Every .dat file in the shared folder has a row in the table, and back."""
    assert {p.stem for p in FOLDER.glob("*.dat")} == set(CASES)


@needs_folder
@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_message_parses(name: str) -> None:
    """A message RFC 4475 calls well formed parses, and survives a round trip."""
    parsed = parse(message(name))
    assert isinstance(parsed, (Request, Response))
    assert parse(bytes(parsed)) == parsed


@needs_folder
@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_message_is_refused(name: str) -> None:
    """A message RFC 4475 calls malformed raises ParseError with a reason and the
    status our table records for it."""
    with pytest.raises(ParseError) as info:
        parse(message(name))
    assert info.value.reason
    if CASES[name].parse_status is not None:
        assert info.value.status == CASES[name].parse_status


@needs_folder
@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("badinv01", "bad Via"),
        ("clerr", "shorter than Content-Length"),
        ("ncl", "Content-Length"),
        ("scalar02", "CSeq"),
        ("scalarlg", "CSeq"),
        ("quotbal", "unterminated quoted string"),
        ("ltgtruri", "Request-URI"),
        ("lwsruri", "whitespace inside the Request-URI"),
        ("lwsstart", "more than one space"),
        ("trws", "whitespace at the end"),
        ("escruri", "headers in the Request-URI"),
        ("baddate", "Date"),
        ("regbadct", "must be written as <URI>"),
        ("badaspec", "whitespace inside <URI>"),
        ("baddn", "must be quoted"),
        ("badvers", "version"),
        ("mismatch01", "CSeq method"),
        ("mismatch02", "CSeq method"),
        ("bigcode", "status code"),
        ("insuf", "missing From, To, Call-ID"),
        ("multi01", "more than one"),
        ("mcl01", "more than one Content-Length"),
    ],
)
def test_invalid_message_reason_names_the_fault(name: str, reason: str) -> None:
    """The reason of each refusal names the fault RFC 4475 built the message around."""
    with pytest.raises(ParseError) as info:
        parse(message(name))
    assert reason in info.value.reason


@needs_folder
def test_refused_request_keeps_headers_for_an_answer() -> None:
    """A refused request still carries its start line and raw headers (to answer 400)."""
    with pytest.raises(ParseError) as info:
        parse(message("badaspec"))
    names = [name.lower() for name, _ in info.value.headers]
    assert info.value.start_line == "OPTIONS sip:user@example.org SIP/2.0"
    assert {"via", "from", "to", "call-id", "cseq"} <= set(names)


@needs_folder
def test_wsinv_reads_through_the_whitespace() -> None:
    """wsinv: folded, spaced-out values come out as their plain typed values."""
    request = parse(message("wsinv"))
    assert request.to.tag == "1918181833n"
    assert request.from_.tag == "98asjd8"
    assert request.from_.display == '"J Rosenberg \\\\\\""'
    assert request.max_forwards == 68
    assert (request.cseq.seq, request.cseq.method) == (9, "INVITE")
    assert [(v.transport, v.host, v.branch) for v in request.via] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert request.contact[0].params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert request.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert request.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert request.get("Subject") == ""


@needs_folder
def test_dblreq_takes_the_first_request() -> None:
    """dblreq: the REGISTER is parsed and the INVITE after it ignored."""
    request = parse(message("dblreq"))
    assert request.method == "REGISTER"
    assert request.body == b""


@needs_folder
def test_semiuri_user_part_holds_the_semicolon() -> None:
    """semiuri: the Request-URI user part is 'user;par=u%40example.net'."""
    request = parse(message("semiuri"))
    assert request.uri.user == "user;par=u%40example.net"
    assert request.uri.host == "example.com"
    assert request.uri.params == {}


@needs_folder
def test_cparam_contact_parameter_or_uri_parameter() -> None:
    """cparam01/02: unknownparam is a Contact parameter without <>, a URI one within."""
    outside = parse(message("cparam01")).contact[0]
    inside = parse(message("cparam02")).contact[0]
    assert "unknownparam" in outside.params and outside.uri.params == {}
    assert "unknownparam" in inside.uri.params and inside.params == {}


@needs_folder
def test_inv2543_body_runs_to_the_end() -> None:
    """inv2543: no Content-Length, so the body is the rest of the datagram."""
    request = parse(message("inv2543"))
    assert request.content_length is None
    assert request.body.startswith(b"v=0\r\n")
    assert request.top_via.branch is None


@needs_folder
def test_mpart01_body_keeps_its_binary_octets() -> None:
    """mpart01: the multipart body comes through octet for octet."""
    data = message("mpart01")
    request = parse(data)
    assert len(request.body) == request.content_length
    assert data.endswith(request.body)


@needs_folder
def test_esc01_and_escnull_keep_escapes() -> None:
    """esc01/escnull: escapes stay as written in the URI parts."""
    esc01 = parse(message("esc01"))
    assert esc01.uri.user == "sips%3Auser%40example.com"
    assert esc01.contact[0].uri.params == {"%6c%72": None, "n%61me": "v%61lue%25%34%31"}
    escnull = parse(message("escnull"))
    assert [c.uri.user for c in escnull.contact] == ["%00", "%00%00"]


@needs_folder
def test_unknown_scheme_request_uri_is_opaque() -> None:
    """unkscm/novelsc: other schemes parse into opaque URIs."""
    assert parse(message("unkscm")).uri.scheme == "nobodyknowsthisscheme"
    novel = parse(message("novelsc")).uri
    assert (novel.scheme, novel.opaque) == ("soap.beep", "//192.0.2.103:3002")
