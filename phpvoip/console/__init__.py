"""The web console (issue 13): live calls, registrations, lines, queues, call records,
ladders and route explanations in a browser, on the switch's own HTTP port.

- `passwords`: PBKDF2 hashes (``python -m phpvoip.console.passwd`` makes one);
- `auth`: users, sessions, CSRF tokens; `throttle`: failed logins per address;
- `clients`: the client's address behind a trusted reverse proxy;
- `feed`: the call observer that streams Server-Sent Events to the pages;
- `data`, `records`, `ladder_svg`: what is shown, as dicts, CSV and SVG;
- `pages`: the HTML; `web`: the twisted.web resources; `static/`: CSS and JS.

`console_service` makes the child service `phpvoip.service` adds for a ``console:``
section.
"""

from __future__ import annotations

from typing import Any

from twisted.application import strports

from phpvoip.console.auth import Sessions
from phpvoip.console.feed import ConsoleFeed
from phpvoip.console.web import console_site
from phpvoip.opsconfig import ConsoleSettings

__all__ = ["console_service"]


def console_service(settings: ConsoleSettings, service: Any) -> Any:
    """The console child service of `service` (a `SwitchService`): the feed observes
    the engine from now on, so the chart counts calls made before the port binds."""
    reactor = service.reactor
    feed = ConsoleFeed(service.engine, reactor, settings.max_rows)
    service.engine.add_observer(feed)
    sessions = Sessions(settings, reactor)
    site = console_site(service, sessions, feed, settings.trusted_proxies)
    child = strports.service(settings.listen.endpoint, site, reactor=reactor)
    child.console_feed = feed  # type: ignore[attr-defined]  # for tests and the manhole
    child.console_sessions = sessions  # type: ignore[attr-defined]
    child.console_site = site  # type: ignore[attr-defined]
    stop = child.stopService

    def stop_service() -> Any:
        feed.close()  # open event streams would keep the port from closing
        return stop()

    child.stopService = stop_service  # type: ignore[method-assign]
    return child
