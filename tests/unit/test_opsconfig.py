"""The operations sections: listen addresses are checked for reachability, paths
for existence, and every mistake names file and key before anything binds."""

from __future__ import annotations

from pathlib import Path

import pytest

from phpvoip.config import ConfigError, load_text


def keys_file(tmp_path: Path) -> str:
    path = tmp_path / "manhole_keys"
    path.write_text("")
    return str(path)


def test_absent_sections_mean_nothing_listens():
    loaded = load_text("sip: {}\n", "x.yaml")
    assert loaded.manhole is None and loaded.metrics is None
    assert loaded.cdr.enabled is False  # memory storage: nowhere to write rows


def test_call_records_are_on_by_default_with_sqlite():
    loaded = load_text("storage: sqlite:var/x.db\n", "x.yaml")
    assert loaded.cdr.enabled and loaded.cdr.batch == 200 and loaded.cdr.flush_interval == 1.0


def test_loopback_manhole_and_metrics(tmp_path: Path):
    keys = keys_file(tmp_path)
    loaded = load_text(
        f"manhole: {{listen: 'tcp:2222:interface=127.0.0.1', authorized_keys: {keys}}}\n"
        "metrics: {listen: 'tcp:9090:interface=\\:\\:1'}\n",
        "x.yaml",
    )
    assert loaded.manhole.listen.port == 2222 and loaded.manhole.listen.interface == "127.0.0.1"
    assert loaded.manhole.authorized_keys == keys and loaded.manhole.host_key == "var/manhole_host_key"
    assert loaded.metrics.listen.interface == "::1" and loaded.metrics.path == "/metrics"


def test_keys_file_may_come_later(tmp_path: Path):
    """The keys are read at each login: a file not made yet lets nobody in."""
    missing = tmp_path / "not-yet"
    loaded = load_text(f"manhole: {{listen: 'tcp:2222:interface=127.0.0.1', authorized_keys: {missing}}}\n")
    assert loaded.manhole.authorized_keys == str(missing)


def test_remote_listen_needs_allow_remote(tmp_path: Path):
    keys = keys_file(tmp_path)
    loaded = load_text(
        f"manhole: {{listen: 'tcp:2222:interface=192.0.2.1', authorized_keys: {keys}, allow_remote: true}}\n"
        "metrics: {listen: 'tcp:9090', allow_remote: true}\n",
        "x.yaml",
    )
    assert loaded.manhole.allow_remote and not loaded.manhole.listen.loopback
    assert loaded.metrics.listen.interface == ""


@pytest.mark.parametrize(
    "text, key, words",
    [
        ("metrics: {listen: 'tcp:9090'}", "metrics.listen", "every interface is reachable"),
        ("metrics: {listen: 'tcp:9090:interface=10.0.0.1'}", "metrics.listen", "10.0.0.1 is reachable"),
        ("metrics: {listen: 'udp:9090'}", "metrics.listen", "is not 'tcp:PORT:interface=IP'"),
        ("metrics: {listen: 'tcp:99999:interface=127.0.0.1'}", "metrics.listen", "out of range"),
        ("metrics: {listen: 'tcp:1:interface=localhost'}", "metrics.listen", "not an IP address"),
        ("metrics: {listen: 'tcp:1:interface=127.0.0.1:ssl=1'}", "metrics.listen", "'ssl' is not an option"),
        ("metrics: {listen: 'tcp:1:interface=127.0.0.1', path: 'x y'}", "metrics.path", "not a URL path"),
        ("metrics: {listen: 'tcp:1:interface=127.0.0.1', port: 1}", "metrics.port", "unknown key"),
        ("metrics: {}", "metrics.listen", "is required"),
        ("manhole: {listen: 'tcp:2222:interface=127.0.0.1', authorized_keys: /}",
         "manhole.authorized_keys", "'/' is not a file"),
        ("cdr: {enabled: true}", "cdr.enabled", "set storage: sqlite:PATH"),
        ("storage: sqlite:x.db\ncdr: {batch: 0}", "cdr.batch", "at least 1"),
        ("ladders: {messages: 1}", "ladders.messages", "at least 2"),
        ("ladders: {enabled: 'yes'}", "ladders.enabled", "true or false"),
    ],
)
def test_mistakes_name_file_and_key(text: str, key: str, words: str):
    with pytest.raises(ConfigError) as caught:
        load_text(text + "\n", "ops.yaml")
    message = str(caught.value)
    assert message.startswith(f"ops.yaml: {key}: "), message
    assert words in message
