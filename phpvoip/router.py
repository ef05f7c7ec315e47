"""The static route table: rewrite who calls whom before the call goes out.

Each route matches the user parts of From and To and may replace them
(DESIGN.md §1, step 2). Patterns:

- ``*``            anything (also an empty or missing user part)
- ``1001``         that literal
- ``1000-1999``    a numeric range, inclusive at both ends (the PHP original only
                   matched the lower bound; that bug is not reproduced)
- ``00*``          a prefix (anything that starts with ``00``)
- ``a,b,1000-1099`` a list of any of the above

The first matching route wins; no match leaves the request as it was. Only the
Request-URI, From and To change; Contact never does, so the callee still reaches the
caller's real device.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from zope.interface import implementer

from phpvoip.interfaces import IRouter
from phpvoip.sip.message import Request

__all__ = ["Pattern", "Route", "RouteError", "Router"]


class RouteError(ValueError):
    """A route that cannot be used; `field` names the offending key."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class Pattern:
    """A compiled ``in_from``/``in_to`` pattern."""

    __slots__ = ("text", "_any", "_literals", "_ranges", "_prefixes")

    def __init__(self, text: str) -> None:
        self.text = text
        self._any = False
        self._literals: set[str] = set()
        self._ranges: list[tuple[int, int]] = []
        self._prefixes: list[str] = []
        for item in (part.strip() for part in text.split(",")):
            if not item:
                raise ValueError(f"empty item in pattern {text!r}")
            if item == "*":
                self._any = True
            elif item.endswith("*"):
                prefix = item[:-1]
                if "*" in prefix:
                    raise ValueError(f"'*' may only end a prefix, in {item!r}")
                self._prefixes.append(prefix)
            elif "-" in item[1:] and item.replace("-", "", 1).isdigit():
                low, high = item.split("-")
                if int(low) > int(high):
                    raise ValueError(f"range {item!r} runs backwards")
                self._ranges.append((int(low), int(high)))
            elif "*" in item:
                raise ValueError(f"'*' may only end a prefix, in {item!r}")
            else:
                self._literals.add(item)

    def matches(self, user: str) -> bool:
        if self._any or user in self._literals:
            return True
        if self._ranges and user.isdigit() and user.isascii():
            number = int(user)
            if any(low <= number <= high for low, high in self._ranges):
                return True
        return any(user.startswith(prefix) for prefix in self._prefixes)

    def _key(self) -> tuple:
        return (self._any, frozenset(self._literals), tuple(self._ranges), tuple(self._prefixes))

    # By value, so that a reload can tell an unchanged route or module from a changed one.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Pattern):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Pattern({self.text!r})"


@dataclass(frozen=True)
class Route:
    """One row of the table. An ``out_*`` of None keeps the value it had."""

    FIELDS = ("in_from", "in_to", "out_from", "out_to")

    in_from: Pattern
    in_to: Pattern
    out_from: str | None
    out_to: str | None

    @classmethod
    def from_fields(
        cls,
        in_from: str = "*",
        in_to: str = "*",
        out_from: str | None = None,
        out_to: str | None = None,
    ) -> Route:
        patterns = []
        for name, text in (("in_from", in_from), ("in_to", in_to)):
            try:
                patterns.append(Pattern(text))
            except ValueError as e:
                raise RouteError(name, str(e)) from None
        outs = []
        for name, text in (("out_from", out_from), ("out_to", out_to)):
            if text in (None, "", "*"):
                outs.append(None)
            elif any(ch in text for ch in ",*@<> \t;:"):
                raise RouteError(name, f"{text!r} must be a plain user part (a number or name)")
            else:
                outs.append(text)
        return cls(patterns[0], patterns[1], outs[0], outs[1])

    def matches(self, from_user: str, to_user: str) -> bool:
        return self.in_from.matches(from_user) and self.in_to.matches(to_user)


@implementer(IRouter)
class Router:
    """Applies the first matching route; `reload()` swaps the table atomically."""

    def __init__(self, routes: Iterable[Route] = ()) -> None:
        self.routes: tuple[Route, ...] = tuple(routes)

    def reload(self, routes: Iterable[Route]) -> None:
        self.routes = tuple(routes)

    def lookup(self, from_user: str, to_user: str) -> Route | None:
        for route in self.routes:
            if route.matches(from_user, to_user):
                return route
        return None

    def route(self, invite: Request) -> Request:
        return self.route_with(invite)[0]

    def route_with(self, invite: Request) -> tuple[Request, Route | None]:
        """The routed request and the route that matched (None: unchanged)."""
        from_user = invite.from_.uri.user or ""
        to_user = invite.to.uri.user or ""
        route = self.lookup(from_user, to_user)
        if route is None or (route.out_from is None and route.out_to is None):
            return invite, route
        routed = invite.copy()
        if route.out_from is not None:
            routed.from_.uri.user = route.out_from
        if route.out_to is not None:
            routed.to.uri.user = route.out_to
            if routed.uri.is_sip:
                routed.uri.user = route.out_to
        return routed, route
