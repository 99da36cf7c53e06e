"""JSON logs ([relay] log_format = json): one JSON object per line, for journald and Loki.

Owns the line's shape: `time` (ISO 8601, UTC), `level`, `namespace` (the logging class),
`message` (the line text logs would show), then every structured field of the event as it
was logged (`session`, `user`, `desktop`, `container`, `reason`, ...), and `traceback` for a
failure. Also which file twistd would log to, so --logfile works as it does for text logs.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import IO, Any

from twisted.logger import FileLogObserver, ILogObserver, LogEvent, formatEvent
from twisted.python.logfile import LogFile

# The old twisted.python.log keys (twistd's and twisted.web's own lines still use that API):
# their content is in message, time and system already.
_LEGACY_KEYS = frozenset({"message", "time", "system", "isError", "format", "printed", "why", "failure"})


def event_as_json_line(event: LogEvent) -> str:
    """One event as one line of JSON (with its newline)."""
    level = event.get("log_level")
    line: dict[str, Any] = {
        "time": datetime.fromtimestamp(event.get("log_time", 0), UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "level": level.name if level is not None else "info",
        "namespace": event.get("log_namespace", ""),
        "message": formatEvent(event),
    }
    if event.get("log_system") not in (None, "-"):
        line["system"] = event["log_system"]
    for key, value in event.items():
        if not key.startswith("log_") and key not in _LEGACY_KEYS and key not in line:
            line[key] = value
    failure = event.get("log_failure")
    if failure is not None:
        line["traceback"] = failure.getTraceback()
    try:
        text = json.dumps(line, default=repr, ensure_ascii=False)
    except (TypeError, ValueError):
        # A field json cannot take even with repr (a dict with tuple keys, say): text it is.
        text = json.dumps({k: v if isinstance(v, (str, int, float, bool, type(None))) else repr(v)
                           for k, v in line.items()}, ensure_ascii=False)
    return text + "\n"


def json_log_observer(out: IO[str]) -> ILogObserver:
    """An observer writing each event to `out` as one line of JSON."""
    return FileLogObserver(out, event_as_json_line)


def twistd_log_file(logfile: str, nodaemon: bool) -> IO[str]:
    """The file twistd logs to for these options: --logfile (- is standard output), standard
    output with --nodaemon and no --logfile, else twistd.log (rotated as twistd would)."""
    if logfile == "-" or (not logfile and nodaemon):
        return sys.stdout
    return LogFile.fromFullPath(logfile or "twistd.log")
