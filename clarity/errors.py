"""Typed errors. Every error that crosses the owner's socket travels as `{"kind", "message"}`."""

from __future__ import annotations


class ClarityError(Exception):
    """Base of every error Clarity raises on purpose. `kind` names it on the wire."""

    kind = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_wire(self) -> dict[str, str]:
        return {"kind": self.kind, "message": self.message}


class InvalidArgument(ClarityError):
    """The caller's input is wrong; nothing was changed."""

    kind = "invalid_argument"


class NotFound(ClarityError):
    """A named memory does not exist; nothing was changed."""

    kind = "not_found"


class ConfigError(ClarityError):
    """config.json or a CLARITY_* variable is malformed."""

    kind = "config"


class UnsafeStore(ConfigError):
    """A folder or file of the store could be controlled by another user (foreign owner, loose mode,
    symlink), or the owner's socket is served by another user: refused before anything is sent."""

    kind = "unsafe_store"


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


_KINDS: dict[str, type[ClarityError]] = {
    cls.kind: cls
    for cls in (ClarityError, InvalidArgument, NotFound, ConfigError, UnsafeStore, ReplyTooLarge,
                OwnerUnresponsive, CoordinationTimeout, ProtocolError)
}


def from_wire(data: object) -> ClarityError:
    """Rebuild an error sent by `ClarityError.to_wire` (unknown kinds become `ClarityError`)."""
    if not isinstance(data, dict):
        return ClarityError(f"malformed error from owner: {data!r}")
    cls = _KINDS.get(str(data.get("kind")), ClarityError)
    return cls(str(data.get("message", "unknown error")))
