"""errors.py: every exception Clarity raises on purpose, its wire kind and whether it is retryable."""

from __future__ import annotations

import inspect

import pytest

from clarity import errors

CLASSES = [c for _n, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == "clarity.errors"]
RETRYABLE = {"EngineLocked", "NotOwner", "LeaseLost", "OwnerGone", "NotSent", "Retry", "ServerUnavailable"}


def test_every_exception_is_a_clarity_error_with_a_kind() -> None:
    assert len(CLASSES) >= 20
    for cls in CLASSES:
        assert issubclass(cls, errors.ClarityError), cls
        assert isinstance(cls.kind, str) and cls.kind, cls


def test_exactly_the_transient_errors_are_retryable() -> None:
    assert {c.__name__ for c in CLASSES if c.retryable} == RETRYABLE


@pytest.mark.parametrize("cls", [errors.InvalidArgument, errors.NotFound, errors.UnsafeStore, errors.EngineLocked,
                                 errors.MigrationFailed, errors.NotOwner, errors.ReplyTooLarge,
                                 errors.CoordinationTimeout, errors.ProtocolError])
def test_an_error_crosses_the_wire_as_itself(cls: type[errors.ClarityError]) -> None:
    back = errors.from_wire(cls("what happened").to_wire())
    assert type(back) is cls and back.message == "what happened" and back.retryable == cls.retryable


def test_unknown_and_malformed_wire_errors_become_plain_errors() -> None:
    assert type(errors.from_wire({"kind": "from_the_future", "message": "m"})) is errors.ClarityError
    assert "malformed" in errors.from_wire(["not", "a", "dict"]).message


def test_tool_call_error_names_its_tool() -> None:
    e = errors.ToolCallError("store_memory", "invalid arguments")
    assert str(e) == "store_memory: invalid arguments" and e.message == "invalid arguments" and e.tool == "store_memory"
