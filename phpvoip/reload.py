"""Full reload: apply a fresh config to the running switch without dropping calls or
bindings (SIGHUP, or ``reload()`` in the manhole).

`compare` says what differs between the running `Config` and the fresh one: the
route table, the modules (matched by name), the registrar users, the call settings,
and the sections that only a restart can change. `apply` then swaps the route table,
sets the call settings for new calls, and changes the module list:

- a module whose type and settings are equal is kept, the same running instance;
- a changed module is asked to `reconfigure(settings)` in place (a registrar keeps
  its bindings, a trunk or robot simply takes the new settings); when it has no such
  method or answers False, the old instance is stopped and a new one started once
  it has (an outside line unregisters, then registers again);
- an added module is built and started, a removed one stopped.

Calls in progress are never touched: their legs belong to their bridges, not to
the module that made them, so a call through a removed or restarted module goes on
until one side hangs up. Settings compare by value (dataclasses); a plugin whose
settings do not is restarted at every reload.

Not applied (a restart is needed, and the log line says so): ``sip`` (listen,
domain, timers, sizes, user agent), ``storage``, ``log_level``, ``manhole``,
``metrics``, ``cdr``, ``ladders`` and ``media``. The applied config keeps the running values
of those, so the next reload names them again until the switch is restarted.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from phpvoip.config import Config, ModuleConfig, build_module

__all__ = ["Changes", "Reloaded", "apply", "compare"]

log = Logger()

# Top-level sections that only a restart applies, in the order the log names them.
_RESTART = ("sip", "storage", "log_level", "manhole", "metrics", "cdr", "ladders", "media", "console",
            "prompts")


@dataclass
class UserChanges:
    """Users of one module (a registrar's ``users``) added, removed or changed."""

    module: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        words = [f"+{u}" for u in self.added] + [f"-{u}" for u in self.removed]
        words += [f"~{u}" for u in self.changed]
        return f"{self.module} users: {' '.join(words)}"


@dataclass
class Changes:
    """What differs between two configs, by config key."""

    routes: tuple[int, int] | None = None  # (old count, new count) when the table differs
    added: list[ModuleConfig] = field(default_factory=list)
    removed: list[ModuleConfig] = field(default_factory=list)
    changed: list[tuple[ModuleConfig, ModuleConfig]] = field(default_factory=list)  # (old, new)
    users: list[UserChanges] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)  # "ring_timeout 60 -> 30"
    restart: list[str] = field(default_factory=list)  # config keys: "sip.listen", "manhole"

    def __bool__(self) -> bool:
        return bool(self.routes or self.added or self.removed or self.changed or self.users or self.calls
                    or self.restart)


def compare(old: Config, new: Config) -> Changes:
    """What a reload from `old` to `new` has to do (nothing is applied here)."""
    changes = Changes()
    if list(old.routes) != list(new.routes):
        changes.routes = (len(old.routes), len(new.routes))
    before = {m.name: m for m in old.modules}
    after = {m.name: m for m in new.modules}
    changes.added = [m for name, m in after.items() if name not in before]
    changes.removed = [m for name, m in before.items() if name not in after]
    for name, fresh in after.items():
        running = before.get(name)
        if running is not None and (running.type, running.settings) != (fresh.type, fresh.settings):
            changes.changed.append((running, fresh))
            users = _users(name, running.settings, fresh.settings)
            if users is not None:
                changes.users.append(users)
    for f in fields(old.calls):
        was, now = getattr(old.calls, f.name), getattr(new.calls, f.name)
        if was != now:
            changes.calls.append(f"{f.name} {was:g} -> {now:g}")
    for section in _RESTART:
        was, now = getattr(old, section), getattr(new, section)
        if was == now:
            continue
        if section == "sip":
            changes.restart += [f"sip.{f.name}" for f in fields(was)
                                if getattr(was, f.name) != getattr(now, f.name)]
        else:
            changes.restart.append(section)
    return changes


def _users(module: str, old: Any, new: Any) -> UserChanges | None:
    """The difference of two settings' ``users`` maps, when both have one and it differs."""
    before, after = getattr(old, "users", None), getattr(new, "users", None)
    if not isinstance(before, dict) or not isinstance(after, dict) or before == after:
        return None
    return UserChanges(
        module,
        added=sorted(u for u in after if u not in before),
        removed=sorted(u for u in before if u not in after),
        changed=sorted(u for u in after if u in before and after[u] != before[u]),
    )


class Reloaded:
    """The outcome of an applied reload: true, and printed as its summary (what the
    manhole's ``reload()`` shows). `done` fires when every module started or
    stopped for it has; `config` is what now runs."""

    __slots__ = ("summary", "config", "changes", "done")

    def __init__(self, summary: str, config: Config, changes: Changes, done: defer.Deferred) -> None:
        self.summary = summary
        self.config = config
        self.changes = changes
        self.done = done

    def __bool__(self) -> bool:
        return True

    def __str__(self) -> str:
        return self.summary

    __repr__ = __str__


def apply(engine: Any, old: Config, new: Config) -> Reloaded:
    """Make the running `engine` serve what `new` says (see the module docstring).

    New modules are built before anything changes: a module type that fails to
    build raises, and the switch runs on as it was."""
    changes = compare(old, new)
    running = {m.name: m for m in engine.modules}
    built = {m.name: build_module(m) for m in changes.added}
    # Replacements are built (not started) before anything changes, used or not.
    replacements = {after.name: build_module(after) for _, after in changes.changed}
    restarted: list[tuple[Any, Any]] = []  # (running instance, its replacement)
    labels: list[str] = []
    for before, after in changes.changed:
        module = running.get(before.name)
        if module is None:  # not running (should not happen): start it as added
            built[after.name] = replacements[after.name]
            labels.append(after.name)
            continue
        reconfigure = getattr(module, "reconfigure", None)
        if before.type == after.type and reconfigure is not None and reconfigure(after.settings):
            labels.append(after.name)
            continue
        restarted.append((module, replacements[after.name]))
        how = "re-registering" if getattr(after.settings, "register", False) else "restarted"
        labels.append(f"{after.name} ({how})")

    if changes.routes is not None:
        engine.router.reload(new.routes)
    if changes.calls:
        # Read when a call is bridged and when a leg is answered: new calls get them.
        engine.call_settings = new.calls
        engine.host.keepalive_interval = new.calls.keepalive_interval
    removed = [running[m.name] for m in changes.removed if m.name in running]
    modules = [m for m in engine.modules if m not in removed] + list(built.values())
    done = [_logged(engine.swap_modules(modules, start=built.values(), stop=removed), "started or stopped")]
    done += [_restart(engine, module, replacement) for module, replacement in restarted]
    finished = defer.gatherResults(done)

    kept = {section: getattr(old, section) for section in _RESTART}
    applied = replace(new, **kept)
    return Reloaded(f"reloaded {new.file}: {summary(changes, labels)}", applied, changes, finished)


def _restart(engine: Any, module: Any, replacement: Any) -> defer.Deferred:
    """Stop `module`, then put `replacement` in its place and start it. The old
    instance stays listed while it stops (a line still carries calls while it
    unregisters), so no call finds the module missing."""
    d = _logged(engine.swap_modules(engine.modules, stop=[module]), f"{module.name} stopped")

    def stopped(_: Any) -> Any:
        if module not in engine.modules:  # a later reload removed it meanwhile
            return None
        modules = [replacement if m is module else m for m in engine.modules]
        return _logged(engine.swap_modules(modules, start=[replacement]), f"{replacement.name} started")

    return d.addCallback(stopped)


def _logged(d: defer.Deferred, what: str) -> defer.Deferred:
    """`d`, its failure logged (and consumed): one module's trouble does not stop
    the rest of a reload."""

    def failed(failure: Failure) -> None:
        while isinstance(failure.value, defer.FirstError):
            failure = failure.value.subFailure
        log.failure("reload: a module could not be {what}", failure, what=what)

    return d.addErrback(failed)


def summary(changes: Changes, changed_labels: list[str] | None = None) -> str:
    """One line saying what changed, e.g. ``routes 2 -> 3; modules added: trunk2;
    changed: carrier (re-registering); registrar users: +1003 -1002``."""
    if not changes:
        return "nothing changed"
    parts: list[str] = []
    if changes.routes is not None:
        parts.append("routes {} -> {}".format(*changes.routes))
    labels = changed_labels if changed_labels is not None else [new.name for _, new in changes.changed]
    modules = [(word, names) for word, names in (
        ("added", [m.name for m in changes.added]),
        ("removed", [m.name for m in changes.removed]),
        ("changed", labels),
    ) if names]
    for i, (word, names) in enumerate(modules):
        parts.append(f"{'modules ' if i == 0 else ''}{word}: {', '.join(names)}")
    parts += [str(users) for users in changes.users]
    if changes.calls:
        parts.append(f"calls: {', '.join(changes.calls)}")
    if changes.restart:
        parts.append(f"needs a restart: {', '.join(changes.restart)}")
    return "; ".join(parts)
