"""The shipped etc/phpvoip.yaml with two real softphones (baresip) registered as
1001 and 1002: the auto attendant on 800 and the support queue on 700 work as the
file's comments promise.

The switch runs in-process from the shipped file with only what must differ on a
shared test machine rewritten: the listen ports (SIP, manhole, metrics, console),
the relay's and the applications' RTP port ranges, the store (a tmp sqlite) and the
manhole's host key file (a tmp path instead of var/). Everything else (users and
passwords, the digest algorithms, numbers, menus, strategy, timers) is as shipped;
the shipped registrar offers MD5 only, without which baresip 1.0 cannot register.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import yaml
from twisted.internet import defer, task
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from phpvoip.config import load_text
from phpvoip.service import build_service
from tests.interop.test_baresip_registrar import Control, account, control, rtp_packets, write_config
from tests.support import LOOPBACK, free_port, require_program

pytestmark = pytest.mark.interop

SHIPPED = Path(__file__).resolve().parents[2] / "etc" / "phpvoip.yaml"
# RTP port ranges no other test uses (46200-46399).
RELAY_PORTS = "46200-46259"
APP_PORTS = {"echo": "46260-46279", "attendant": "46280-46299", "queue": "46300-46339"}
WAIT = 4.0  # seconds a caller waits on music in the pause test
RATE = 50  # packets a second at ptime 20


def default_config(tmp_path: Path) -> tuple[str, int]:
    """The shipped file as YAML text with free ports, a tmp store and host key."""
    data = yaml.safe_load(SHIPPED.read_text())
    port = free_port()
    data["sip"]["listen"] = [f"udp:{LOOPBACK}:{port}", f"tcp:{LOOPBACK}:{port}"]
    data["storage"] = f"sqlite:{tmp_path / 'phpvoip.db'}"
    data["manhole"]["listen"] = f"tcp:{free_port()}:interface={LOOPBACK}"
    data["manhole"]["host_key"] = str(tmp_path / "manhole_host_key")
    data["metrics"]["listen"] = f"tcp:{free_port()}:interface={LOOPBACK}"
    data["console"]["listen"] = f"tcp:{free_port()}:interface={LOOPBACK}"
    data["media"]["ports"] = RELAY_PORTS
    for module in data["modules"]:
        if module["type"] == "registrar":
            # baresip 1.0 answers only an MD5 challenge and gives up (REGISTER_FAIL)
            # when SHA-256 is offered: the shipped file must say MD5 only.
            assert module.get("algorithms") == ["MD5"], module
        if module["type"] in APP_PORTS:
            module["ports"] = APP_PORTS[module["type"]]
    return yaml.safe_dump(data), port


@pytest_twisted.async_yield_fixture
async def default_switch(reactor: Any, peers: Any, tmp_path: Path):
    """The shipped config running, with baresip phones registered as 1001 and 1002
    (auto-answer); yields (service, {user: Control}, {user: Peer})."""
    baresip = require_program("baresip")
    text, port = default_config(tmp_path)
    heard: list[dict] = []
    globalLogPublisher.addObserver(heard.append)
    service = build_service(load_text(text, str(SHIPPED)), reactor)
    service.port = port
    service.startService()
    phones: dict[str, Any] = {}
    controls: dict[str, Control] = {}
    service.log_events = heard
    try:
        for user in ("1001", "1002"):
            _, ctrl_port = write_config(tmp_path / user)
            phones[user] = peers.start([baresip, "-f", str(tmp_path / user)], deadline=90)
            controls[user] = await control(reactor, ctrl_port)
            controls[user].command("uanew", account(user, port))
        for user in controls:
            event = await controls[user].event("REGISTER_OK", reactor)
            assert event["param"].startswith("200"), event
        yield service, controls, phones
    finally:
        for user in controls:
            controls[user].command("quit")
        for user in phones:
            await phones[user].wait()
        await service.stopService()
        globalLogPublisher.removeObserver(heard.append)


async def assert_no_calls(reactor: Any, service: Any) -> None:
    """No call, leg, dialog or relay port is left. (Transactions linger for the
    shipped timers' 64*T1 = 32 s and are not waited for.)"""
    def busy() -> tuple[int, int, int]:
        counts = service.engine.counts()
        return counts["calls"], counts["legs"], counts["dialogs"]

    deadline = reactor.seconds() + 10.0
    while any(busy()) and reactor.seconds() < deadline:
        await pause(reactor, 0.1)
    assert busy() == (0, 0, 0), service.engine.counts()
    totals = service.engine.media.totals()
    assert (totals["port_pairs_in_use"], totals["sessions"]) == (0, 0), totals


def log_lines(service: Any) -> list[str]:
    """What the switch logged at INFO or above while the fixture ran."""
    return [formatEvent(e) for e in service.log_events
            if e.get("log_level", LogLevel.info) >= LogLevel.info]


def assert_quiet_calls(service: Any) -> None:
    """Calls log no "Starting protocol" / "Stopping protocol" line per RTP socket
    (Twisted's noisy protocols; its udp.Port's own "starting on" / "Closed" lines
    per socket are still there) and no warning or error but the manhole's (the shipped etc/manhole_keys is
    not there until a user adds a key)."""
    lines = log_lines(service)
    noisy = [line for line in lines if "Starting protocol" in line or "Stopping protocol" in line]
    assert noisy == [], noisy
    bad = [formatEvent(e) for e in service.log_events
           if e.get("log_level") in (LogLevel.warn, LogLevel.error, LogLevel.critical)]
    assert [line for line in bad if "manhole_keys does not exist" not in line] == [], bad


def offered(phone: Control) -> list[str]:
    """Who called this phone (auto-answer: baresip 1.0 sends no CALL_INCOMING
    then, only events with direction "incoming")."""
    return sorted({e["peeruri"] for e in phone.events if e.get("direction") == "incoming"})


def pause(reactor: Any, seconds: float) -> defer.Deferred:
    return task.deferLater(reactor, seconds, lambda: None)


async def hang_up(reactor: Any, controls: dict[str, Control], who: str) -> None:
    controls[who].command("hangup")
    await defer.gatherResults([c.event("CALL_CLOSED", reactor) for c in controls.values()])


async def quit_phones(controls: dict[str, Control], phones: dict[str, Any]) -> dict[str, str]:
    """Quit both phones (they print RTP statistics at each hang-up) and return
    their output."""
    for user in controls:
        controls[user].command("quit")
    codes = [await phones[user].wait() for user in phones]
    outputs = {user: phones[user].output for user in phones}
    assert codes == [0, 0], outputs
    return outputs


@pytest_twisted.ensureDeferred
async def test_attendant_greeting_then_dtmf_reaches_1002(reactor: Any, default_switch: Any) -> None:
    """1001 calls 800 and hears the greeting (RTP through the relay), keys 1002 as
    RFC 4733 DTMF; 1002 rings and answers (auto-answer); the record shows the
    transfer to 1002 and audio both ways through the relay afterwards."""
    service, controls, phones = default_switch
    caller, callee = controls["1001"], controls["1002"]
    caller.command("dial", f"sip:800@{LOOPBACK}:{service.port}")
    await caller.event("CALL_ESTABLISHED", reactor)
    await pause(reactor, 1.5)  # the greeting is playing
    greeting = service.engine.media.totals()
    caller.command("sndcode", "1002")
    await callee.event("CALL_ESTABLISHED", reactor, timeout=20)
    talk_start = reactor.seconds()
    await pause(reactor, 2.0)
    talked = reactor.seconds() - talk_start
    await hang_up(reactor, controls, "1001")
    record = service.engine.records[-1]
    assert (record.caller, record.callee, record.transfers) == ("1001", "800", ["1002"]), record
    assert (record.disposition, record.hangup_by) == ("ANSWERED", "caller"), record
    assert record.media is not None, record
    # The digits came as RFC 4733 events in RTP: no SIP INFO in the call's messages.
    ladder = service.ladders.ladder_text(record.call_id)
    assert "INVITE" in ladder and "INFO" not in ladder, ladder
    outputs = await quit_phones(controls, phones)
    stats = {user: rtp_packets(out) for user, out in outputs.items()}
    # The relay's legs: a is 1001, b the attendant (its greeting), c is 1002.
    media = record.media
    assert media["sides"] == {"a": "caller", "b": "callee", "c": "callee"}, media
    assert greeting["forwarded"] >= 0.6 * RATE * 1.5, greeting  # the greeting, mid-way
    assert media["b>a"]["packets"] >= 0.6 * RATE * 1.5, media
    for way in ("a>c", "c>a"):
        assert media[way]["packets"] >= 0.6 * RATE * talked and media[way]["lost"] == 0, media
    # 1001's one call: the greeting (1.5 s) and the talk with 1002 (2 s) arrived.
    [(_, heard_1001)] = stats["1001"]
    [(sent_1002, heard_1002)] = stats["1002"]
    assert heard_1001 >= 0.6 * RATE * (1.5 + talked), stats
    # What 1001 heard is what the relay sent it from the attendant and from 1002.
    assert abs(heard_1001 - media["b>a"]["packets"] - media["c>a"]["packets"]) <= 5, (stats, media)
    assert heard_1002 >= 0.6 * RATE * talked and sent_1002 >= 0.6 * RATE * talked, stats
    await assert_no_calls(reactor, service)
    assert_quiet_calls(service)


@pytest_twisted.ensureDeferred
async def test_queue_offers_to_the_free_agent(reactor: Any, default_switch: Any) -> None:
    """1001 calls 700: both shipped agents are logged in and round-robin would start
    with the first listed, 1001 (order 1001, 1002); but 1001 is busy on this very call
    (its busy state comes from the switch's events), so the queue offers it to 1002,
    which answers, and 1001 is never offered a call."""
    service, controls, phones = default_switch
    caller, agent = controls["1001"], controls["1002"]
    [queue] = [m for m in service.engine.modules if getattr(m, "kind", "") == "queue"]
    assert [a.number for a in queue.settings.agents] == ["1001", "1002"]
    assert queue.settings.strategy == "round-robin"
    caller.command("dial", f"sip:700@{LOOPBACK}:{service.port}")
    await caller.event("CALL_ESTABLISHED", reactor)
    await agent.event("CALL_ESTABLISHED", reactor, timeout=20)
    states = {a["agent"]: a for a in queue.agent_stats()}
    await pause(reactor, 2.0)
    await hang_up(reactor, controls, "1001")
    assert offered(caller) == [], caller.events
    assert offered(agent) == ["sip:1001@127.0.0.1"], agent.events
    # 1001 counted busy on its own call when the offer went out; 1002 took it.
    assert (states["1001"]["state"], states["1001"]["answered"]) == ("busy", 0), states
    assert (states["1002"]["state"], states["1002"]["answered"]) == ("busy", 1), states
    record = service.engine.records[-1]
    assert (record.caller, record.callee, record.transfers) == ("1001", "700", ["1002"]), record
    assert (record.disposition, record.hangup_by) == ("ANSWERED", "caller"), record
    for way in ("a>c", "c>a"):  # a is 1001, c is 1002, both through the relay
        assert record.media[way]["packets"] >= 0.6 * RATE * 2.0, record.media
    outputs = await quit_phones(controls, phones)
    stats = {user: rtp_packets(out) for user, out in outputs.items()}
    assert all(sent >= 0.6 * RATE * 2.0 and heard >= 0.6 * RATE * 2.0
               for table in stats.values() for sent, heard in table), stats
    await assert_no_calls(reactor, service)


@pytest_twisted.ensureDeferred
async def test_paused_agent_leaves_the_caller_on_music(reactor: Any, default_switch: Any) -> None:
    """1002 dials *47 (paused, confirmed by a prompt); 1001 calls 700 and, with 1001
    busy on that call and 1002 paused, waits hearing the queue's prompts and music
    (RTP arrives); 1002 dials *47 again and the waiting call is offered to 1002."""
    service, controls, phones = default_switch
    caller, agent = controls["1001"], controls["1002"]
    [queue] = [m for m in service.engine.modules if getattr(m, "kind", "") == "queue"]
    agent.command("dial", f"sip:*47@{LOOPBACK}:{service.port}")
    await agent.event("CALL_CLOSED", reactor, timeout=20)  # the switch hangs up after the prompt
    assert {a["agent"]: a["paused"] for a in queue.agent_stats()} == {"1001": False, "1002": True}
    agent.forget()
    caller.command("dial", f"sip:700@{LOOPBACK}:{service.port}")
    await caller.event("CALL_ESTABLISHED", reactor)
    await pause(reactor, WAIT)
    [stats] = queue.queue_stats()
    waiting = (stats["callers_waiting"], stats["agents_logged_in"], stats["agents_available"])
    assert waiting == (1, 2, 0), stats
    assert offered(agent) == [], agent.events
    # 1002 resumes: the waiting call is offered to it and it answers.
    agent.command("dial", f"sip:*47@{LOOPBACK}:{service.port}")
    await agent.event("CALL_CLOSED", reactor, timeout=20)
    agent.forget()
    await agent.event("CALL_ESTABLISHED", reactor, timeout=20)
    assert offered(agent) == ["sip:1001@127.0.0.1"], agent.events
    await pause(reactor, 1.0)
    await hang_up(reactor, controls, "1001")
    record = service.engine.records[-1]
    assert (record.caller, record.callee, record.transfers) == ("1001", "700", ["1002"]), record
    # b is the queue: what 1001 heard while waiting (prompts, then music) went
    # through the relay, and 1001's phone counted it.
    media = record.media
    assert media["b>a"]["packets"] >= 0.8 * RATE * WAIT, media
    assert media["a>c"]["packets"] >= 0.6 * RATE and media["c>a"]["packets"] >= 0.6 * RATE, media
    outputs = await quit_phones(controls, phones)
    [(_, heard)] = rtp_packets(outputs["1001"])
    assert abs(heard - media["b>a"]["packets"] - media["c>a"]["packets"]) <= 5, (heard, media)
    await assert_no_calls(reactor, service)


@pytest_twisted.ensureDeferred
async def test_attendant_menu_7_to_the_queue_then_exit_0_back(reactor: Any, default_switch: Any) -> None:
    """1002 pauses (*47); 1001 calls 800 and keys 7: the attendant hands the call to
    the support queue (700), where it waits (1001 busy, 1002 paused); 1001 keys the
    exit digit 0 and is back at the attendant's menu (not at the operator: the 0's
    repeated RFC 4733 end packets reach the attendant after the queue acted on the
    first), keys 1002 and 1002 answers (a direct call reaches a paused agent)."""
    service, controls, phones = default_switch
    caller, agent = controls["1001"], controls["1002"]
    [queue] = [m for m in service.engine.modules if getattr(m, "kind", "") == "queue"]
    [attendant] = [m for m in service.engine.modules if getattr(m, "kind", "") == "attendant"]
    agent.command("dial", f"sip:*47@{LOOPBACK}:{service.port}")
    await agent.event("CALL_CLOSED", reactor, timeout=20)
    agent.forget()
    caller.command("dial", f"sip:800@{LOOPBACK}:{service.port}")
    await caller.event("CALL_ESTABLISHED", reactor)
    await pause(reactor, 1.0)
    caller.command("sndcode", "7")
    await pause(reactor, 2.0)
    [stats] = queue.queue_stats()
    assert (stats["callers_waiting"], stats["agents_available"]) == (1, 0), stats
    caller.command("sndcode", "0")
    await pause(reactor, 1.5)
    [stats] = queue.queue_stats()
    assert (stats["callers_waiting"], stats["exited"]) == (0, 1), stats
    att = attendant.stats()
    assert (att["in_menu"], att["by_menu"], att["outcomes"]["operator"]) == (1, {"main": 1}, 0), att
    caller.command("sndcode", "1002")
    await agent.event("CALL_ESTABLISHED", reactor, timeout=20)
    assert offered(agent) == ["sip:1001@127.0.0.1"], agent.events
    assert offered(caller) == [], caller.events
    await pause(reactor, 1.0)
    await hang_up(reactor, controls, "1001")
    att = attendant.stats()
    assert att["outcomes"]["bridged"] == 2 and att["outcomes"]["operator"] == 0, att
    record = service.engine.records[-1]
    assert (record.caller, record.callee, record.disposition) == ("1001", "800", "ANSWERED"), record
    await quit_phones(controls, phones)
    await assert_no_calls(reactor, service)


@pytest_twisted.ensureDeferred
async def test_attendant_0_is_the_operator_and_9_the_echo(reactor: Any, default_switch: Any) -> None:
    """1002 calls 800 and keys 0: the operator, 1001, rings and answers. Then 1001
    calls 800 and keys 9: the echo (9196) answers and sends 1001's audio back."""
    service, controls, phones = default_switch
    a, b = controls["1001"], controls["1002"]
    [attendant] = [m for m in service.engine.modules if getattr(m, "kind", "") == "attendant"]
    b.command("dial", f"sip:800@{LOOPBACK}:{service.port}")
    await b.event("CALL_ESTABLISHED", reactor)
    await pause(reactor, 1.0)
    b.command("sndcode", "0")
    await a.event("CALL_ESTABLISHED", reactor, timeout=20)
    assert offered(a) == ["sip:1002@127.0.0.1"], a.events
    await pause(reactor, 1.0)
    await hang_up(reactor, controls, "1002")
    assert service.engine.records[-1].transfers == ["1001"], service.engine.records[-1]
    assert attendant.stats()["outcomes"]["operator"] == 1, attendant.stats()
    a.forget()
    b.forget()
    a.command("dial", f"sip:800@{LOOPBACK}:{service.port}")
    await a.event("CALL_ESTABLISHED", reactor)
    await pause(reactor, 1.0)
    a.command("sndcode", "9")
    await pause(reactor, 3.0)
    a.command("hangup")
    await a.event("CALL_CLOSED", reactor)
    record = service.engine.records[-1]
    assert (record.callee, record.transfers) == ("800", ["9196"]), record
    # c is the echo: it sent back about what 1001 sent it.
    media = record.media
    assert media["c>a"]["packets"] >= 0.6 * RATE * 3.0, media
    assert abs(media["c>a"]["packets"] - media["a>c"]["packets"]) <= 10, media
    assert offered(b) == [], b.events
    await quit_phones(controls, phones)
    await assert_no_calls(reactor, service)
