"""Config loading: defaults, validation, and errors that name file, key and problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from phpvoip.config import ConfigError, load, load_text

ROOT = Path(__file__).resolve().parents[2]


def error_of(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_text(text, "test.yaml")
    return info.value


def test_default_config_loads():
    """etc/phpvoip.yaml is valid and binds loopback only."""
    loaded = load(ROOT / "etc" / "phpvoip.yaml")
    assert {a.host for a in loaded.sip.listen} == {"127.0.0.1"}
    assert {a.transport for a in loaded.sip.listen} == {"udp", "tcp"}
    assert loaded.storage.kind == "sqlite"


def test_packaged_default_is_the_same_file():
    """The copy shipped in the package is the repository's default config."""
    from phpvoip.tap import PACKAGED_CONFIG

    assert PACKAGED_CONFIG.read_bytes() == (ROOT / "etc" / "phpvoip.yaml").read_bytes()


def test_minimal_config_gets_defaults():
    """An empty sip section means loopback UDP+TCP 5060 and RFC timer defaults."""
    loaded = load_text("sip: {}\n", "x.yaml")
    assert [str(a) for a in loaded.sip.listen] == ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]
    assert loaded.sip.timers.t1 == 0.5 and loaded.sip.timers.t2 == 4.0 and loaded.sip.timers.t4 == 5.0
    assert loaded.storage.kind == "memory"
    assert loaded.sip.domain == "127.0.0.1"


def test_ipv6_listen_address():
    """IPv6 listen addresses are written in brackets."""
    loaded = load_text("sip: {listen: ['udp:[::1]:5070']}\n")
    assert loaded.sip.listen[0].host == "::1" and loaded.sip.listen[0].port == 5070


@pytest.mark.parametrize(
    "text, key, words",
    [
        ("sip: {listen: ['udp:localhost:5060']}", "sip.listen[0]", "not TRANSPORT:IP:PORT"),
        ("sip: {listen: ['sctp:127.0.0.1:5060']}", "sip.listen[0]", "not TRANSPORT:IP:PORT"),
        ("sip: {listen: ['udp:127.0.0.1:99999']}", "sip.listen[0]", "out of range"),
        ("sip: {listen: ['udp:1.2.3.4:1', 'udp:1.2.3.4:1']}", "sip.listen[1]", "twice"),
        ("sip: {timers: {t1: fast}}", "sip.timers.t1", "must be a number"),
        ("sip: {timers: {t1: 2, t2: 1}}", "sip.timers.t2", "below t1"),
        ("sip: {timers: {t3: 1}}", "sip.timers.t3", "unknown key"),
        ("sip: {lisen: []}", "sip.lisen", "unknown key"),
        ("sip: []", "sip", "must be a mapping"),
        ("storage: redis", "storage", "not 'memory:' or 'sqlite:PATH'"),
        ("modules: [{type: nosuch}]", "modules[0].type", "unknown module type"),
        ("modules: [{name: x}]", "modules[0].type", "is required"),
        ("routes: [{in_to: '300-200', out_to: '1'}]", "routes[0].in_to", "runs backwards"),
        ("routes: [{in_to: '1', out_to: 'a b'}]", "routes[0].out_to", "plain user part"),
        ("routes: [{in_to: '1', out_too: '2'}]", "routes[0].out_too", "unknown key"),
        ("calls: {ring_timeout: 0}", "calls.ring_timeout", "at least 1"),
        ("media: {mode: sfu}", "media.mode", "not one of direct, relay, rtpengine"),
        ("bogus: 1", "bogus", "unknown key"),
    ],
)
def test_errors_name_key_and_problem(text, key, words):
    """Each mistake is reported as file: key path: problem."""
    error = error_of(text)
    assert error.file == "test.yaml"
    assert error.key == key
    assert words in error.problem
    assert str(error).startswith(f"test.yaml: {key}: ")


def test_yaml_syntax_error_names_line():
    """Broken YAML reports its line and column."""
    error = error_of("sip:\n  listen: [udp:127.0.0.1:5060\n")
    assert "not valid YAML" in error.problem and "line" in error.problem


def test_missing_file_is_reported():
    """A config file that cannot be read is a ConfigError naming it."""
    with pytest.raises(ConfigError) as info:
        load("/nonexistent/phpvoip.yaml")
    assert "cannot read" in str(info.value) and "/nonexistent/phpvoip.yaml" in str(info.value)


def test_routes_are_compiled():
    """The routes section becomes Route objects in order."""
    loaded = load_text(
        "routes:\n"
        "  - {in_from: '*', in_to: '2005', out_from: '2005', out_to: '1001'}\n"
        "  - {in_to: '221', out_to: '231'}\n"
    )
    assert [r.out_to for r in loaded.routes] == ["1001", "231"]
    assert loaded.routes[1].in_from.matches("anyone")


def test_prompts_directory_is_searched_first(tmp_path: Path):
    """`prompts: DIR` puts an operator's WAV files ahead of the bundled ones (same
    name wins); a missing directory is refused naming the key, before anything starts."""
    from twisted.internet.task import Clock

    from phpvoip.media import prompts
    from phpvoip.service import build_engine
    from tests.unit.test_engine import FakeTransport

    error = error_of(f"prompts: {tmp_path / 'nowhere'}\n")
    assert error.key == "prompts" and "is not a directory" in str(error)
    (tmp_path / "greeting.wav").write_bytes(prompts.path("greeting").read_bytes())
    loaded = load_text(f"prompts: {tmp_path}\n", "x.yaml")
    assert loaded.prompts == str(tmp_path)
    try:
        build_engine(loaded, FakeTransport(), Clock())
        assert prompts.resolve("greeting") == str(tmp_path.resolve() / "greeting.wav")
        assert prompts.resolve("goodbye") == str(prompts.BUNDLED / "goodbye.wav")  # not overridden: ours
    finally:
        prompts.remove_directory(tmp_path)
