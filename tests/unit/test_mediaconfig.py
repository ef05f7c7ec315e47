"""The `media:` config section: defaults, each key, each error, and the engine built."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet.task import Clock

from phpvoip.config import ConfigError, load, load_text
from phpvoip.media.fallback import FallbackEngine
from phpvoip.media.relay import RelayEngine
from phpvoip.media.rtpengine import RtpengineEngine
from phpvoip.mediaconfig import MediaSettings, build_media_engine

ROOT = Path(__file__).resolve().parents[2]


def media_of(text: str) -> MediaSettings:
    return load_text(text, "test.yaml").media


def test_absent_section_is_direct_media():
    """Without `media:` SDP passes untouched: no engine is built."""
    settings = media_of("sip: {}")
    assert settings == MediaSettings() and settings.mode == "direct" and not settings.enabled
    assert build_media_engine(settings, Clock()) is None


def test_default_config_relays():
    """The shipped config relays media on 30000-30999 with a 60 s RTP timeout."""
    media = load(ROOT / "etc" / "phpvoip.yaml").media
    assert (media.mode, media.address, media.ports, media.rtp_timeout) == ("relay", "127.0.0.1",
                                                                           (30000, 30999), 60.0)


def test_every_key():
    """Each key is read as written."""
    media = media_of('media: {mode: rtpengine, address: "::1", ports: "40000-40099", rtp_timeout: 0, '
                     'ng: "udp:127.0.0.2:22222", timeout: 0.5, retries: 4, fallback: relay}')
    assert media == MediaSettings("rtpengine", "::1", (40000, 40099), 0.0, "udp:127.0.0.2:22222", 0.5, 4,
                                  "relay")


def test_engines_built():
    """relay -> RelayEngine; rtpengine -> RtpengineEngine; with fallback, both."""
    clock = Clock()
    engine = build_media_engine(media_of('media: {mode: relay, ports: "40000-40009", rtp_timeout: 5}'), clock)
    assert isinstance(engine, RelayEngine)
    assert (engine.port_range, engine.rtp_timeout, engine.address) == ((40000, 40009), 5.0, "127.0.0.1")
    engine = build_media_engine(media_of("media: {mode: rtpengine, retries: 0}"), clock)
    assert isinstance(engine, RtpengineEngine) and engine.address == ("127.0.0.1", 2223)
    engine = build_media_engine(media_of("media: {mode: rtpengine, fallback: relay}"), clock)
    assert isinstance(engine, FallbackEngine)
    assert isinstance(engine.primary, RtpengineEngine) and isinstance(engine.fallback, RelayEngine)


@pytest.mark.parametrize(
    "text,key,words",
    [
        ("media: {mode: sfu}", "media.mode", "not one of direct, relay, rtpengine"),
        ("media: {address: pbx.example.com}", "media.address", "not an IP address"),
        ('media: {ports: "30000"}', "media.ports", "not 'LOW-HIGH'"),
        ('media: {ports: "30001-30999"}', "media.ports", "must be even"),
        ('media: {ports: "30998-30000"}', "media.ports", "runs backwards"),
        ('media: {ports: "30000-30000"}', "media.ports", "runs backwards"),
        ('media: {ports: "80-999"}', "media.ports", "within 1024-65535"),
        ("media: {rtp_timeout: -1}", "media.rtp_timeout", "at least 0"),
        ("media: {rtp_timeout: soon}", "media.rtp_timeout", "must be a number"),
        ('media: {ng: "tcp:127.0.0.1:2223"}', "media.ng", "not 'udp:IP:PORT'"),
        ('media: {ng: "udp:127.0.0.1:70000"}', "media.ng", "out of range"),
        ('media: {ng: "udp:999.0.0.1:2223"}', "media.ng", "not an IP address"),
        ("media: {timeout: 0}", "media.timeout", "at least 0.01"),
        ("media: {retries: 1.5}", "media.retries", "must be an integer"),
        ("media: {mode: rtpengine, fallback: direct}", "media.fallback", "not 'relay'"),
        ("media: {mode: relay, fallback: relay}", "media.fallback", "only rtpengine falls back"),
        ("media: {mode: relay, port: 30000}", "media.port", "unknown key"),
        ("media: relay", "media", "must be a mapping"),
    ],
)
def test_errors_name_key_and_problem(text, key, words):
    """Each mistake is reported as file: key path: problem, before anything binds."""
    with pytest.raises(ConfigError) as info:
        load_text(text, "test.yaml")
    error = info.value
    assert (error.file, error.key) == ("test.yaml", key)
    assert words in error.problem, error.problem
