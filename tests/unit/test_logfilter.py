"""The media sockets' open and close lines are kept out of the log; other ports'
lines, and every other event, pass."""

from __future__ import annotations

from twisted.internet.protocol import DatagramProtocol
from twisted.logger import FilteringLogObserver, LogPublisher, PredicateResult, globalLogPublisher

from phpvoip.logfilter import QuietMediaPorts


def legacy_event(text: str) -> dict:
    return {"log_namespace": "log_legacy", "log_text": text, "log_format": "{log_text}", "message": (text,)}


def test_media_port_lines_are_dropped_and_only_their_close():
    quiet = QuietMediaPorts()
    assert quiet(legacy_event("_RtpPort starting on 30000")) is PredicateResult.no
    assert quiet(legacy_event("_EndpointSocket starting on 31100")) is PredicateResult.no
    assert quiet(legacy_event("SipDatagramProtocol starting on 5060")) is PredicateResult.maybe
    assert quiet(legacy_event("(UDP Port 30000 Closed)")) is PredicateResult.no
    assert quiet(legacy_event("(UDP Port 30000 Closed)")) is PredicateResult.maybe  # once per open
    assert quiet(legacy_event("(UDP Port 5060 Closed)")) is PredicateResult.maybe
    assert quiet(legacy_event("(UDP Port 31100 Closed)")) is PredicateResult.no
    assert quiet({"log_namespace": "phpvoip.engine", "log_format": "_RtpPort starting on 1"}) is \
        PredicateResult.maybe


def test_a_real_endpoint_port_logs_nothing_through_the_filter():
    """Through a FilteringLogObserver, binding a media socket (the endpoint's
    protocol class) leaves no line; a plain UDP port's line stays."""
    from twisted.internet import reactor

    from phpvoip.media.endpoint import RtpEndpoint

    seen: list[dict] = []
    publisher = LogPublisher(FilteringLogObserver(seen.append, [QuietMediaPorts()]))
    globalLogPublisher.addObserver(publisher)  # where legacy log.msg ends up
    try:
        endpoint = RtpEndpoint(reactor, "127.0.0.1", lambda: 0)
        port = reactor.listenUDP(0, DatagramProtocol(), interface="127.0.0.1")
    finally:
        globalLogPublisher.removeObserver(publisher)
        endpoint.close()
        port.stopListening()
    texts = [e.get("log_text", "") for e in seen]
    assert f"DatagramProtocol starting on {port.getHost().port}" in texts
    assert not [t for t in texts if "_EndpointSocket" in t]
