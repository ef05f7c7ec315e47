"""Tags, branches and Call-IDs all come from phpvoip.sip.ids."""

from __future__ import annotations

import re
from pathlib import Path

from phpvoip.sip import dialog, transaction
from phpvoip.sip.ids import MAGIC_COOKIE, new_branch, new_call_id, new_tag

PACKAGE = Path(__file__).resolve().parents[2] / "phpvoip"


def test_formats():
    """Branches carry the magic cookie; tags and Call-IDs are random hex."""
    assert re.fullmatch(MAGIC_COOKIE + "[0-9a-f]{20}", new_branch())
    assert re.fullmatch("[0-9a-f]{12}", new_tag())
    assert re.fullmatch("[0-9a-f]{20}@127.0.0.1", new_call_id("127.0.0.1"))


def test_unique():
    """Ten thousand of each are all different."""
    for make in (new_tag, new_branch, lambda: new_call_id("h")):
        assert len({make() for _ in range(10_000)}) == 10_000


def test_one_generator():
    """The transaction and dialog layers re-export the same functions, and no other
    module makes identifiers of its own."""
    assert transaction.new_branch is new_branch and transaction.new_tag is new_tag
    assert dialog.new_branch is new_branch and dialog.new_tag is new_tag
    makers = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if path.name != "ids.py" and re.search(r"token_hex\(|uuid4\(", text) and path.name != "digest.py":
            makers.append(path.name)
    assert makers == []
