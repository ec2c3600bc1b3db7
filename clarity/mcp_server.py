"""The MCP tools (mcp 2.x MCPServer over stdio). No storage logic here: each tool validates its
arguments once into a typed request (`mcp_parse`), chooses ids for writes, and hands it to the
Coordinator (run as is when this process owns the store, else sent once as JSON to the owner); the
answer is validated once into the tool's output model (`mcp_reply`), fitted to `max_chars` where sized.

Tool names and shapes follow Alunai Clarity's, so existing prompts keep working. Every failure comes
back as a tool error (`isError`) with a message a person can read, whether the call ran here or was
forwarded to the owner: a ClarityError gives its own message; anything unexpected gives its kind and
message and is logged with its traceback (to stderr or the log file, never stdout). What a failed
call changed is what the raised error says (an invalid argument changed nothing).
"""

from __future__ import annotations

import functools
import logging
import os
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, ParamSpec, TypeVar

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from clarity import __version__, timings
from clarity.config import Settings, session_id
from clarity.coordination.coordinator import Coordinator
from clarity.errors import ClarityError
from clarity.mcp_context import add_context
from clarity.memory import model as m
from clarity.memory.budget import (
    DEFAULT_MAX_CHARS,
    MAX_MAX_CHARS,
    MIN_MAX_CHARS,
    MemoryPage,
    SizedListResult,
    SizedRetrieveResult,
    fit_memories,
    page_memory,
)

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
RQ = TypeVar("RQ", bound=m.Request)
RS = TypeVar("RS", bound=BaseModel)
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
MaxChars = Annotated[int, Field(ge=MIN_MAX_CHARS, le=MAX_MAX_CHARS,
                                description="fit the answer into this many characters of JSON; long "
                                            "contents are cut with a marker (get_memory reads on)")]


def build_server(settings: Settings, coordinator: Coordinator) -> MCPServer:
    server: MCPServer = MCPServer(name="alunai-clarity", version=__version__, instructions=INSTRUCTIONS,
                                  log_level=settings.log_level)
    session = session_id() or f"{os.getpid()}-{uuid.uuid4().hex[:8]}"

    async def run(op: str, req: m.Request) -> dict[str, Any]:
        """The typed request goes as is to this process's service, or once as JSON to the owner."""
        return await anyio.to_thread.run_sync(coordinator.call, op, req)

    def check(model: type[RQ], args: dict[str, Any]) -> RQ:
        with timings.timed("mcp_parse"):
            return m.parse(model, args)

    def reply(model: type[RS], result: dict[str, Any], max_chars: int | None = None) -> RS:
        """The answer validated once into the tool's output model (fitted to `max_chars` first)."""
        with timings.timed("mcp_reply"):
            return model.model_validate(result if max_chars is None else fit_memories(result, max_chars))

    @server.tool(description="Store a memory (decision, fact, preference, note, code, ...) for every "
                             "session of this project. Storing the same content with the same type again "
                             "returns the existing memory as duplicate_of.",
                 annotations=ToolAnnotations(title="Store a memory", read_only_hint=False,
                                             destructive_hint=False, idempotent_hint=True,
                                             open_world_hint=False))
    @readable_errors
    async def store_memory(
        content: Annotated[str, Field(description="the text to remember")],
        memory_type: Annotated[str, Field(description="a short slug: note, decision, fact, preference, "
                                                      "code, conversation, ...")] = "note",
        importance: Annotated[float, Field(description="0 (trivial) to 1 (critical)")] = 0.5,
        tags: Annotated[list[str] | None, Field(description="labels to filter by")] = None,
        metadata: Annotated[dict[str, Any] | None, Field(description="any JSON object")] = None,
        context: Annotated[dict[str, Any] | None, Field(description="where it came from: file, task, ...")]
        = None,
        supersedes: Annotated[str | None, Field(description="id of a memory this one replaces (a corrected "
                                                            "fact): the old one is kept, marked superseded_by, "
                                                            "and left out of searches and lists")] = None,
    ) -> m.StoreResult:
        m.check_content(content, settings.memory.max_content_bytes)
        args = check(m.StoreRequest, {
            "id": m.new_id(), "content": content, "memory_type": memory_type, "importance": importance,
            "tags": tags or [], "metadata": metadata or {}, "context": context or {}, "session": session,
            "supersedes": supersedes,
        })
        return reply(m.StoreResult, await run("store", args))

    @server.tool(description="Find memories by meaning and by keywords (hybrid search: exact identifiers, "
                             "error codes, config keys, paths rank first), best first, each with its cosine "
                             "similarity to the query. mode=semantic or keyword uses one side only; "
                             "since/until limit the creation time. The answer fits "
                             "max_chars: long contents are cut with a marker (get_memory reads on).",
                 annotations=_READ.model_copy(update={"title": "Search memories"}))
    @readable_errors
    async def retrieve_memory(
        query: Annotated[str, Field(description="what you are looking for, in your own words")],
        limit: Annotated[int, Field(description="at most this many (1-100)")] = 5,
        types: Annotated[list[str] | None, Field(description="only these memory types")] = None,
        tags: Annotated[list[str] | None, Field(description="only memories with any of these tags")] = None,
        min_similarity: Annotated[float | None, Field(description="cosine floor, -1..1 (default from the "
                                                                  "config, 0.25); keyword matches pass it in "
                                                                  "hybrid mode, it does not apply to keyword "
                                                                  "mode")]
        = None,
        include_metadata: Annotated[bool, Field(description="also return metadata and context")] = False,
        mode: Annotated[str, Field(description="hybrid (default: meaning + keywords), semantic, keyword")]
        = "hybrid",
        since: Annotated[str | None, Field(description="only memories created at or after this: ISO 8601 "
                                                       "or an age like 30m, 24h, 7d, 2w")] = None,
        until: Annotated[str | None, Field(description="only memories created at or before this (same forms)")]
        = None,
        include_superseded: Annotated[bool, Field(description="also return memories replaced by newer ones")]
        = False,
        recency_weight: Annotated[float | None, Field(description="0-0.5: favour newer memories (default "
                                                                  "from the config: 0, off)")] = None,
        importance_weight: Annotated[float | None, Field(description="0-0.5: favour important memories "
                                                                     "(default from the config: 0, off)")]
        = None,
        max_chars: MaxChars = DEFAULT_MAX_CHARS,
    ) -> SizedRetrieveResult:
        args = check(m.RetrieveRequest, {"query": query, "limit": limit, "types": types, "tags": tags,
                                         "min_similarity": min_similarity,
                                         "include_metadata": include_metadata, "mode": mode, "since": since,
                                         "until": until, "include_superseded": include_superseded,
                                         "recency_weight": recency_weight,
                                         "importance_weight": importance_weight})
        m.check_content(query, settings.memory.max_content_bytes, field="query")
        return reply(SizedRetrieveResult, await run("retrieve", args), max_chars)

    @server.tool(description="List memories, newest first, optionally filtered by type and tags. The "
                             "answer fits max_chars: memories that do not fit are counted in omitted "
                             "(read on with offset), long contents are cut with a marker.",
                 annotations=_READ.model_copy(update={"title": "List memories"}))
    @readable_errors
    async def list_memories(
        types: Annotated[list[str] | None, Field(description="only these memory types")] = None,
        tags: Annotated[list[str] | None, Field(description="only memories with any of these tags")] = None,
        limit: Annotated[int, Field(description="page size (1-1000)")] = 20,
        offset: Annotated[int, Field(description="skip this many")] = 0,
        include_content: Annotated[bool, Field(description="also return content, metadata, context")]
        = False,
        max_chars: MaxChars = DEFAULT_MAX_CHARS,
    ) -> SizedListResult:
        args = check(m.ListRequest, {"types": types, "tags": tags, "limit": limit, "offset": offset,
                                     "include_content": include_content})
        return reply(SizedListResult, await run("list", args), max_chars)

    @server.tool(description="Get one memory by id, with its content, metadata and context. A content "
                             "longer than max_chars allows is shown from offset in pieces: pass "
                             "next_offset as offset to read on.",
                 annotations=_READ.model_copy(update={"title": "Get a memory"}))
    @readable_errors
    async def get_memory(
        memory_id: Annotated[str, Field(description="the memory's id")],
        offset: Annotated[int, Field(ge=0, description="show the content from this character on")] = 0,
        max_chars: MaxChars = DEFAULT_MAX_CHARS,
    ) -> MemoryPage:
        mem = await run("get", check(m.GetRequest, {"memory_id": memory_id}))
        size = len(mem.get("content") or "")
        if offset > size:
            raise ToolError(f"offset {offset} is past the end of the content ({size} characters)")
        return reply(MemoryPage, page_memory(mem, max_chars, offset))

    @server.tool(description="Change fields of a memory: content (re-embedded), memory_type, importance, "
                             "tags, metadata, context. The old values are overwritten.",
                 annotations=ToolAnnotations(title="Update a memory", read_only_hint=False,
                                             destructive_hint=True, idempotent_hint=True,
                                             open_world_hint=False))
    @readable_errors
    async def update_memory(
        memory_id: Annotated[str, Field(description="the memory's id")],
        updates: Annotated[dict[str, Any], Field(description="the fields to change and their new values")],
    ) -> m.UpdateResult:
        args = check(m.UpdateRequest, {"memory_id": memory_id, "updates": updates})
        content = (updates or {}).get("content")
        if isinstance(content, str):
            m.check_content(content, settings.memory.max_content_bytes)
        return reply(m.UpdateResult, await run("update", args))

    @server.tool(description="Delete memories by id. Ids that do not exist are reported in not_found.",
                 annotations=ToolAnnotations(title="Delete memories", read_only_hint=False,
                                             destructive_hint=True, idempotent_hint=True,
                                             open_world_hint=False))
    @readable_errors
    async def delete_memory(
        memory_ids: Annotated[list[str], Field(description="ids of the memories to delete")],
    ) -> m.DeleteResult:
        args = check(m.DeleteRequest, {"memory_ids": memory_ids})
        return reply(m.DeleteResult, await run("delete", args))

    @server.tool(description="Totals by memory type, the engine, the embedding model and storage size.",
                 annotations=_READ.model_copy(update={"title": "Memory statistics"}))
    @readable_errors
    async def memory_stats() -> m.StatsResult:
        return reply(m.StatsResult, await run("stats", m.StatsRequest()))

    @server.tool(description="Who owns the shared store now (pid, epoch, heartbeat, state), who waits, "
                             "and this session's role. Never takes the lease.",
                 annotations=_READ.model_copy(update={"title": "Coordination status"}))
    @readable_errors
    async def coordination_status() -> dict[str, Any]:
        st = await anyio.to_thread.run_sync(coordinator.status)
        return {**st, "timings": timings.snapshot()}

    add_context(server, settings, coordinator)
    return server
