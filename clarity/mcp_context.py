"""The MCP resource `clarity://context` and the prompt `review_memories`: the project's most useful
memories (ranked as `clarity context` ranks them) for an agent to read or review at session start."""

from __future__ import annotations

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError

from clarity.config import Settings
from clarity.context import DEFAULT_CONTEXT_CHARS, DEFAULT_LIMIT, context_text
from clarity.context import MAX_LIMIT as MAX_CONTEXT_LIMIT
from clarity.coordination.coordinator import Coordinator
from clarity.errors import ClarityError

REVIEW_PROMPT = """\
Below are this project's most important recent memories from Clarity, the memory every agent session
on the project shares. Review them before you start:
1. Take them into account in this session; say which ones matter for the task at hand.
2. If one is wrong, outdated or contradicted by the code, correct it with update_memory, or remove it
   with delete_memory (say which and why).
3. If something important about the project is missing, propose a memory to store.

{context}"""


def add_context(server: MCPServer, settings: Settings, coordinator: Coordinator) -> None:
    """The resource `clarity://context` (the project's most useful memories, ranked as
    `clarity context` ranks them) and the prompt `review_memories` that asks the agent to review them."""

    async def text(limit: int) -> str:
        try:
            return await anyio.to_thread.run_sync(
                lambda: context_text(coordinator.call, limit, DEFAULT_CONTEXT_CHARS, str(settings.home)))
        except ClarityError as e:
            raise ResourceError(e.message) from None

    @server.resource("clarity://context", name="project-memories", title="Project memories",
                     description="The project's most useful memories (importance and recency), as text an "
                                 "agent reads at session start; the same as `clarity context`.",
                     mime_type="text/markdown")
    async def project_memories() -> str:
        return await text(DEFAULT_LIMIT)

    @server.prompt(name="review_memories", title="Review project memories",
                   description="Show the project's most important recent memories and ask the agent to "
                               "review them: use them, correct what is outdated, propose what is missing.")
    async def review_memories(limit: int = DEFAULT_LIMIT) -> str:
        if not 1 <= limit <= MAX_CONTEXT_LIMIT:
            raise ValueError(f"limit must be 1..{MAX_CONTEXT_LIMIT}")
        return REVIEW_PROMPT.format(context=await text(limit))
