"""RFC 4475 over the wire: each of the 49 torture messages, sent in one UDP datagram
to the real `twistd` switch, gets the answer RFC 4475 asks for (the table in
`tests/rfc4475.py`), and the switch still answers OPTIONS after each.

The files are read from /work/shared/rfc4475 (never copied); the test is skipped
with a message where that folder is absent.

One change is made to each request before it is sent: the sent-by (host and port)
of its top Via becomes 127.0.0.1:<the probe's port>, everything else byte for byte
(folding and broken parameters after the sent-by stay). Without it the answers
would not come back: the corpus' Vias name example hosts and 192.0.2.x addresses,
so the switch stamps ``received=127.0.0.1`` and, as RFC 3261 §18.2.2 says, answers
to the received address *and the sent-by port* (5060 when absent), i.e. to
127.0.0.1:5060, not to the probe. It never sends to the 192.0.2.x literal itself.
Responses in the corpus are sent unchanged: the switch must drop them.

The switch has one module, a registrar for its own domain (127.0.0.1), so a valid
INVITE is refused 403 (no module takes the caller), an OPTIONS for a user elsewhere
gets 404, MESSAGE 501, and a REGISTER for the corpus' example.com domains 403
"Domain Not Served" (a registrar that does not serve a domain refuses it, §10.3
step 1); the table's None means "anything but a 400 or a drop" and accepts these.
`test_raw_*` send messages unchanged where the answer must reach the source anyway.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest

from phpvoip.sip.errors import ParseError
from phpvoip.sip.message import Response, parse
from tests.interop._wire import Arrival, Probe, running_switch
from tests.rfc4475 import CASES, DROP, folder
from tests.support import LOOPBACK, Switch

pytestmark = pytest.mark.interop

CORPUS = folder()
# The probe sends a hundred requests in a few seconds: loopback is exempt from the
# per-source rate limit (phpvoip.limits), which is not what is tested here.
REGISTRAR = (
    "modules:\n  - type: registrar\n    users: {watson: {password: secret}}\n"
    "limits: {exempt: [127.0.0.0/8]}\n"
)
_LWS = r"(?:[ \t]|\r\n[ \t])*"
# The first Via (or v) header line up to the end of its sent-by, folding allowed.
_TOP_VIA = re.compile(
    rf"(?im)^(?:via|v)[ \t]*:{_LWS}[A-Za-z0-9]+{_LWS}/{_LWS}[A-Za-z0-9.]+{_LWS}/{_LWS}[A-Za-z0-9]+"
    rf"(?:[ \t]|\r\n[ \t])+(\[[^\]]*\]|[^;:,\s]+)((?:[ \t]*:[ \t]*\d+)?)".encode()
)


def readdress(data: bytes, port: int) -> bytes:
    """`data` with its top Via sent-by replaced by 127.0.0.1:`port` (requests only)."""
    if data.startswith(b"SIP/"):
        return data
    end = data.find(b"\r\n\r\n")
    m = _TOP_VIA.search(data, 0, end if end >= 0 else len(data))
    if m is None:
        raise AssertionError("no top Via found to readdress")
    return data[: m.start(1)] + f"{LOOPBACK}:{port}".encode() + data[m.end(2) :]


def ack_for(request: bytes, final: Arrival) -> bytes:
    """The ACK for a non-2xx final response to an INVITE (§17.1.1.3), built from the
    INVITE's Request-URI and the response's Via, From, To, Call-ID and CSeq."""
    uri = request.split(b"\r\n", 1)[0].split()[1]
    response = parse(final.data)
    assert isinstance(response, Response)
    via = response.get_all("Via")[0]
    return (
        f"ACK {uri.decode()} SIP/2.0\r\n"
        f"Via: {via}\r\n"
        f"From: {response.get('From')}\r\n"
        f"To: {response.get('To')}\r\n"
        f"Call-ID: {response.call_id}\r\n"
        f"CSeq: {response.cseq.seq} ACK\r\n"
        f"Max-Forwards: 70\r\n"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


def allowed(name: str) -> set[int | str | None]:
    case = CASES[name]
    return {case.answer, *case.also}


def acceptable(name: str, outcome: int | str) -> bool:
    """Whether `outcome` (a status, or "drop") is what the table allows for `name`;
    None in the table means any answer but 400 or a drop."""
    wanted = allowed(name)
    if outcome in wanted:
        return True
    return None in wanted and outcome not in (400, DROP)


@pytest.fixture(scope="module")
def switch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Switch]:
    if not CORPUS.is_dir() or len(list(CORPUS.glob("*.dat"))) != 49:
        pytest.skip(f"the RFC 4475 messages are not in {CORPUS} (CI has them)")
    with running_switch(tmp_path_factory.mktemp("switch"), REGISTRAR) as switch:
        yield switch


def exchange(switch: Switch, data: bytes) -> tuple[list[Arrival], bool, Probe]:
    """Send `data` from a fresh probe, then an OPTIONS ping; everything that comes
    before the ping's 200 is the answer to `data` (the switch handles datagrams in
    order and answers these at once). Returns (answers, alive, probe)."""
    probe = Probe(switch.port)
    probe.send(readdress(data, probe.port))
    call_id = f"{uuid.uuid4().hex}@{LOOPBACK}"
    here = f"{LOOPBACK}:{switch.port}"
    probe.send(probe.request("OPTIONS", uri=f"sip:{here}", to=f"<sip:{here}>", call_id=call_id))
    answers: list[Arrival] = []
    alive = False
    while True:
        batch = probe.collect(2.0, until_status=200)
        if not batch:
            break
        last = batch[-1]
        if last.status == 200 and last.header("Call-ID") == call_id:
            answers += batch[:-1]
            alive = True
            break
        answers += batch
    return answers, alive, probe


@pytest.mark.parametrize("name", sorted(CASES))
def test_torture_message_gets_rfc4475_answer(switch: Switch, name: str) -> None:
    """The message gets one answer RFC 4475 allows (or none where it says drop), a
    well-formed one echoing our Via, and the switch answers OPTIONS afterwards."""
    case = CASES[name]
    raw = (CORPUS / f"{name}.dat").read_bytes()
    answers, alive, probe = exchange(switch, raw)
    try:
        assert alive, f"no 200 to OPTIONS after {name}:\n{switch.log()}"
        provisional = [a for a in answers if a.status is not None and a.status < 200]
        finals = [a for a in answers if a.status is not None and a.status >= 200]
        assert all(a.status is not None for a in answers), [a.start_line for a in answers]
        outcome: int | str = DROP if not finals else finals[0].status  # type: ignore[assignment]
        assert acceptable(name, outcome), (
            f"{name} (RFC 4475 §{case.section}, {case.title}): got {outcome}, "
            f"allowed {sorted(map(str, allowed(name)))}; {[a.start_line for a in answers]}"
        )
        assert len(finals) <= 1, f"more than one final answer: {[a.start_line for a in finals]}"
        if provisional:
            assert raw.startswith(b"INVITE "), "only an INVITE gets a provisional"
        if not finals:
            return
        final = finals[0]
        reason = final.start_line.split(b" ", 2)[2] if final.start_line.count(b" ") >= 2 else b""
        assert reason.strip(), "a reason phrase is present"
        if final.status == 400 and not case.valid:
            assert reason != b"Bad Request", "a 400 to a malformed message says what is wrong"
        via = final.header("Via") or final.header("v") or ""
        assert f"{LOOPBACK}:{probe.port}" in via, f"the answer echoes our top Via: {via!r}"
        if case.valid:
            try:
                response = parse(final.data)
            except ParseError as e:
                raise AssertionError(f"the switch's answer does not parse: {e}\n{final.data!r}") from e
            assert isinstance(response, Response) and response.to.tag, "a final response has a To tag"
            if raw.startswith(b"INVITE ") and final.status >= 300:
                probe.send(ack_for(readdress(raw, probe.port), final))
                assert probe.collect(2.5 * 0.2) == [], "the ACK stops timer G and gets no answer"
    finally:
        probe.close()


@pytest.mark.parametrize("name", ["escnull", "cparam01", "cparam02", "regescrt", "dblreq", "regaut01"])
def test_register_for_another_domain_is_403(switch: Switch, name: str) -> None:
    """A REGISTER for example.com, which the switch's registrar does not serve, gets
    403 Domain Not Served (not 501: the switch does implement REGISTER)."""
    answers, alive, probe = exchange(switch, (CORPUS / f"{name}.dat").read_bytes())
    probe.close()
    assert alive
    assert [a.start_line for a in answers] == [b"SIP/2.0 403 Domain Not Served"]


@pytest.mark.parametrize(("name", "status"), [("novelsc", 416), ("bext01", 420)])
def test_raw_via_naming_tcp_or_tls_is_answered_to_the_udp_source(switch: Switch, name: str,
                                                                  status: int) -> None:
    """Sent unchanged over UDP, with a top Via naming TCP (novelsc) or TLS (bext01)
    at an example host: the answer comes back to the probe's own address."""
    probe = Probe(switch.port)
    try:
        probe.send((CORPUS / f"{name}.dat").read_bytes())
        answers = probe.collect(2.0, until_status=status)
        assert [a.status for a in answers] == [status], [a.start_line for a in answers]
    finally:
        probe.close()


def test_bext01_420_lists_unsupported(switch: Switch) -> None:
    """bext01's 420 carries Unsupported with the unknown Require option tags
    (RFC 3261 §8.2.2.3)."""
    answers, alive, probe = exchange(switch, (CORPUS / "bext01.dat").read_bytes())
    probe.close()
    assert alive
    (final,) = [a for a in answers if a.status == 420]
    unsupported = final.header("Unsupported") or ""
    assert "nothingSupportsThis" in unsupported and "nothingSupportsThisEither" in unsupported


def test_corpus_is_complete() -> None:
    """The shared folder holds exactly the 49 messages the table describes."""
    if not CORPUS.is_dir():
        pytest.skip(f"the RFC 4475 messages are not in {CORPUS} (CI has them)")
    assert sorted(p.stem for p in CORPUS.glob("*.dat")) == sorted(CASES)


def test_readdress_keeps_the_rest_byte_exact() -> None:
    """Only the top Via's sent-by changes, even when the Via is folded (wsinv) or
    its parameters are broken (badinv01)."""
    if not CORPUS.is_dir():
        pytest.skip(f"the RFC 4475 messages are not in {CORPUS} (CI has them)")
    for name in ("wsinv", "badinv01", "longreq", "badvers", "lwsruri"):
        raw = (CORPUS / f"{name}.dat").read_bytes()
        changed = readdress(raw, 40000)
        assert b"127.0.0.1:40000" in changed
        before, after = _TOP_VIA.search(raw), _TOP_VIA.search(changed)
        assert before is not None and after is not None
        assert raw[: before.start(1)] == changed[: after.start(1)]
        assert raw[before.end(2) :] == changed[after.end(2) :]
    wsinv = readdress((CORPUS / "wsinv.dat").read_bytes(), 40000)
    assert b"Via  : SIP  /   2.0\r\n /UDP\r\n    127.0.0.1:40000;branch=390skdjuw\r\n" in wsinv
