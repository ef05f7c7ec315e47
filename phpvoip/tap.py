"""twistd glue: the command-line options and the service maker.

The config is loaded and validated in `Options.postOptions`, before twistd builds or
starts anything, so a bad config exits non-zero without binding a socket.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from twisted.application.service import IService
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    textFileLogObserver,
)
from twisted.python import usage
from twisted.python.logfile import LogFile

from phpvoip import config
from phpvoip.logfilter import QuietMediaPorts

DEFAULT_CONFIG = "etc/phpvoip.yaml"
# The same default config, installed with the package, for when the switch is started
# from a directory that has no etc/phpvoip.yaml (e.g. after `pip install .`).
PACKAGED_CONFIG = Path(__file__).with_name("default.yaml")


class Options(usage.Options):
    synopsis = "[--config PATH]"
    longdesc = "Run the phpvoip SIP softswitch with the given YAML config."
    optParameters = [
        ["config", "c", None, f"YAML config file (default: {DEFAULT_CONFIG})"],
    ]

    def postOptions(self) -> None:
        path = self["config"]
        if path is None:
            path = DEFAULT_CONFIG if Path(DEFAULT_CONFIG).exists() else str(PACKAGED_CONFIG)
        try:
            self["loaded"] = config.load(path)
        except config.ConfigError as e:
            raise usage.UsageError(str(e)) from None
        media = self["loaded"].media
        if media.mode == "rtpengine":
            from phpvoip.media.ng import ping_before_start

            problem = ping_before_start(media.ng, media.timeout, media.retries)
            if problem is not None:
                raise usage.UsageError(f"{path}: media: {problem}")


def makeService(options: Options) -> IService:
    from phpvoip.service import build_service

    service = build_service(options["loaded"])
    service.log_observer = _log_observer(options)
    return service


def _log_observer(options: Options) -> ILogObserver:
    """What twistd would log to, filtered at the config's `log_level`, so that
    debug events (per call, per transaction) cost a filter test, not a write."""
    twistd = options.parent or {}
    logfile = twistd.get("logfile")
    if logfile == "-" or (not logfile and twistd.get("nodaemon")):
        output: Any = sys.stdout
    else:
        output = LogFile.fromFullPath(logfile or "twistd.log")
    level = LogLevel.levelWithName(options["loaded"].log_level)
    predicate = LogLevelFilterPredicate(defaultLogLevel=level)
    return FilteringLogObserver(textFileLogObserver(output), [QuietMediaPorts(), predicate])
