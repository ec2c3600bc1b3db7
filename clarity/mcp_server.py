"""The MCP tools (mcp 2.x MCPServer over stdio). No storage logic here: each tool validates its
arguments, chooses ids for writes, and hands one operation to the Coordinator.

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
from pydantic import Field

from clarity import __version__
from clarity.config import Settings
from clarity.coordination.coordinator import Coordinator
from clarity.errors import ClarityError
from clarity.memory import model as m

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
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

INSTRUCTIONS = (
    "Project memory shared by every agent session on this project. Store decisions, facts, preferences "
    "and notes with store_memory; find them by meaning with retrieve_memory."
)


def build_server(settings: Settings, coordinator: Coordinator) -> MCPServer:
    server: MCPServer = MCPServer(name="alunai-clarity", version=__version__, instructions=INSTRUCTIONS,
                                  log_level=settings.log_level)
    session = os.environ.get("CLARITY_SESSION_ID") or f"{os.getpid()}-{uuid.uuid4().hex[:8]}"

    async def run(op: str, args: dict[str, Any]) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(coordinator.call, op, args)

    def check(model: type[m._Req], args: dict[str, Any]) -> dict[str, Any]:
        return m.parse(model, args).model_dump(mode="json")

    @server.tool(description="Store a memory (decision, fact, preference, note, code, ...) for every "
                             "session of this project. Storing the same content with the same type again "
                             "returns the existing memory as duplicate_of.")
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
    ) -> m.StoreResult:
        m.check_content(content, settings.memory.max_content_bytes)
        args = check(m.StoreRequest, {
            "id": m.new_id(), "content": content, "memory_type": memory_type, "importance": importance,
            "tags": tags or [], "metadata": metadata or {}, "context": context or {}, "session": session,
        })
        return m.StoreResult.model_validate(await run("store", args))

    @server.tool(description="Find memories by meaning (semantic search), best first, with similarity "
                             "scores. Memories below min_similarity are left out.")
    @readable_errors
    async def retrieve_memory(
        query: Annotated[str, Field(description="what you are looking for, in your own words")],
        limit: Annotated[int, Field(description="at most this many (1-100)")] = 5,
        types: Annotated[list[str] | None, Field(description="only these memory types")] = None,
        tags: Annotated[list[str] | None, Field(description="only memories with any of these tags")] = None,
        min_similarity: Annotated[float | None, Field(description="cosine similarity threshold, -1..1; "
                                                                  "default from the config")] = None,
        include_metadata: Annotated[bool, Field(description="also return metadata and context")] = False,
    ) -> m.RetrieveResult:
        args = check(m.RetrieveRequest, {"query": query, "limit": limit, "types": types, "tags": tags,
                                         "min_similarity": min_similarity,
                                         "include_metadata": include_metadata})
        m.check_content(query, settings.memory.max_content_bytes, field="query")
        return m.RetrieveResult.model_validate(await run("retrieve", args))

    @server.tool(description="List memories, newest first, optionally filtered by type and tags.")
    @readable_errors
    async def list_memories(
        types: Annotated[list[str] | None, Field(description="only these memory types")] = None,
        tags: Annotated[list[str] | None, Field(description="only memories with any of these tags")] = None,
        limit: Annotated[int, Field(description="page size (1-1000)")] = 20,
        offset: Annotated[int, Field(description="skip this many")] = 0,
        include_content: Annotated[bool, Field(description="also return content, metadata, context")]
        = False,
    ) -> m.ListResult:
        args = check(m.ListRequest, {"types": types, "tags": tags, "limit": limit, "offset": offset,
                                     "include_content": include_content})
        return m.ListResult.model_validate(await run("list", args))

    @server.tool(description="Get one memory by id, with its content, metadata and context.")
    @readable_errors
    async def get_memory(memory_id: Annotated[str, Field(description="the memory's id")]) -> m.Memory:
        return m.Memory.model_validate(await run("get", check(m.GetRequest, {"memory_id": memory_id})))

    @server.tool(description="Change fields of a memory: content (re-embedded), memory_type, importance, "
                             "tags, metadata, context.")
    @readable_errors
    async def update_memory(
        memory_id: Annotated[str, Field(description="the memory's id")],
        updates: Annotated[dict[str, Any], Field(description="the fields to change and their new values")],
    ) -> m.UpdateResult:
        args = check(m.UpdateRequest, {"memory_id": memory_id, "updates": updates})
        content = (updates or {}).get("content")
        if isinstance(content, str):
            m.check_content(content, settings.memory.max_content_bytes)
        return m.UpdateResult.model_validate(await run("update", args))

    @server.tool(description="Delete memories by id. Ids that do not exist are reported in not_found.")
    @readable_errors
    async def delete_memory(
        memory_ids: Annotated[list[str], Field(description="ids of the memories to delete")],
    ) -> m.DeleteResult:
        args = check(m.DeleteRequest, {"memory_ids": memory_ids})
        return m.DeleteResult.model_validate(await run("delete", args))

    @server.tool(description="Totals by memory type, the engine, the embedding model and storage size.")
    @readable_errors
    async def memory_stats() -> m.StatsResult:
        return m.StatsResult.model_validate(await run("stats", {}))

    @server.tool(description="Who owns the shared store now (pid, epoch, heartbeat, state), who waits, "
                             "and this session's role. Never takes the lease.")
    @readable_errors
    async def coordination_status() -> dict[str, Any]:
        return await anyio.to_thread.run_sync(coordinator.status)

    return server


async def serve(settings: Settings) -> None:
    """Run the stdio server until stdin ends; then release everything cleanly."""
    coordinator = Coordinator(settings)
    server = build_server(settings, coordinator)
    try:
        await server.run_stdio_async()
    finally:
        await anyio.to_thread.run_sync(coordinator.close)
