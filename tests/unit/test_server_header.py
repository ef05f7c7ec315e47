"""`sip.user_agent` names the software in User-Agent (requests) and Server (answers);
empty, the switch names nothing, so a scanner such as svmap learns nothing from it."""

from __future__ import annotations

import pytest

from phpvoip.config import ConfigError, load_text
from phpvoip.frontdoor import FrontDoor
from phpvoip.legs.host import LegHost
from phpvoip.sip.message import Request
from phpvoip.sip.timers import Timers
from tests.unit.test_frontdoor import RecordingTransport, request


def sip_settings(line: str):
    return load_text(f"sip:\n  {line}\n", "test.yaml").sip


def test_user_agent_default_and_empty():
    assert sip_settings("domain: 127.0.0.1").user_agent == "phpvoip"
    assert sip_settings('user_agent: ""').user_agent == ""
    assert sip_settings("user_agent: ' PBX 2 '").user_agent == "PBX 2"


def test_user_agent_with_a_line_break_is_refused():
    """A header value cannot hold a line break: it would start a header of its own."""
    with pytest.raises(ConfigError) as caught:
        sip_settings('user_agent: "x\\r\\nVia: evil"')
    assert caught.value.key == "sip.user_agent"


@pytest.mark.parametrize("server, expected", [("PBX 2", "PBX 2"), ("", None)])
def test_options_answer_names_the_server_only_when_set(server, expected):
    door = FrontDoor(RecordingTransport(), "switch.example", ["127.0.0.1"], server=server)
    answer = door.answer(request())
    assert answer is not None and answer.status == 200
    assert answer.get("Server") == expected


@pytest.mark.parametrize("agent, expected", [("PBX 2", "PBX 2"), ("", None)])
def test_leg_messages_carry_the_agent_only_when_set(agent, expected):
    host = LegHost(RecordingTransport(), None, None, Timers(0.5, 4.0, 5.0), "switch.example", 0,
                   "INVITE, ACK", "", agent)
    invite = request("INVITE", "sip:bob@switch.example")
    host.add_capabilities(invite)
    answer = invite.response(180)
    host.add_capabilities(answer)
    assert isinstance(invite, Request)
    assert invite.get("User-Agent") == expected
    assert answer.get("Server") == expected
