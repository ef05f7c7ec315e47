"""Property tests over the fuzz targets of bench/fuzz.py (issue 14): the message
parser, the transport's receive path, SDP, digest headers and the config loader
raise only their declared errors, whatever they are given. A short run of the
bench's own engines (random mutation, and atheris where installed) is here too."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import fuzz  # noqa: E402  (bench/ is not a package)

from phpvoip.config import load_text  # noqa: E402
from phpvoip.settings import ConfigError  # noqa: E402
from phpvoip.sip.sdp import continue_origin, parse_sdp  # noqa: E402

fuzz._setup()
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run(name: str, data: bytes) -> None:
    """Run target `name`; its declared errors may escape, nothing else."""
    try:
        fuzz.TARGETS[name].run(data)
    except fuzz._declared(fuzz.TARGETS[name]):
        pass


def mutated(name: str) -> st.SearchStrategy[bytes]:
    """A seed of the target with a few random edits (the random engine's)."""
    seeds = fuzz.TARGETS[name].seeds()

    def build(rng: random.Random) -> bytes:
        data = rng.choice(seeds)
        for _ in range(rng.randrange(1, 5)):
            data = fuzz.mutate(rng, seeds, data)
        return data

    return st.randoms(use_true_random=False).map(build)


@pytest.mark.parametrize("name", sorted(fuzz.TARGETS))
def test_seeds_run_cleanly(name: str) -> None:
    """Every seed goes through its target without an undeclared error."""
    for seed in fuzz.TARGETS[name].seeds():
        run(name, seed)


@FAST
@given(st.one_of(st.binary(max_size=3000), mutated("message")))
def test_message_parser_raises_only_parse_error(data: bytes) -> None:
    """parse() and the typed values read from what it returns: ParseError only."""
    run("message", data)


@FAST
@given(mutated("receive"))
def test_receive_path_never_raises(data: bytes) -> None:
    """The transport's receive rules (limits, 400/513 answers, TCP framing) never
    raise, and every answer serializes."""
    fuzz.TARGETS["receive"].run(data)


@FAST
@given(st.one_of(st.binary(max_size=2000), mutated("sdp"),
                 st.text(alphabet="vosm=019 \r\n/IP4²٣.-:", max_size=400).map(str.encode)))
def test_sdp_raises_only_value_error(data: bytes) -> None:
    """parse_sdp raises ValueError for what is not SDP; the B2BUA helpers never raise."""
    run("sdp", data)


@FAST
@given(st.one_of(mutated("auth"),
                 st.text(alphabet='Digest realm=",\\ \tn\x00\r\nqop', max_size=300).map(str.encode)))
def test_digest_headers_raise_only_declared_errors(data: bytes) -> None:
    """Auth headers parse or raise ParseError; the digest server and client handle
    whatever parses without an undeclared error."""
    run("auth", data)


KEYS = ["sip", "listen", "domain", "timers", "t1", "max_vias", "max_headers", "storage", "modules",
        "type", "registrar", "users", "password", "routes", "match", "to", "calls", "limits",
        "per_source", "requests", "exempt", "manhole", "metrics", "cdr", "ladders", "log_level"]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                    st.sampled_from(["udp:127.0.0.1:5060", "memory", "sqlite:", "registrar", "info", "",
                                     "tcp:[::1]:99999", "10.0.0.0/8", "x" * 300]), st.text(max_size=20))
TREES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)),
                                                 inner, max_size=5)), max_leaves=25)


@FAST
@given(st.one_of(st.dictionaries(st.sampled_from(KEYS), TREES, max_size=6).map(
    lambda d: yaml.safe_dump(d).encode()), mutated("config")))
def test_config_loader_raises_only_config_error(data: bytes) -> None:
    """load_text on any YAML document (known keys with values of any shape, or a
    mangled real config) either loads or raises ConfigError."""
    run("config", data)


def test_what_fuzzing_found_stays_fixed() -> None:
    """Digits that str.isdigit() accepts but int() refuses ('²') in an SDP origin
    or media port, and YAML's .nan and .inf for a number in the config."""
    body = b"v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\n"
    assert continue_origin(body, "o=a 1 \u00b2 IN IP4 x\r\n".encode()) == body
    with pytest.raises(ValueError, match="bad media line"):
        parse_sdp("v=0\r\nm=audio \u00b2 RTP/AVP 0\r\n".encode())
    for value in (".nan", ".inf", "-.inf"):
        with pytest.raises(ConfigError, match="finite"):
            load_text(f"sip: {{listen: ['udp:127.0.0.1:5060'], timers: {{t1: {value}}}}}\n")


def test_random_engine_short_run() -> None:
    """bench/fuzz.py's own random engine, 2,000 inputs a target."""
    for name in fuzz.TARGETS:
        assert fuzz.random_fuzz(name, 2000, seed=7) == 2000


def test_atheris_engine_short_run(tmp_path: Path) -> None:
    """Where atheris is installed (the fuzz extra), bench/fuzz.py runs a target under
    it in a child process and reports the count."""
    if not fuzz.have_atheris():
        if os.environ.get("CI"):
            pytest.fail("atheris is not installed (pip install -e '.[fuzz]')")
        pytest.skip("atheris is not installed (the fuzz extra)")
    out = subprocess.run(
        [sys.executable, str(BENCH / "fuzz.py"), "--engine", "atheris", "--runs", "3000",
         "--only", "sdp,auth", "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    assert "total         6000 inputs, no undeclared exception" in out, out


@FAST
@given(st.one_of(st.binary(max_size=300), mutated("rtp")))
def test_rtp_and_dtmf_raise_only_value_error(data: bytes) -> None:
    """What arrives on a media port: only parse_rtp's ValueError may escape; the
    counters, the RFC 4733 receiver and the INFO body reader take anything."""
    run("rtp", data)
