"""Lets the tests run from the checkout, whether or not the package is installed.

The module code is imported from this checkout (its directory goes first on
sys.path). For the type to be found, exactly one copy of the drop-in file must be on
``phpvoip.plugins.__path__`` (phpvoip refuses a type declared twice): for each test,
the installed one if this package is installed, else this checkout's
``phpvoip/plugins/`` directory.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# phpvoip.plugins computes its __path__ when first imported: import it before this
# directory is on sys.path, so that the drop-in is not found outside these tests.
import phpvoip.plugins

EXAMPLE = Path(__file__).resolve().parents[1]
DROP_IN = EXAMPLE / "phpvoip" / "plugins"
DROP_IN_FILE = "phpvoip_blocklist.py"

if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))


@pytest.fixture(autouse=True)
def blocklist_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``type: blocklist`` known, once, for the duration of one test."""
    paths = [p for p in phpvoip.plugins.__path__ if Path(p).resolve() != DROP_IN]
    installed = any((Path(p) / DROP_IN_FILE).is_file() for p in paths)
    monkeypatch.setattr(phpvoip.plugins, "__path__", paths if installed else [*paths, str(DROP_IN)])
