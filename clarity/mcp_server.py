"""The MCP tools (mcp 2.x MCPServer over stdio). No storage logic here: each tool parses the client's
arguments once into its typed model (`mcp_parse`), chooses ids for writes, and hands the operation's
request to the Coordinator (run as is when this process owns the store, else sent once as JSON to the
owner); the answer is validated once into the tool's output model (`mcp_reply`), fitted to
`max_chars` where sized.

Arguments are checked in one place, `clarity.memory.arguments`, against Clarity's models
(`clarity.memory.model`: `StoreArgs`, `RetrieveArgs`, ...), strictly: an unknown key, "5" for 5, 1 for
true or 5.0 for an integer is refused with a message in Clarity's words, as the CLI and a call over the
owner's socket are. The
MCP SDK would validate a tool's arguments itself first, against a model it builds from the
function's signature, leniently ("5" becomes 5, unknown keys are dropped) and with pydantic's
messages; Clarity's tools take the arguments as sent instead (`_AsSent`), and advertise their
model's schema (`additionalProperties: false`, exact types and bounds) as the input schema. The one
leniency kept from the SDK: an array or object argument sent as a JSON string is decoded (`_decoded`).

Tool names and shapes follow Alunai Clarity's, so existing prompts keep working. Every failure comes
back as a tool error (`isError`) with a message a person can read, whether the call ran here or was
forwarded to the owner: a ClarityError gives its own message; anything unexpected gives its kind and
message and is logged with its traceback (to stderr or the log file, never stdout). What a failed
call changed is what the raised error says (an invalid argument changed nothing).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, cast

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools.base import Tool
from mcp.server.mcpserver.utilities.func_metadata import FuncMetadata
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel

from clarity import __version__, timings
from clarity.config import Settings, session_id
from clarity.coordination.coordinator import Coordinator
from clarity.errors import ClarityError, InvalidArgument
from clarity.mcp_context import add_context
from clarity.memory import model as m
from clarity.memory.arguments import input_schema, parse
from clarity.memory.budget import (
    MemoryPage,
    SizedListResult,
    SizedRetrieveResult,
    fit_memories,
    page_memory,
)
from clarity.memory.framing import answer_text
from clarity.memory.results import DeleteResult, StatsResult, StoreResult, UpdateResult

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
RQ = TypeVar("RQ", bound=m.Request)
RS = TypeVar("RS", bound=BaseModel)
F = TypeVar("F", bound=Callable[[dict[str, Any]], Awaitable[Any]])
MAX_ERROR_CHARS = 1000


def readable_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Wrap a tool so every exception leaves it as a ToolError with a readable message (the MCP SDK
    would answer anything else with a bare "Error executing tool NAME")."""

    @functools.wraps(fn)
    async def tool(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except ToolError:
            raise
        except ClarityError as e:
            raise ToolError(e.message) from None
        except Exception as e:
            log.exception("tool %s failed unexpectedly", fn.__name__)
            text = f"internal error ({type(e).__name__}): {e}"
            raise ToolError(text[:MAX_ERROR_CHARS]) from None

    return tool


class _AsSent(FuncMetadata):
    """The SDK's argument handling for a Clarity tool: the tool function gets the arguments as the
    client sent them (one parameter, `args`) and parses them with its model; the SDK's own model of
    the signature is not used."""

    def validate_arguments(self, arguments_to_validate: dict[str, Any]) -> dict[str, Any]:
        return {"args": dict(arguments_to_validate)}


_NOTES = frozenset({"title", "description", "default", "examples"})  # words for readers, not for validation
# upper bounds no sensible call comes near (16 MiB of text, an offset of a billion, 100 filter values, a
# 200-character session name): they only refuse absurd input, which parse refuses all the same
_UNREACHABLE = {"maximum": 1_000_000, "maxLength": 200, "maxItems": 100}


def compact_schema(schema: Any, *, output: bool = False) -> Any:
    """`schema` as `tools/list` shows it, shorter (every session pays for `tools/list` in its context) and
    accepting the same values: no `title` (each one repeats its property's name), no `"default": null`
    or `false` (what an absent argument means anyway), no `"additionalProperties": true` (JSON Schema's
    default), `1` for `1.0`, a nullable `anyOf [X, {"type": "null"}]` written flat as `"type": [X,
    "null"]` (unless X has an `enum` or `const`). Two losses, both deliberate: upper bounds no sensible
    call comes near (`_UNREACHABLE`) are left to `parse`, which refuses them all the same; for an output schema
    (`output=True`): no description or default, and a nested model (a memory in a list) is written in
    place with only its required keys named: a client validates an answer against the types and
    required keys, and the agent reads the answer itself (Claude Code, for one, gives a model the
    input schema only). A new structure is returned; `schema` is not changed."""
    if isinstance(schema, list):
        return [compact_schema(x, output=output) for x in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties" and isinstance(value, dict):  # property names are data, never notes
            out[key] = {name: compact_schema(v, output=output) for name, v in value.items()}
        elif key == "title" and not isinstance(value, dict):
            continue
        elif key in _NOTES and output and not isinstance(value, dict):
            continue
        elif (key == "default" and (value is None or value is False)) or (key, value) == ("additionalProperties", True):
            continue
        elif key in _UNREACHABLE and isinstance(value, int) and value >= _UNREACHABLE[key]:
            continue
        elif isinstance(value, float) and value.is_integer():  # 1.0 is 1
            out[key] = int(value)
        else:
            out[key] = compact_schema(value, output=output)
    if output and isinstance(out.get("$defs"), dict):  # a nested model (a memory in a list): its required keys
        defs = {name: _required_only(d) for name, d in out.pop("$defs").items()}
        out = _inlined(out, defs)
    branches = out.get("anyOf")
    if isinstance(branches, list) and len(branches) == 2 and {"type": "null"} in branches:
        (other,) = [b for b in branches if b != {"type": "null"}]
        kind = other.get("type") if isinstance(other, dict) else None
        if isinstance(kind, str) and not ({"enum", "const"} & other.keys()) and not (other.keys() & out.keys()):
            del out["anyOf"]
            out = {**other, "type": [kind, "null"], **out}
    return out


def _inlined(schema: Any, defs: dict[str, Any]) -> Any:
    """`schema` with each `{"$ref": "#/$defs/Name"}` replaced by `defs["Name"]` (not recursive models)."""
    if isinstance(schema, list):
        return [_inlined(x, defs) for x in schema]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/") and ref[8:] in defs:
        return defs[ref[8:]]
    return {k: _inlined(v, defs) for k, v in schema.items()}


def _required_only(schema: Any) -> Any:
    """A nested object schema reduced to its required keys (their values and any other key unchecked)."""
    if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
        return schema
    return {k: v for k, v in schema.items() if k != "properties"}


def strict_tool(fn: Callable[..., Awaitable[Any]], model: type[m.Request], *, description: str,
                annotations: ToolAnnotations) -> Tool:
    """The MCP tool `fn` (an `async def name(args: dict[str, Any]) -> Result`) whose arguments are
    `model`'s: its input schema is `model`'s, and the arguments reach `fn` as sent. Its output schema
    is the SDK's, from `fn`'s return annotation. Both are shown compacted (`compact_schema`)."""
    tool = Tool.from_function(fn, description=description, annotations=annotations)
    meta = tool.fn_metadata
    as_sent = _AsSent(arg_model=meta.arg_model, output_schema=compact_schema(meta.output_schema, output=True),
                      output_model=meta.output_model, wrap_output=meta.wrap_output)
    return tool.model_copy(update={"parameters": compact_schema(input_schema(model)), "fn_metadata": as_sent})


@functools.cache
def _containers(model: type[BaseModel]) -> dict[str, tuple[type, ...]]:
    """The arguments of `model` that take an array or an object, and the Python types of those."""
    out: dict[str, tuple[type, ...]] = {}
    for name, schema in input_schema(model).get("properties", {}).items():
        kinds = {s.get("type") for s in schema.get("anyOf", [schema])}
        found = tuple(t for k, t in (("array", list), ("object", dict)) if k in kinds)
        if found:
            out[name] = found
    return out


def _decoded(model: type[BaseModel], args: dict[str, Any]) -> dict[str, Any]:
    """`args` with each array or object argument that came as a JSON string (`"[\\"db\\"]"` for
    `["db"]`) decoded, as the MCP SDK decoded them: some clients (Claude Code among them) send them so.
    Only a string that decodes to what the argument takes is replaced; nothing else is converted."""
    out = args
    for key, want in _containers(model).items():
        value = args.get(key)
        if not isinstance(value, str) or value.lstrip()[:1] not in ("[", "{"):
            continue
        try:
            decoded = json.loads(value)
        except (ValueError, RecursionError):
            continue
        if isinstance(decoded, want):
            out = {**out, key: decoded}
    return out


def framed(result: RS, lead: str) -> RS:
    """The tool's answer `result` as its structured content, and as text content the same memories
    framed as quoted data (`clarity.memory.framing`): what a client that reads the text shows its model.
    (A `CallToolResult`: the SDK validates its structured content against the tool's output schema.)"""
    data = result.model_dump(mode="json")
    text = answer_text(data, lead)
    return cast(RS, CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data))


INSTRUCTIONS = """\
Clarity is this project's long-term memory, shared by every agent session on the project (and by
its linked git worktrees). What you store now, later sessions find.

When to search (retrieve_memory): before you decide something, at the start of a task, and whenever
the user refers to earlier work, a convention, a name or an error you do not know. Search with the
words or identifiers you would expect in the memory. Read the resource clarity://context (or run the
review_memories prompt) for the project's most important recent memories.

When to store (store_memory): a decision and its reason, a fact about the code or its environment
that took effort to find, a user preference or convention, a fix for a recurring error. One idea per
memory, self-contained (name files, symbols and versions), with a memory_type (decision, fact,
preference, code, note, ...) and an importance (0.8+ only for what every session should know). Do
not store secrets, whole files, or what the repository already says. When a memory is wrong or
outdated, correct it with update_memory or remove it with delete_memory.

Answers are fitted to max_chars (20,000 characters by default): a long content ends with a marker
naming get_memory and the offset to read on from.
"""

_READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                        open_world_hint=False)


def build_server(settings: Settings, coordinator: Coordinator) -> MCPServer:
    session = session_id() or f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:  # checked once here; a bad CLARITY_SESSION_ID refuses every store, as it did when checked per call
        bad_session: InvalidArgument | None = None
        m.session_name(session)
    except InvalidArgument as e:
        bad_session = e
    tools: list[Tool] = []

    def tool(model: type[m.Request], description: str, annotations: ToolAnnotations) -> Callable[[F], F]:
        """Register the decorated function as a tool taking `model`'s arguments (see `strict_tool`)."""
        def register(fn: F) -> F:
            tools.append(strict_tool(readable_errors(fn), model, description=description, annotations=annotations))
            return fn
        return register

    async def run(op: str, req: m.Request) -> dict[str, Any]:
        """The typed request goes as is to this process's service, or once as JSON to the owner."""
        return await anyio.to_thread.run_sync(coordinator.call, op, req)

    def check(model: type[RQ], args: dict[str, Any]) -> RQ:
        """The client's arguments parsed once, strictly, by the tool's model (see the module docstring)."""
        with timings.timed("mcp_parse"):
            return parse(model, _decoded(model, args))

    def reply(model: type[RS], result: dict[str, Any], max_chars: int | None = None) -> RS:
        """The answer validated once into the tool's output model (fitted to `max_chars` first)."""
        with timings.timed("mcp_reply"):
            return model.model_validate(result if max_chars is None else fit_memories(result, max_chars))

    @tool(m.StoreArgs, "Store a memory for later sessions of this project; the same content and type again "
                       "returns the existing one as duplicate_of.",
          ToolAnnotations(title="Store a memory", read_only_hint=False, destructive_hint=False,
                          idempotent_hint=True, open_world_hint=False))
    async def store_memory(args: dict[str, Any]) -> StoreResult:
        a = check(m.StoreArgs, args)
        m.check_content(a.content, settings.memory.max_content_bytes)
        if bad_session is not None:
            raise bad_session
        return reply(StoreResult, await run("store", a.request(m.new_id(), session)))

    @tool(m.RetrieveArgs, "Search memories by meaning and keywords (identifiers, error codes, paths rank "
                          "first), best first. Fits max_chars; a long content ends with a marker naming "
                          "get_memory.",
          _READ.model_copy(update={"title": "Search memories"}))
    async def retrieve_memory(args: dict[str, Any]) -> SizedRetrieveResult:
        a = check(m.RetrieveArgs, args)
        m.check_content(a.query, settings.memory.max_content_bytes, field="query")
        res = reply(SizedRetrieveResult, await run("retrieve", m.narrow(m.RetrieveRequest, a)), a.max_chars)
        lead = f"{res.count} memor{'y' if res.count == 1 else 'ies'} found for the search ({res.mode})."
        return framed(res, lead)

    @tool(m.ListArgs, "List memories, newest first. Fits max_chars: memories left out are counted in omitted "
                      "(read on with offset).",
          _READ.model_copy(update={"title": "List memories"}))
    async def list_memories(args: dict[str, Any]) -> SizedListResult:
        a = check(m.ListArgs, args)
        res = reply(SizedListResult, await run("list", m.narrow(m.ListRequest, a)), a.max_chars)
        return framed(res, f"{len(res.memories)} of {res.total} memories, from offset {res.offset}.")

    @tool(m.GetArgs, "One memory by id; a long content comes in pieces (pass next_offset as offset).",
          _READ.model_copy(update={"title": "Get a memory"}))
    async def get_memory(args: dict[str, Any]) -> MemoryPage:
        a = check(m.GetArgs, args)
        mem = await run("get", m.narrow(m.GetRequest, a))
        size = len(mem.get("content") or "")
        if a.offset > size:
            raise ToolError(f"offset {a.offset} is past the end of the content ({size} characters)")
        return reply(MemoryPage, page_memory(mem, a.max_chars, a.offset))

    @tool(m.UpdateRequest, "Change fields of a memory; old values are overwritten.",
          ToolAnnotations(title="Update a memory", read_only_hint=False, destructive_hint=True,
                          idempotent_hint=True, open_world_hint=False))
    async def update_memory(args: dict[str, Any]) -> UpdateResult:
        a = check(m.UpdateRequest, args)
        if a.updates.content is not None:
            m.check_content(a.updates.content, settings.memory.max_content_bytes)
        return reply(UpdateResult, await run("update", a))

    @tool(m.DeleteRequest, "Delete memories by id; unknown ids come back in not_found.",
          ToolAnnotations(title="Delete memories", read_only_hint=False, destructive_hint=True,
                          idempotent_hint=True, open_world_hint=False))
    async def delete_memory(args: dict[str, Any]) -> DeleteResult:
        return reply(DeleteResult, await run("delete", check(m.DeleteRequest, args)))

    @tool(m.StatsRequest, "Counts by memory type, engine, embedding model, storage size.",
          _READ.model_copy(update={"title": "Memory statistics"}))
    async def memory_stats(args: dict[str, Any]) -> StatsResult:
        return reply(StatsResult, await run("stats", check(m.StatsRequest, args)))

    @tool(m.StatusArgs, "Who owns the shared store, who waits, this session's role. Never takes the lease.",
          _READ.model_copy(update={"title": "Coordination status"}))
    async def coordination_status(args: dict[str, Any]) -> dict[str, Any]:
        check(m.StatusArgs, args)
        st = await anyio.to_thread.run_sync(coordinator.status)
        return {**st, "timings": timings.snapshot()}

    server: MCPServer = MCPServer(name="alunai-clarity", version=__version__, instructions=INSTRUCTIONS,
                                  log_level=settings.log_level, tools=tools)
    add_context(server, settings, coordinator)
    return server
