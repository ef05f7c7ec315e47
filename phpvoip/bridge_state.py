"""The states of a call's bridge (`phpvoip.bridge.Bridge`), shared by the modules
its behaviour is split across."""

from __future__ import annotations

from enum import Enum

__all__ = ["B", "BridgeState"]


class BridgeState(Enum):
    SETUP = "setup"  # the destination is being dialled
    ANSWERED = "answered"  # two legs joined
    REBRIDGING = "rebridging"  # one leg kept, a new one dialled, the leaving one maybe still up
    ENDED = "ended"


B = BridgeState
