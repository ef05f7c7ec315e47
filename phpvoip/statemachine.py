"""Explicit state machines for call control: legs, forks and bridges.

Like the transaction machines of `phpvoip.sip.transaction_base`, each machine is one
class whose transitions are a literal table written at the top of the class,
``{state: {event: handler name}}``. Every event goes through `StateMachine._event`,
which looks the pair up; a pair the table does not list raises `StateMachineError`
naming machine, state and event, because an event that cannot happen in a state is a
bug to find, not something to ignore silently. Races that *can* happen (a late 18x
after a CANCEL, a second hang-up) are listed in the table with ``"_ignore"``, so the
table says which ones are expected.

Handler names are resolved to functions once, when the class is created, so that a
typo fails at import and dispatch costs two dict lookups.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, ClassVar

__all__ = ["StateMachine", "StateMachineError"]


class StateMachineError(Exception):
    """A machine was given an event its table has no entry for in its current state."""

    def __init__(self, machine: str, state: Enum, event: str) -> None:
        super().__init__(f"{machine} in state {state.name} cannot take event {event!r}")
        self.machine = machine
        self.state = state
        self.event = event


_NOTHING: dict[str, Any] = {}


class StateMachine:
    """Base of a machine: subclasses set `TABLE` and keep `state`."""

    __slots__ = ()

    TABLE: ClassVar[dict[Any, dict[str, str]]] = {}
    _HANDLERS: ClassVar[dict[Any, dict[str, Any]]] = {}
    state: Any

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        handlers: dict[Any, dict[str, Any]] = {}
        for state, events in cls.TABLE.items():
            handlers[state] = {}
            for event, name in events.items():
                function = getattr(cls, name, None)
                if function is None:
                    raise TypeError(f"{cls.__name__}.TABLE[{state.name}][{event!r}] names no method {name!r}")
                handlers[state][event] = function
        cls._HANDLERS = handlers

    def _event(self, event: str, *args: Any) -> Any:
        handler = self._HANDLERS.get(self.state, _NOTHING).get(event)
        if handler is None:
            raise StateMachineError(type(self).__name__, self.state, event)
        return handler(self, *args)

    def _ignore(self, *args: Any) -> None:
        """An event the table expects in this state and that changes nothing."""

    @classmethod
    def transitions(cls) -> list[tuple[str, str, str]]:
        """The table as ``(state, event, handler)`` rows, for docs and tests."""
        return [
            (state.name, event, name) for state, events in cls.TABLE.items() for event, name in events.items()
        ]
