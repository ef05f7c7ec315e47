"""The blocklist module: refuses calls whose caller is on a list, passes the rest on.

It sits above every built-in module (default weight 1000), so the engine asks it
first. It never takes a call: a listed caller gets a final refusal (603 Decline by
default), anyone else gets `NotMine` and the engine asks the next module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.logger import Logger
from zope.interface import implementer

from phpvoip.interfaces import CallRejected, IModule, IncomingCall, NotMine
from phpvoip.router import Pattern
from phpvoip.settings import Section

__all__ = ["Blocklist", "BlocklistSettings", "parse_settings"]

log = Logger()


@dataclass(frozen=True)
class BlocklistSettings:
    numbers: Pattern  # callers (From user parts) to refuse
    status: int = 603
    reason: str | None = None  # None: the status's standard phrase
    weight: int = 1000  # above every built-in module (registrar 100 is the highest)


def parse_settings(section: Section) -> BlocklistSettings:
    """Read one ``modules[i]`` entry of ``type: blocklist``; errors name the key."""
    texts = section.strings("numbers")
    if not texts:
        raise section.error("numbers", "must list at least one number or pattern")
    for i, text in enumerate(texts):
        try:
            Pattern(text)
        except ValueError as e:
            raise section.error(f"numbers[{i}]", str(e)) from None
    status = section.integer("status", 603)
    if not 400 <= status <= 699:
        raise section.error("status", f"must be a final error status (4xx, 5xx or 6xx), not {status}")
    reason = section.string("reason", None)
    if reason is not None and (not reason.strip() or not reason.isprintable()):
        # It goes into the status line: a line break there would split the response.
        raise section.error("reason", "must be one line of printable text")
    return BlocklistSettings(
        numbers=Pattern(",".join(texts)),
        status=status,
        reason=reason,
        weight=section.integer("weight", 1000),
    )


@implementer(IModule)
class Blocklist:
    """Refuses calls from the numbers in its settings; declines everything else."""

    def __init__(self, name: str, settings: BlocklistSettings) -> None:
        self.name = name
        self.settings = settings
        self.weight = settings.weight

    def __repr__(self) -> str:
        return f"<Blocklist {self.name} {self.settings.numbers.text!r}>"

    def start(self, engine: Any) -> None:
        pass

    def stop(self) -> None:
        pass

    def callin(self, call: IncomingCall) -> Any:
        # A From URI without a user part (or a tel: URI) has no number to match;
        # only a "*" pattern refuses such callers.
        caller = call.invite.from_.uri.user or ""  # type: ignore[attr-defined]
        settings = self.settings
        if not settings.numbers.matches(caller):
            raise NotMine()
        log.info(
            "{module}: refused call {callID} from {caller} ({source}) with {status}",
            module=self.name,
            callID=call.call_id,
            caller=caller,
            source=call.source if call.source is not None else "local",  # an application's call
            status=settings.status,
        )
        raise CallRejected(settings.status, settings.reason)

    def callout(self, invite: Any, call: IncomingCall) -> Any:
        raise NotMine()

    def request(self, request: Any, transaction: Any, source: Any) -> bool:
        raise NotMine()
