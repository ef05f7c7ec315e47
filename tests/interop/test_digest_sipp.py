"""SIPp 3.6's ``[authentication]`` against `DigestServer` (via a stand-in registrar)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from phpvoip.sip.digest import Outcome
from tests.interop._digest_registrar import Registrar, free_udp_port, running_registrar

pytestmark = pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp is not installed")

SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="register with digest">
  <send retrans="500">
    <![CDATA[
REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:1001@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
To: <sip:1001@[remote_ip]>
Call-ID: [call_id]
CSeq: 1 REGISTER
Contact: <sip:1001@[local_ip]:[local_port]>
Max-Forwards: 70
Expires: 60
Content-Length: 0

    ]]>
  </send>
  <recv response="401" auth="true"/>
  <send retrans="500">
    <![CDATA[
REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:1001@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
To: <sip:1001@[remote_ip]>
Call-ID: [call_id]
CSeq: 2 REGISTER
Contact: <sip:1001@[local_ip]:[local_port]>
[authentication username=1001 password=secret1]
Max-Forwards: 70
Expires: 60
Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
</scenario>
"""


def run_sipp(tmp_path, registrar: Registrar) -> subprocess.CompletedProcess:
    scenario = tmp_path / "register.xml"
    scenario.write_text(SCENARIO)
    cmd = [
        "sipp", f"127.0.0.1:{registrar.port}",
        "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(free_udp_port()),
        "-m", "1", "-timeout", "10s", "-nostdin", "-trace_err", "-trace_msg",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


@pytest.mark.parametrize("algorithms", [("MD5",), ("MD5", "SHA-256")])
def test_sipp_registers_when_md5_comes_first(tmp_path, algorithms):
    """SIPp answers MD5 correctly when the first challenge is MD5."""
    with running_registrar(algorithms) as registrar:
        proc = run_sipp(tmp_path, registrar)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert registrar.outcomes == [(Outcome.OK, "MD5")]


def test_sipp_36_reads_only_the_first_challenge(tmp_path):
    """With SHA-256 first (RFC 8760 order) SIPp 3.6 never answers: it reads only the
    first WWW-Authenticate and refuses its algorithm (SIPp issue #488), so a
    registrar serving SIPp must offer MD5 first or alone."""
    with running_registrar(("SHA-256", "MD5")) as registrar:
        proc = run_sipp(tmp_path, registrar)
    assert proc.returncode != 0
    assert registrar.outcomes == []
    errors = "".join(p.read_text(errors="replace") for p in tmp_path.glob("*errors.log"))
    assert "createAuthHeader: authentication must use MD5" in errors, errors[-2000:]
