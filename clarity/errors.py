"""Every exception Clarity raises on purpose, in one place: its wire kind and whether it is retryable.

An error that crosses the owner's socket travels as `{"kind", "message"}` (`to_wire` / `from_wire`).
`retryable` is the one answer to "may the coordinator try again, perhaps at another owner": True only
where nothing was applied, or applying it again is safe (every write carries an id chosen before its
first attempt, so a repeated store is an idempotent upsert). `Coordinator.call` retries exactly the
errors whose `retryable` is True, until the call's deadline; every other error is the call's answer.

Kinds, by who raises them:
- the caller's input or the store's content: InvalidArgument, NotFound (nothing changed);
- configuration and safety: ConfigError, UnsafeStore, UnsupportedPlatform;
- the engine: EngineLocked (its own storage lock refused this process: retryable), MigrationFailed,
  BuildAbandoned (an index build gave up; the old shard keeps serving), DiskFull (too little free space
  for a write: nothing was applied);
- a Qdrant server (server mode): ServerUnavailable (not served before the deadline; retryable),
  ServerOutcomeUnknown (a write sent but not confirmed: outcome unknown), ServerRefused (a 4xx answer);
- coordination: NotOwner and LeaseLost (retryable: nothing was applied here), OwnerGone, NotSent
  (retryable: the owner's socket refused, reset or was never reached), OwnerTimeout (sent, no reply by
  the deadline: the outcome is unknown), OwnerUnresponsive, CoordinationTimeout, ProtocolError,
  ReplyTooLarge, VersionMismatch (the owner runs another protocol version); `Retry` is the policies'
  "try again after a backoff"; StoreTooNew (a store written by a newer format);
- the MCP client of `clarity demo` and the tests: ToolCallError (a tool answered isError).
"""

from __future__ import annotations


class ClarityError(Exception):
    """Base of every error Clarity raises on purpose. `kind` names it on the wire; `retryable` says
    whether the coordinator may try again (see the module docstring)."""

    kind = "internal"
    retryable = False

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    def to_wire(self) -> dict[str, str]:
        return {"kind": self.kind, "message": self.message}


# ---- the caller's input ------------------------------------------------------------------------

class InvalidArgument(ClarityError):
    """The caller's input is wrong; nothing was changed."""

    kind = "invalid_argument"


class NotFound(ClarityError):
    """A named memory does not exist; nothing was changed."""

    kind = "not_found"


# ---- configuration and safety ------------------------------------------------------------------

class ConfigError(ClarityError):
    """config.json or a CLARITY_* variable is malformed."""

    kind = "config"


class UnsafeStore(ConfigError):
    """A folder or file of the store could be controlled by another user (foreign owner, loose mode,
    symlink), or the owner's socket is served by another user: refused before anything is sent."""

    kind = "unsafe_store"


class UnsupportedPlatform(ConfigError):
    """This operating system lacks what Clarity needs (Windows: no AF_UNIX in CPython)."""

    kind = "config"


# ---- the engine --------------------------------------------------------------------------------

class EngineLocked(ClarityError):
    """The store is open in another process (the engine's own storage lock refused us). Transient for
    the coordination layer: the lease says whose turn it is, this is the engine's own fence."""

    kind = "engine_locked"
    retryable = True


class MigrationFailed(ClarityError):
    """The migration's copy did not complete; the legacy store is untouched and the next owner retries."""

    kind = "migration"


class BuildAbandoned(ClarityError):
    """An index build stopped (closing engine, failed or overdue child, counts that differ): the old
    shard keeps serving, nothing is lost."""

    kind = "index_build"


class DiskFull(ClarityError):
    """The store's file system has too little free space for a write: nothing was applied; the message
    says how much is free, where, and how much the write needs. Writes work again once space is freed."""

    kind = "disk_full"


# ---- a Qdrant server (server mode: no owner) ---------------------------------------------------

class ServerUnavailable(ClarityError):
    """The Qdrant server could not serve the call before its deadline (refused, reset, timed out, 5xx,
    retried until then); for a write, no attempt can have reached it: nothing was applied."""

    kind = "server_unavailable"
    retryable = True


class ServerOutcomeUnknown(ClarityError):
    """A write was sent to the Qdrant server but not confirmed before the deadline: it may have been
    applied. A retry is safe (ids chosen before sending; conditional writes apply at most once)."""

    kind = "server_outcome_unknown"


class ServerRefused(ClarityError):
    """The Qdrant server answered the request with an error (4xx): its own text, never raw bytes."""

    kind = "server_refused"

    def __init__(self, message: str = "", status: int = 0) -> None:
        super().__init__(message)
        self.status = status


# ---- coordination ------------------------------------------------------------------------------

class NotOwner(ClarityError):
    """This process does not (or no longer) own the lease, or the engine is still open elsewhere:
    nothing was applied here; the caller retries wherever the lease is now."""

    kind = "not_owner"
    retryable = True


class LeaseLost(NotOwner):
    """The lease lock file was removed or replaced under the owner: it steps down."""


class OwnerGone(ClarityError):
    """The owner's socket refused, reset or closed the connection (or answered "not owner"): there may
    be no owner. The operation may or may not have run; a retry with the same ids is idempotent."""

    kind = "owner_gone"
    retryable = True


class NotSent(ClarityError):
    """The deadline passed before the request could be sent (nothing reached the owner)."""

    kind = "not_sent"
    retryable = True


class OwnerTimeout(ClarityError):
    """The request was sent but no reply came before the deadline: its outcome is unknown."""

    kind = "owner_timeout"


class Retry(ClarityError):
    """Transient, raised by a coordination policy: try again after a backoff, until the deadline."""

    kind = "retry"
    retryable = True


class ReplyTooLarge(ClarityError):
    """The operation ran, but its reply is over the socket's frame limit: ask for a smaller page."""

    kind = "reply_too_large"


class OwnerUnresponsive(ClarityError):
    """The lease owner holds its lock but did not answer before the call's deadline."""

    kind = "owner_unresponsive"


class CoordinationTimeout(ClarityError):
    """No owner could serve the call before its deadline (and it is not a hung owner)."""

    kind = "coordination_timeout"


class ProtocolError(ClarityError):
    """A frame on the owner's socket was malformed, too large or refused."""

    kind = "protocol"


class VersionMismatch(ClarityError):
    """The lease owner speaks another protocol version than this session (two Clarity versions on one
    store): nothing was sent or applied; the message names both versions and what to restart."""

    kind = "version_mismatch"


class StoreTooNew(ConfigError):
    """The store was written in a newer format than this Clarity understands: nothing was opened."""

    kind = "store_too_new"


# ---- clients -----------------------------------------------------------------------------------

class ToolCallError(ClarityError):
    """An MCP tool answered with isError: `tool` and the tool's text (`message`)."""

    kind = "tool_error"

    def __init__(self, tool: str, message: str) -> None:
        super().__init__(message)
        self.tool = tool
        self.args = (f"{tool}: {message}",)


_KINDS: dict[str, type[ClarityError]] = {
    cls.kind: cls
    for cls in (ClarityError, InvalidArgument, NotFound, ConfigError, UnsafeStore, EngineLocked,
                MigrationFailed, BuildAbandoned, DiskFull, NotOwner, ReplyTooLarge, OwnerUnresponsive,
                CoordinationTimeout, ProtocolError, VersionMismatch, StoreTooNew, ServerUnavailable,
                ServerOutcomeUnknown, ServerRefused)
}


def from_wire(data: object) -> ClarityError:
    """Rebuild an error sent by `ClarityError.to_wire` (unknown kinds become `ClarityError`)."""
    if not isinstance(data, dict):
        return ClarityError(f"malformed error from owner: {data!r}")
    cls = _KINDS.get(str(data.get("kind")), ClarityError)
    return cls(str(data.get("message", "unknown error")))
