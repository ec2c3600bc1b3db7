"""A Python child process driven over pipes, one line at a time: another process for a test to hold a lock,
a lease or a ticket, and to answer commands.

`Scripted(script, *args)` runs `python -c script args...` with stdin and stdout as text pipes (stderr is the
test's, so a child's traceback shows in its output). What it guarantees:

- A killed or finished child never leaves a pipe open: `stop()` (also `kill()`, and leaving a `with` block)
  kills the child if it is still alive, waits for it (no zombie) and closes both pipes. It may be called
  any number of times, and a pipe closed after the child died raises nothing.
- A child that exits early never hangs the test on an empty read: `readline()` (and so `send()` and the
  `ready` check) fails with an AssertionError naming the child's pid and exit code as soon as its output
  ends, instead of returning "".
- With `ready`, the constructor returns only once the child's first line is `ready` (a string, or a pattern
  the whole line matches); otherwise, or if the child exits first, the child is stopped before the error
  propagates, so a failed start leaves no process behind either.

Nothing here bounds how long a live child may take to answer: that is the test's timeout.
"""

from __future__ import annotations

import re
import subprocess
import sys
from types import TracebackType


class Scripted:
    """`python -c script args...` with stdin/stdout pipes, driven line by line (see the module docstring)."""

    def __init__(self, script: str, *args: str, ready: str | re.Pattern[str] | None = None) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", script, *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.first = ""  # the first line, when `ready` asked for it
        if ready is None:
            return
        try:
            self.first = self.readline()
            matched = self.first == ready if isinstance(ready, str) else ready.fullmatch(self.first)
            if not matched:
                want = ready if isinstance(ready, str) else ready.pattern
                raise AssertionError(f"child {self.pid} started with {self.first!r}, not {want!r}")
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def readline(self) -> str:
        """The child's next line, stripped; an AssertionError with its exit code once its output has ended."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            try:
                code = self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"child {self.pid} closed its output but is still running") from None
            raise AssertionError(f"child {self.pid} exited with code {code} before writing a line")
        return line.strip()

    def send(self, line: str) -> str:
        """Write `line` and a newline, and return the child's reply line (see `readline`)."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # the child is gone: readline says so, with its exit code
        return self.readline()

    def stop(self) -> None:
        """Kill the child if it is alive, wait for it and close both pipes. Idempotent."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is None:
                continue
            try:
                stream.close()  # closes the descriptor even when flushing to a dead child fails
            except BrokenPipeError:
                pass

    kill = stop

    def __enter__(self) -> Scripted:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
