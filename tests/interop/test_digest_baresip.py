"""baresip 1.0 (libre 1.1) registering against `DigestServer` (via a stand-in registrar)."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from phpvoip.sip.digest import Outcome
from tests.interop._digest_registrar import PASSWORD, USER, free_udp_port, running_registrar

pytestmark = pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip is not installed")

DEADLINE = 10.0  # seconds for baresip to register or give up


def write_config(directory, registrar_port: int) -> None:
    """A headless baresip: no sound card, no console, one account."""
    (directory / "config").write_text(
        "\n".join(
            [
                "poll_method epoll",
                f"sip_listen 127.0.0.1:{free_udp_port()}",
                "net_interface 127.0.0.1",
                "module_path /usr/lib/baresip/modules",
                "module g711.so",
                "module aubridge.so",
                "module ausine.so",
                "module_app account.so",
                "audio_player aubridge,nil",
                "audio_source ausine,440",
                "audio_alert aubridge,nil",
                "",
            ]
        )
    )
    (directory / "accounts").write_text(
        f"<sip:{USER}@127.0.0.1:{registrar_port};transport=udp>;auth_pass={PASSWORD};regint=60\n"
    )


def register_once(tmp_path, algorithms: tuple[str, ...]) -> tuple[list, str]:
    """Run baresip until the registrar verified one answer or baresip reported
    a registration error; return the outcomes and baresip's output."""
    log = tmp_path / "baresip.log"
    with running_registrar(algorithms) as registrar:
        write_config(tmp_path, registrar.port)
        with log.open("w") as out:
            proc = subprocess.Popen(["baresip", "-f", str(tmp_path)], stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + DEADLINE
            while time.monotonic() < deadline and not registrar.outcomes:
                if "Register:" in log.read_text(errors="replace"):
                    break
                time.sleep(0.05)
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        return list(registrar.outcomes), log.read_text(errors="replace")


def test_baresip_registers_with_md5_only(tmp_path):
    """Offered MD5 alone, baresip 1.0 registers and its answers verify (its
    unregister at exit reuses the nonce with nc=2, which passes too)."""
    outcomes, output = register_once(tmp_path, ("MD5",))
    assert outcomes and set(outcomes) == {(Outcome.OK, "MD5")}, output[-2000:]


@pytest.mark.parametrize("algorithms", [("SHA-256", "MD5"), ("MD5", "SHA-256")])
def test_baresip_10_fails_on_any_sha256_challenge(tmp_path, algorithms):
    """libre 1.1 walks every WWW-Authenticate and gives up (ENOSYS) on the first
    one that is not MD5, whatever the order: a registrar serving it must offer
    MD5 alone."""
    outcomes, output = register_once(tmp_path, algorithms)
    assert outcomes == []
    assert "Function not implemented" in output, output[-2000:]
