"""The settings of a `type: queue` module and their parser.

Every key has a default but `number`; a bad value names the file, the key and the
problem (`phpvoip.settings.Section`). Times are seconds; 0 turns a limit off.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from phpvoip.apps.settings import AppSettings, app_settings
from phpvoip.settings import Section

__all__ = ["STRATEGIES", "AgentSettings", "FeatureCodes", "QueueSettings", "parse_settings"]

STRATEGIES = ("ring-all", "round-robin", "longest-idle", "fewest-calls", "random", "linear")


@dataclass(frozen=True, slots=True)
class AgentSettings:
    """One agent's timers: how long its phone rings, how long it rests after a
    missed offer, how long it writes up after a call; and its `penalty` (Asterisk's
    word): an agent is offered calls only while no available agent has a lower one."""

    number: str
    ring_timeout: float = 15.0
    retry_delay: float = 5.0
    wrapup: float = 0.0
    penalty: int = 0


@dataclass(frozen=True, slots=True)
class FeatureCodes:
    """What an agent dials to log in, log out and toggle pause. Each may be
    followed by a queue's number to act on that queue only (``*45700``)."""

    login: str = "*45"
    logout: str = "*46"
    pause: str = "*47"

    def match(self, dialled: str) -> tuple[str, str] | None:
        """``(action, queue number or '')`` for a dialled number, or None."""
        for action, code in (("login", self.login), ("logout", self.logout), ("pause", self.pause)):
            if code and dialled.startswith(code):
                return action, dialled[len(code):]
        return None


QUEUE_PORTS = "21000-21999"  # RTP for waiting callers: 500 at once


@dataclass(frozen=True, kw_only=True)
class QueueSettings(AppSettings):
    """What `parse_settings` reads (the shared application keys included)."""

    strategy: str = "ring-all"
    agents: tuple[AgentSettings, ...] = ()  # static: logged in from the start
    dynamic_agents: tuple[str, ...] = ()  # may log in with the feature codes; "any": anyone
    dynamic_settings: tuple[AgentSettings, ...] = ()  # those of them listed with their own settings
    ring_timeout: float = 15.0
    retry_delay: float = 5.0
    wrapup: float = 0.0
    max_no_answer: int = 3  # missed offers in a row before the agent is paused; 0: never
    announce_frequency: float = 30.0  # position and wait announcements; 0: off
    exit_digit: str = ""
    exit_to: str = ""
    max_wait: float = 0.0
    max_callers: int = 0
    overflow: str = ""  # where callers go on max_wait, a full or an empty queue
    join_empty: bool = True
    leave_when_empty: bool = False
    service_level: float = 20.0
    music: str | None = None
    welcome: tuple[str, ...] = ("queue-welcome",)  # prompts a caller hears on joining; () none
    features: FeatureCodes = field(default_factory=FeatureCodes)

    def agent(self, number: str) -> AgentSettings:
        """The settings of `number`: its own if it is listed with them (static or
        dynamic), else the queue's."""
        for agent in (*self.agents, *self.dynamic_settings):
            if agent.number == number:
                return agent
        return AgentSettings(number, self.ring_timeout, self.retry_delay, self.wrapup)

    def may_log_in(self, number: str) -> bool:
        return ("any" in self.dynamic_agents or number in self.dynamic_agents
                or any(a.number == number for a in self.agents))


def _seconds(section: Section, name: str, default: float) -> float:
    return float(section.number(name, default, minimum=0))


def _agents(section: Section, key: str, defaults: AgentSettings) -> tuple[AgentSettings, ...]:
    """The agents listed under `key`: numbers, or mappings with number: and their own
    ring_timeout, retry_delay, wrapup, penalty. Each may be listed once."""
    agents: list[AgentSettings] = []
    for i, item in enumerate(section.items(key)):
        if isinstance(item, (str, int)) and not isinstance(item, bool):
            agent = AgentSettings(str(item), defaults.ring_timeout, defaults.retry_delay, defaults.wrapup)
        elif isinstance(item, dict):
            one = Section(section.file, section.key(key) + f"[{i}]", item)
            agent = AgentSettings(
                one.string("number"),
                float(one.number("ring_timeout", defaults.ring_timeout, minimum=0.1)),
                _seconds(one, "retry_delay", defaults.retry_delay),
                _seconds(one, "wrapup", defaults.wrapup),
                one.integer("penalty", 0, minimum=0),
            )
            one.check_unknown()
        else:
            raise section.error(f"{key}[{i}]", "must be a number or a mapping with number:")
        if any(a.number == agent.number for a in agents):
            raise section.error(f"{key}[{i}]", f"agent {agent.number} is listed twice")
        agents.append(agent)
    return tuple(agents)


def parse_settings(section: Section) -> QueueSettings:
    """Read a ``type: queue`` entry; see the README's "Agent queue"."""
    strategy = section.string("strategy", "ring-all")
    if strategy not in STRATEGIES:
        raise section.error("strategy", f"must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    ring_timeout = float(section.number("ring_timeout", 15.0, minimum=0.1))
    retry_delay = _seconds(section, "retry_delay", 5.0)
    wrapup = _seconds(section, "wrapup", 0.0)
    defaults = AgentSettings("", ring_timeout, retry_delay, wrapup)
    agents = _agents(section, "agents", defaults)
    dynamic = _agents(section, "dynamic_agents", defaults)  # a static agent may be listed too
    exit_digit = section.string("exit_digit", "")
    if exit_digit and (len(exit_digit) != 1 or exit_digit not in "0123456789*#"):
        raise section.error("exit_digit", f"must be one digit 0-9, * or #, not {exit_digit!r}")
    exit_to = section.string("exit_to", "")
    if exit_digit and not exit_to:
        raise section.error("exit_to", "is required with exit_digit (where the caller goes)")
    codes = section.section("feature_codes", {})
    features = FeatureCodes(codes.string("login", "*45"), codes.string("logout", "*46"),
                            codes.string("pause", "*47"))
    codes.check_unknown()
    if len({features.login, features.logout, features.pause}) != 3:
        raise section.error("feature_codes", "login, logout and pause must differ")
    return QueueSettings(
        **app_settings(section, ports=QUEUE_PORTS, max_duration=4 * 3600.0),
        strategy=strategy,
        agents=agents,
        dynamic_agents=tuple(a.number for a in dynamic),
        dynamic_settings=tuple(a for a, item in zip(dynamic, section.items("dynamic_agents"), strict=True)
                               if isinstance(item, dict)),
        ring_timeout=ring_timeout,
        retry_delay=retry_delay,
        wrapup=wrapup,
        max_no_answer=section.integer("max_no_answer", 3, minimum=0),
        announce_frequency=_seconds(section, "announce_frequency", 30.0),
        exit_digit=exit_digit,
        exit_to=exit_to,
        max_wait=_seconds(section, "max_wait", 0.0),
        max_callers=section.integer("max_callers", 0, minimum=0),
        overflow=section.string("overflow", ""),
        join_empty=section.boolean("join_empty", True),
        leave_when_empty=section.boolean("leave_when_empty", False),
        service_level=_seconds(section, "service_level", 20.0),
        music=section.string("music", None),
        welcome=tuple(section.strings("welcome", ["queue-welcome"])),
        features=features,
    )
