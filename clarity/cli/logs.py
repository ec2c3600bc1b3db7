"""Logging for a command: stderr and the home's log file `<home>/logs/clarity.log`.

The file is size-capped and rotated (`LOG_MAX_BYTES` each, `LOG_BACKUPS` old ones: a home's logs stay
under 20 MB), this user's only (0600, never followed through a link), and shared by every process of
the home. A log file that cannot be opened or written (read-only home, a link, full disk) is said once,
in one line, and logging goes on to stderr alone: never a traceback. A terminal command's stderr shows
warnings only, one line each.
"""

from __future__ import annotations

import logging
import os
import sys
from logging.handlers import RotatingFileHandler
from pathlib import Path

from clarity.config import Settings

LOG_MAX_BYTES = 5 * 1024 * 1024  # per file; with LOG_BACKUPS old files a home's logs stay under 20 MB
LOG_BACKUPS = 3


class _SharedLogHandler(RotatingFileHandler):
    """`<home>/logs/clarity.log`, size-capped and rotated, appended to by every session of the home.

    Several processes write the one file: when another one has rotated it (the name now points at a new
    file) this one reopens it instead of rotating again. A write that fails (disk full) is said once on
    stderr, in one line, and the file is dropped: records then go to the stderr handler alone, never a
    traceback."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8")
        self._broken = False

    def shouldRollover(self, record: logging.LogRecord) -> int:  # noqa: N802 - logging's name
        if self.stream is not None:
            try:
                if os.stat(self.baseFilename).st_ino != os.fstat(self.stream.fileno()).st_ino:
                    self.stream.close()
                    self.stream = self._open()
            except OSError:
                pass  # gone or unreadable: the rotation below (or the write) finds out
        return super().shouldRollover(record)

    def emit(self, record: logging.LogRecord) -> None:
        if not self._broken:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        if self._broken:
            return
        self._broken = True
        err = sys.exc_info()[1]
        why = getattr(err, "strerror", None) or err
        sys.stderr.write(f"clarity: cannot write the log file {self.baseFilename} ({why}): logging to stderr "
                         "only\n")


class _OneLine(logging.Formatter):
    """A warning at a terminal: `clarity: <message>`, one line, never a traceback (the log file has it)."""

    def format(self, record: logging.LogRecord) -> str:
        return "clarity: " + " ".join(record.getMessage().split())


def setup_logging(settings: Settings, *, quiet_stderr: bool = False, to_file: bool = True) -> None:
    """stderr and, with `to_file`, the home's rotated log file; a log file that cannot be opened
    (read-only home, a link, full disk) leaves stderr alone, said once. `quiet_stderr` (a terminal
    command): stderr shows warnings only, one line each (`_OneLine`)."""
    fmt = logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(settings.log_level)
    err = logging.StreamHandler(sys.stderr)
    err.setFormatter(_OneLine() if quiet_stderr else fmt)
    err.setLevel("WARNING" if quiet_stderr else settings.log_level)
    root.addHandler(err)
    for noisy in ("httpx", "mcp", "fastembed", "huggingface_hub"):
        logging.getLogger(noisy).setLevel("WARNING")
    if not to_file:
        return
    log_file = settings.layout.log_file
    try:
        os.close(os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600))
        os.chmod(log_file, 0o600)  # also a log an older version made world-readable
        fh = _SharedLogHandler(log_file)
    except OSError as e:
        sys.stderr.write(f"clarity: cannot write the log file {log_file} ({e.strerror or e}): logging to stderr "
                         "only\n")
        return
    fh.setFormatter(fmt)
    root.addHandler(fh)
