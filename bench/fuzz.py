"""Fuzz the parsers that read what strangers send: only declared errors may escape.

Run: ``.venv/bin/python bench/fuzz.py [--runs 200000] [--only message,sdp] [--engine atheris|random]``

Targets (each takes bytes; what it may raise is `TARGETS[name].declared`):

- ``message``: `phpvoip.sip.message.parse`, then every typed value read and the
  message written back; ParseError only.
- ``receive``: the transport's `Receiver.receive` (limits, 400/513 answers) and the
  TCP `StreamFramer` over the same bytes cut in two; nothing may escape, and every
  answer serializes.
- ``sdp``: `phpvoip.sip.sdp` (parse_sdp, rejecting_answer, same_media,
  continue_origin, with_direction); ValueError only, from parse_sdp.
- ``auth``: WWW-Authenticate / Authorization values (`phpvoip.sip.authheaders`) and
  the digest server and client over them (`phpvoip.sip.digest`); ParseError from
  parsing, UnsupportedChallenge / ValueError from answering a challenge.
- ``config``: `phpvoip.config.load_text` on YAML text; ConfigError only.

- ``rtp``: what arrives on a media port: `phpvoip.media.rtp.parse_rtp`, the
  relay's per-direction counters (`phpvoip.media.rtpstats.RtpStats`), RFC 4733
  telephone-event payloads through `phpvoip.media.dtmf.DtmfReceiver`, and SIP INFO
  digit bodies (`parse_info_dtmf`); ValueError only, from parse_rtp.

With atheris installed (the ``fuzz`` extra) each target runs in its own process
under libFuzzer, coverage-guided and seeded from the RFC 4475 messages and the
samples below; without it, ``--engine random`` mutates the same seeds (bytes
flipped, inserted, deleted, spliced, repeated) in this process. Either way the
run fails on the first undeclared exception, printing the input. At the end it
prints the inputs run per target and in total.
"""

from __future__ import annotations

import argparse
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RFC4475 = ROOT.parent / "shared" / "rfc4475"


@dataclass(frozen=True)
class Target:
    run: Callable[[bytes], None]
    declared: tuple[type[BaseException], ...]
    seeds: Callable[[], list[bytes]]


def _message(data: bytes) -> None:
    from phpvoip.sip.errors import ParseError
    from phpvoip.sip.message import Request, parse

    try:
        msg = parse(data)
        for _ in msg.headers():
            pass
        msg.via, msg.from_, msg.to, msg.call_id, msg.cseq  # noqa: B018
        msg.max_forwards, msg.contact, msg.route, msg.record_route  # noqa: B018
        if isinstance(msg, Request):
            msg.uri.params, msg.uri.headers, str(msg.uri)
            bytes(msg.response(400))
        bytes(msg)
    except ParseError:
        pass


def _receive(data: bytes) -> None:
    from phpvoip.sip.address import Address
    from phpvoip.sip.limits import MessageLimits
    from phpvoip.sip.transport import Receiver, Reply, StreamFramer

    source = Address("udp", "127.0.0.1", 40000)
    for receiver in (_RECEIVER, Receiver(4000, MessageLimits(20, 256, 5, 512))):
        decision = receiver.receive(data, source)
        if isinstance(decision, Reply):
            bytes(decision.response)
    framer = StreamFramer(4000)
    cut = len(data) // 2
    for part in (data[:cut], data[cut:]):
        for kind, frame in framer.feed(part):
            decision = _RECEIVER.frame(kind, frame, Address("tcp", "127.0.0.1", 40001))
            if isinstance(decision, Reply):
                bytes(decision.response)


def _sdp(data: bytes) -> None:
    from phpvoip.sip import sdp

    try:
        sdp.parse_sdp(data)
    except ValueError:
        pass
    sdp.rejecting_answer(data, "127.0.0.1")
    half = len(data) // 2
    sdp.same_media(data[:half], data[half:])
    sdp.continue_origin(data[half:], data[:half])
    sdp.with_direction(data, "inactive")
    try:
        offer = sdp.parse_sdp(data)
    except ValueError:
        return
    from phpvoip.sip.sdp_offer import NotAcceptable, answer_offer, negotiated

    sdp.rewrite_media(offer, "127.0.0.1", [40000] * len(offer.media))
    sdp.bump_version(sdp.hold_offer(offer))
    try:
        answer = answer_offer(offer, _CODECS, "127.0.0.1", [40000] * len(offer.media))
    except NotAcceptable:
        return
    negotiated(offer, answer)


def _rtp(data: bytes) -> None:
    from phpvoip.media.dtmf import parse_info_dtmf
    from phpvoip.media.rtp import parse_rtp

    if len(data) >= 12:  # the relay counts only what is long enough to be RTP
        _STATS.rtp(data, float(len(data)))
    parse_info_dtmf("application/dtmf-relay", data)
    parse_info_dtmf("application/dtmf", data)
    packet = parse_rtp(data)
    _DTMF.feed(packet)


def _auth(data: bytes) -> None:
    from phpvoip.sip.authheaders import parse_challenges, parse_credentials
    from phpvoip.sip.digest import UnsupportedChallenge, answer_challenge, choose_challenge
    from phpvoip.sip.errors import ParseError

    text = data.decode("utf-8", "surrogateescape")
    try:
        for challenge in parse_challenges(text):
            str(challenge)
    except ParseError:
        pass
    try:
        str(parse_credentials(text))
    except ParseError:
        pass
    server = _digest_server()
    try:
        credentials = server.find_credentials([text])
    except ParseError:
        credentials = None
    if credentials is not None:
        server.verify(credentials, "REGISTER", lambda user, realm, base: None, source="127.0.0.1")
    try:
        chosen = choose_challenge([text])
    except ParseError:
        chosen = None
    if chosen is not None:
        try:
            answer_challenge(chosen, "alice", "secret", "REGISTER", "sip:switch.example")
        except (UnsupportedChallenge, ValueError):
            pass


def _config(data: bytes) -> None:
    from phpvoip.config import load_text
    from phpvoip.settings import ConfigError

    try:
        load_text(data.decode("utf-8", "replace"), "<fuzz>")
    except ConfigError:
        pass


_RECEIVER: object = None
_SERVER: object = None
_STATS: Any = None
_DTMF: Any = None
_CODECS: Any = None


def _digest_server() -> object:
    global _SERVER
    if _SERVER is None:
        from twisted.internet.task import Clock

        from phpvoip.sip.digest import DigestServer

        _SERVER = DigestServer("switch.example", b"k" * 32, Clock())
    return _SERVER


def _setup() -> None:
    global _RECEIVER, _STATS, _DTMF, _CODECS
    from twisted.internet.task import Clock

    from phpvoip.media.dtmf import DtmfReceiver
    from phpvoip.media.rtpstats import RtpStats
    from phpvoip.sip.sdp import STATIC_PAYLOAD_TYPES, Codec
    from phpvoip.sip.transport import Receiver

    _RECEIVER = Receiver()
    # One receiver and one counter for the whole run, as on a long call: state
    # carried from packet to packet is part of what is fuzzed.
    _STATS = RtpStats()
    _DTMF = DtmfReceiver(Clock(), lambda digit, ms: None)
    _CODECS = [STATIC_PAYLOAD_TYPES[0], STATIC_PAYLOAD_TYPES[8],
               Codec(101, "telephone-event", 8000, fmtp="0-16")]


# -- seeds -------------------------------------------------------------------------

_INVITE = (
    b"INVITE sip:bob@switch.example;transport=udp SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKseed;rport\r\n"
    b"Max-Forwards: 70\r\nFrom: \"Alice\" <sip:alice@example.com>;tag=1\r\n"
    b"To: <sip:bob@switch.example>\r\nCall-ID: seed@example.com\r\nCSeq: 1 INVITE\r\n"
    b"Contact: <sip:alice@127.0.0.1:40000>;expires=60, <sip:a2@[::1]:5062;lr>\r\n"
    b"Route: <sip:p1.example.com;lr>\r\nAuthorization: Digest username=\"alice\", realm=\"r\"\r\n"
    b"Content-Type: application/sdp\r\nContent-Length: 34\r\n\r\n"
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\n"
)
_SDP = (
    b"v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\ns=call\r\nc=IN IP4 192.0.2.10\r\n"
    b"t=0 0\r\nm=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\na=sendrecv\r\nm=video 0 RTP/AVP 31\r\n"
)
_AUTH = [
    b'Digest realm="switch.example", nonce="abc", algorithm=SHA-256, qop="auth", opaque="x"',
    b'Digest username="alice", realm="switch.example", nonce="abc", uri="sip:switch.example", '
    b'response="0123456789abcdef", algorithm=MD5, qop=auth, nc=00000001, cnonce="c"',
    b'Digest realm="a\\"b", nonce="n", stale=TRUE, Basic realm="x"',
]


def _message_seeds() -> list[bytes]:
    seeds = [_INVITE, b"SIP/2.0 200 OK\r\n" + _INVITE.split(b"\r\n", 1)[1]]
    if RFC4475.is_dir():
        seeds += [p.read_bytes() for p in sorted(RFC4475.glob("*.dat"))]
    return seeds


def _config_seeds() -> list[bytes]:
    return [
        (ROOT / "phpvoip" / "default.yaml").read_bytes(),
        b"sip:\n  listen: [udp:127.0.0.1:5060]\n  max_vias: 10\nmodules:\n  - type: registrar\n"
        b"    users: {alice: {password: s}}\nroutes:\n  - {match: '^1', to: registrar}\n",
        b"sip: {listen: ['tcp:[::1]:5070'], domain: pbx.example, timers: {t1: 0.1}}\nstorage: memory\n"
        b"limits: {per_source: {requests: 5}, exempt: [10.0.0.0/8]}\n",
    ]


def _rtp_seeds() -> list[bytes]:
    from phpvoip.media.dtmf import dtmf_payloads
    from phpvoip.media.rtp import build_rtp

    seeds = [build_rtp(0, 65535, 2**32 - 160, 0x1234, b"\xff" * 160, marker=True)]
    for i, (payload, marker, _end) in enumerate(dtmf_payloads("5")):
        seeds.append(build_rtp(101, 7 + i, 8000, 0x1234, payload, marker))
    seeds.append(b"\xa0\x00\x00\x01" + b"\x00" * 8 + b"\x01\x02\x03\x04" + b"x" * 20 + b"\x04")  # padding
    seeds.append(b"Signal=5\r\nDuration=160\r\n")
    return seeds


TARGETS: dict[str, Target] = {
    "message": Target(_message, ("ParseError",), _message_seeds),  # type: ignore[arg-type]
    "receive": Target(_receive, (), _message_seeds),
    "sdp": Target(_sdp, ("ValueError",), lambda: [_SDP, _INVITE.split(b"\r\n\r\n")[1]]),  # type: ignore[arg-type]
    "auth": Target(_auth, ("ParseError", "UnsupportedChallenge", "ValueError"), lambda: list(_AUTH)),  # type: ignore[arg-type]
    "config": Target(_config, ("ConfigError",), _config_seeds),  # type: ignore[arg-type]
    "rtp": Target(_rtp, ("ValueError",), _rtp_seeds),  # type: ignore[arg-type]
}


# -- the random engine ----------------------------------------------------------------

_TOKENS = [b"\r\n", b"\r\n\r\n", b";", b",", b":", b"<", b">", b'"', b"\\", b"%", b"%00", b"=",
           b" ", b"\t", b"\x00", b"\xff", b"sip:", b"SIP/2.0", b"Via: ", b"9" * 12, b"-1",
           b"\r\n ", b"\n", b"{", b"}", b"[", b"]", b"- ", b"&a", b"*a", b"!!", b"'"]


def mutate(rng: random.Random, seeds: list[bytes], data: bytes) -> bytes:
    """One random edit of `data` (or a splice with another seed)."""
    choice = rng.randrange(8)
    n = len(data)
    at = rng.randrange(n + 1)
    if choice == 0 and n:
        i = rng.randrange(n)
        return data[:i] + bytes([rng.randrange(256)]) + data[i + 1 :]
    if choice == 1:
        return data[:at] + rng.choice(_TOKENS) + data[at:]
    if choice == 2 and n:
        end = min(n, at + rng.randrange(1, 64))
        return data[:at] + data[end:]
    if choice == 3:
        other = rng.choice(seeds)
        cut = rng.randrange(len(other) + 1)
        return data[:at] + other[cut:]
    if choice == 4 and n:
        end = min(n, at + rng.randrange(1, 32))
        return data[:at] + data[at:end] * rng.randrange(2, 50) + data[end:]
    if choice == 5 and n:
        return data[:at]
    if choice == 6:
        return data[:at] + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8))) + data[at:]
    return data.swapcase() if rng.random() < 0.1 else data[:at] + b"\r\n" + data[at:]


def random_fuzz(name: str, runs: int, seed: int = 1) -> int:
    """Run `runs` mutated inputs through target `name`; raise on an undeclared error."""
    _setup()
    target = TARGETS[name]
    declared = _declared(target)
    seeds = target.seeds()
    rng = random.Random(seed)
    pool = list(seeds)
    for i in range(runs):
        data = rng.choice(pool)
        for _ in range(rng.randrange(1, 4)):
            data = mutate(rng, seeds, data)
        if len(data) > 70000:
            data = data[:70000]
        try:
            target.run(data)
        except declared:
            pass  # a target lets declared errors escape only from what it does not catch
        except Exception as e:
            raise AssertionError(f"{name}: {e.__class__.__name__}: {e} on input {data!r}") from e
        if i % 64 == 0 and len(pool) < 512:
            pool.append(data)
    return runs


def _declared(target: Target) -> tuple[type[BaseException], ...]:
    from phpvoip.settings import ConfigError
    from phpvoip.sip.digest import UnsupportedChallenge
    from phpvoip.sip.errors import ParseError

    known = {"ParseError": ParseError, "ValueError": ValueError, "ConfigError": ConfigError,
             "UnsupportedChallenge": UnsupportedChallenge}
    return tuple(known[n] for n in target.declared)  # type: ignore[index]


# -- the atheris engine (one process a target) ------------------------------------------------

def atheris_child(name: str, runs: int, corpus: Path) -> None:
    """Runs inside the child process: libFuzzer drives the target, instrumented."""
    import atheris

    with atheris.instrument_imports(include=["phpvoip"]):
        import phpvoip.config
        import phpvoip.sip.authheaders
        import phpvoip.sip.digest
        import phpvoip.sip.message
        import phpvoip.sip.sdp
        import phpvoip.sip.transport  # noqa: F401
    _setup()
    target = TARGETS[name]
    declared = _declared(target)

    def one(data: bytes) -> None:
        try:
            target.run(data)
        except declared:
            pass

    corpus.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(target.seeds()):
        (corpus / f"seed-{i:03}").write_bytes(seed)
    atheris.Setup([sys.argv[0], f"-runs={runs}", "-max_len=8192", "-rss_limit_mb=4096",
                   "-print_final_stats=1", str(corpus)], one)
    atheris.Fuzz()


def atheris_fuzz(name: str, runs: int, workdir: Path) -> int:
    """Run target `name` under atheris in a child process; the inputs it ran."""
    cmd = [sys.executable, __file__, "--child", name, "--runs", str(runs), "--corpus", str(workdir / name)]
    done = subprocess.run(cmd, capture_output=True, text=True, errors="replace", cwd=workdir)
    out = done.stdout + done.stderr
    if done.returncode != 0:
        raise AssertionError(f"{name}: atheris exited {done.returncode}:\n{out[-4000:]}")
    m = re.search(r"Done (\d+) runs", out) or re.search(r"stat::number_of_executed_units:\s*(\d+)", out)
    if m is None:
        raise AssertionError(f"{name}: no run count in atheris' output:\n{out[-2000:]}")
    return int(m.group(1))


def have_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=200_000, help="inputs per target")
    parser.add_argument("--only", default=",".join(TARGETS))
    parser.add_argument("--engine", choices=("atheris", "random"), default=None)
    parser.add_argument("--workdir", default="var/fuzz", help="atheris corpora go here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        atheris_child(args.child, args.runs, Path(args.corpus))
        return 0
    engine = args.engine or ("atheris" if have_atheris() else "random")
    workdir = (ROOT / args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    total = 0
    print(f"engine {engine}, {args.runs} inputs per target", flush=True)
    for name in args.only.split(","):
        start = time.monotonic()
        if engine == "atheris":
            count = atheris_fuzz(name, args.runs, workdir)
        else:
            count = random_fuzz(name, args.runs)
        total += count
        elapsed = time.monotonic() - start
        declared = ", ".join(TARGETS[name].declared) or "nothing"
        print(f"{name:8} {count:9d} inputs in {elapsed:6.1f} s ({count / elapsed:7.0f}/s); "
              f"may raise: {declared}; none other raised", flush=True)
    print(f"total    {total:9d} inputs, no undeclared exception")
    return 0


if __name__ == "__main__":
    sys.exit(main())
