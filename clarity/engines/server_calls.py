"""Requests to a Qdrant server within the call's deadline: per-request timeouts, retries, readable errors.

`call_deadline(deadline)` (a `time.monotonic()` instant) marks the deadline of the operation running in
this thread (the coordinator's direct policy sets it); without one, `ServerCalls.default_budget_s`
applies from the engine call's start. `ServerCalls.run(what, fn, write=...)` runs one qdrant-client call:

- Every HTTP request's client timeout is the time left to the deadline (an httpx middleware sets the
  request's timeout extension), so no request outlives the call; qdrant-client's own 5 s default never
  applies.
- Transient failures are retried (tenacity, exponential backoff with jitter, each sleep cut to the
  deadline) until the deadline: connection refused, reset or closed ("server disconnected"), request
  timeouts, 5xx, 429. A retry is safe: every write names its point ids (chosen before the first
  attempt), and conditional writes (`update_filter`, filter-scoped `set_payload`) apply at most once.
- When the deadline passes: `ServerUnavailable` if no attempt can have reached the server (refused,
  connect timeout: nothing was applied), else for a write `ServerOutcomeUnknown` (the write may have
  been applied; a retry is safe), for a read `ServerUnavailable`. Any other answer of the server
  (4xx) is `ServerRefused` at once, with the server's own error text (from its JSON, cut to 300
  characters; never the raw response bytes). Every message names the server's URL without its API
  key or any userinfo.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from clarity.engines.server_info import redact
from clarity.errors import ServerOutcomeUnknown, ServerRefused, ServerUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("clarity_call_deadline", default=None)
_attempt_timeout: contextvars.ContextVar[float | None] = contextvars.ContextVar("clarity_attempt_timeout",
                                                                              default=None)
MIN_ATTEMPT_S = 0.05  # an attempt with less time left than this is not started
ERROR_CHARS = 300


@contextmanager
def call_deadline(deadline: float) -> Iterator[None]:
    """Within the block, server requests of this thread end by `deadline` (`time.monotonic()`)."""
    token = _deadline.set(deadline)
    try:
        yield
    finally:
        _deadline.reset(token)


def timeout_middleware(request: Any, call_next: Callable[[Any], Any]) -> Any:
    """qdrant-client REST middleware: the request's httpx timeout is the current attempt's budget."""
    left = _attempt_timeout.get()
    if left is not None:
        request.extensions["timeout"] = {"connect": left, "read": left, "write": left, "pool": left}
    return call_next(request)


def server_message(content: bytes) -> str:
    """The server's error text from its JSON answer (`status.error`), cut short; never raw bytes."""
    try:
        data = json.loads(content)
        text = data["status"]["error"] if isinstance(data.get("status"), dict) else str(data.get("status"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return "(no readable error message)"
    text = " ".join(str(text).split())
    return text if len(text) <= ERROR_CHARS else text[:ERROR_CHARS] + "..."


def _classify(e: BaseException) -> tuple[str, bool, bool] | None:
    """(what happened, transient, may have reached the server) for a qdrant-client/httpx failure;
    None when it is no transport or server failure (a bug: raised as is)."""
    import httpx
    from qdrant_client.common.client_exceptions import ResourceExhaustedResponse
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    if isinstance(e, ResourceExhaustedResponse):
        return "rate limited (429)", True, False
    if isinstance(e, UnexpectedResponse):
        code = e.status_code or 0
        what = f"HTTP {code}: {server_message(e.content)}"
        return what, code >= 500 or code == 429, code >= 500
    src = e.source if isinstance(e, ResponseHandlingException) else e
    if isinstance(src, httpx.ConnectError):
        return "connection refused", True, False
    if isinstance(src, httpx.ConnectTimeout | httpx.PoolTimeout):
        return "connect timed out", True, False
    if isinstance(src, httpx.TimeoutException):
        return "no answer before the deadline (timed out)", True, True
    if isinstance(src, httpx.RemoteProtocolError):
        return "server disconnected", True, True
    if isinstance(src, httpx.ReadError | httpx.WriteError | httpx.NetworkError):
        return f"connection reset ({type(src).__name__})", True, True
    if isinstance(e, ResponseHandlingException):
        return f"unreadable answer ({type(src).__name__})", False, True
    return None


class ServerCalls:
    """Runs qdrant-client calls for one server (`url`, shown without credentials)."""

    def __init__(self, url: str, default_budget_s: float = 30.0) -> None:
        self.url = redact(url)
        self.default_budget_s = default_budget_s

    def run(self, what: str, fn: Callable[[], T], *, write: bool = False) -> T:
        """`fn()` (one qdrant-client call) within the deadline; see the module docstring."""
        from qdrant_client.http.exceptions import UnexpectedResponse
        from tenacity import Retrying, retry_if_exception, wait_random_exponential

        start = time.monotonic()
        deadline = _deadline.get() or start + self.default_budget_s
        reached = False
        last = ""
        attempts = 0

        def transient(e: BaseException) -> bool:
            c = _classify(e)
            return c is not None and c[1] and deadline - time.monotonic() > MIN_ATTEMPT_S

        class _Stop:
            def __call__(self, state: Any) -> bool:
                return deadline - time.monotonic() <= MIN_ATTEMPT_S

        retrying = Retrying(
            stop=_Stop(),
            wait=wait_random_exponential(multiplier=0.05, max=1.0),
            retry=retry_if_exception(transient),
            sleep=lambda s: time.sleep(max(0.0, min(s, deadline - time.monotonic() - MIN_ATTEMPT_S))),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    attempts += 1
                    left = deadline - time.monotonic()
                    if left <= MIN_ATTEMPT_S:
                        raise _Expired()
                    token = _attempt_timeout.set(left)
                    try:
                        return fn()
                    except Exception as e:
                        c = _classify(e)
                        if c is not None:
                            last = c[0]
                            reached = reached or c[2]
                            if c[1] and attempts == 1:
                                log.info("%s: Qdrant server at %s: %s; retrying until the deadline", what,
                                         self.url, c[0])
                        raise
                    finally:
                        _attempt_timeout.reset(token)
        except _Expired:
            pass
        except UnexpectedResponse as e:
            if (e.status_code or 0) < 500 and e.status_code != 429:
                raise ServerRefused(f"{what}: the Qdrant server at {self.url} refused it: HTTP {e.status_code}: "
                                    f"{server_message(e.content)}", status=e.status_code or 0) from None
        except Exception as e:
            c = _classify(e)
            if c is None:
                raise
            if not c[1]:
                raise ServerRefused(f"{what}: the Qdrant server at {self.url}: {c[0]}") from None
        budget = deadline - start
        tried = f"{attempts} attempt(s) in {budget:.1f} s, last: {last or 'the deadline passed first'}"
        if write and reached:
            raise ServerOutcomeUnknown(
                f"{what}: the Qdrant server at {self.url} did not confirm the write before the call's deadline "
                f"({tried}). The outcome is unknown: the server may have applied it. Retrying is safe (the "
                f"write's ids were chosen before it was sent).")
        applied = " Nothing was applied." if write else ""
        raise ServerUnavailable(f"{what}: the Qdrant server at {self.url} could not serve the call before its "
                                f"deadline ({tried}).{applied} Is the server running and reachable?")


class _Expired(Exception):
    """No time left for another attempt."""
