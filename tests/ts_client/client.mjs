#!/usr/bin/env node
// Non-Python MCP client for the Clarity server, built on the official
// TypeScript SDK. It shows that a client in another language can drive the
// server over stdio.
//
// Usage:  node client.mjs <command> [args...]
//   e.g.  node client.mjs python -m clarity
//
// Environment:
//   CLARITY_TS_N                 number of memories to store (default 50)
//   CLARITY_TS_TIMEOUT_MS        per-request timeout in ms (default 120000)
//   CLARITY_TS_TOTAL_TIMEOUT_MS  whole-run watchdog in ms (default 900000)
//
// Prints nothing to stdout until the end, then exactly one line of JSON:
//   {"tools": [...], "stored": n, "retrieved": n, "errors": [...]}
// Exit code 0 if "errors" is empty, else 1. The server's stderr is passed
// through to this process's stderr.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const TOPICS = [
  "caching", "compilers", "databases", "encryption", "gardening", "geology",
  "hashing", "indexing", "kayaking", "linguistics", "meteorology", "networking",
  "oceanography", "painting", "quantization", "robotics", "sailing", "telescopes",
  "umbrellas", "volcanoes", "weaving", "xylophones", "yoga", "zoology",
  "astronomy", "baking", "calligraphy", "dentistry", "economics", "falconry",
  "glaciers", "harmonicas", "irrigation", "juggling", "knitting", "lighthouses",
  "mushrooms", "navigation", "origami", "pottery", "quilting", "railways",
  "skiing", "tectonics", "unicycles", "vineyards", "windmills", "beekeeping",
  "chess", "dinosaurs",
];

const result = { tools: [], stored: 0, retrieved: 0, errors: [] };
let finished = false;
let transport; // set in main(); the watchdog uses it to kill a hung server

function errText(e) {
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  try {
    return typeof e === "string" ? e : JSON.stringify(e);
  } catch {
    return String(e);
  }
}

function finish(code) {
  if (finished) return;
  finished = true;
  if (result.errors.length > 0) code = 1;
  process.stdout.write(JSON.stringify(result) + "\n", () => process.exit(code));
}

function intEnv(name, dflt) {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return dflt;
  const v = Number.parseInt(raw, 10);
  if (!Number.isFinite(v) || v < 0) throw new Error(`invalid ${name}=${raw}`);
  return v;
}

function sentence(i) {
  const topic = TOPICS[i % TOPICS.length];
  const round = Math.floor(i / TOPICS.length);
  const suffix = round > 0 ? ` (round ${round})` : "";
  return `TypeScript client memory number ${i}: the build uses ${topic}${suffix}`;
}

// Text of a tool result's content blocks, for error messages.
function contentText(res) {
  const parts = Array.isArray(res?.content) ? res.content : [];
  return parts
    .filter((p) => p && p.type === "text")
    .map((p) => p.text)
    .join(" ")
    .slice(0, 500);
}

async function main() {
  const [command, ...args] = process.argv.slice(2);
  if (!command) {
    throw new Error("usage: node client.mjs <command> [args...]");
  }
  const n = intEnv("CLARITY_TS_N", 50);
  const timeout = intEnv("CLARITY_TS_TIMEOUT_MS", 120000);
  const reqOpts = { timeout };

  transport = new StdioClientTransport({
    command,
    args,
    env: { ...process.env },
    stderr: "inherit",
  });
  const client = new Client({ name: "clarity-ts-client", version: "0.0.0" });

  try {
    await client.connect(transport, reqOpts);

    const names = [];
    let cursor;
    do {
      const page = await client.listTools(cursor ? { cursor } : {}, reqOpts);
      for (const t of page.tools) names.push(t.name);
      cursor = page.nextCursor;
    } while (cursor);
    result.tools = [...new Set(names)].sort();

    for (const name of ["store_memory", "retrieve_memory"]) {
      if (!result.tools.includes(name)) {
        result.errors.push(`tool ${name} not listed by server`);
      }
    }

    // Store N memories.
    const stored = []; // {i, text, id}
    for (let i = 0; i < n; i++) {
      const text = sentence(i);
      try {
        const res = await client.callTool(
          {
            name: "store_memory",
            arguments: {
              content: text,
              memory_type: "note",
              importance: 0.5,
              tags: ["ts"],
            },
          },
          undefined,
          reqOpts,
        );
        if (res.isError) {
          result.errors.push(`store ${i}: isError: ${contentText(res)}`);
          continue;
        }
        const sc = res.structuredContent;
        if (!sc || typeof sc !== "object") {
          result.errors.push(`store ${i}: no structuredContent`);
          continue;
        }
        if (typeof sc.id !== "string" || sc.id === "") {
          result.errors.push(`store ${i}: structuredContent.id missing or not a string`);
          continue;
        }
        if (sc.stored !== true || sc.duplicate_of !== null || typeof sc.created_at !== "string") {
          result.errors.push(`store ${i}: structuredContent is not a new memory's answer`);
          continue;
        }
        stored.push({ i, text, id: sc.id });
        result.stored += 1;
      } catch (e) {
        result.errors.push(`store ${i}: ${errText(e)}`);
      }
    }

    // Retrieve each one by its own sentence.
    for (const { i, text, id } of stored) {
      try {
        const res = await client.callTool(
          { name: "retrieve_memory", arguments: { query: text, limit: 3 } },
          undefined,
          reqOpts,
        );
        if (res.isError) {
          result.errors.push(`retrieve ${i}: isError: ${contentText(res)}`);
          continue;
        }
        const mems = res.structuredContent?.memories;
        if (!Array.isArray(mems)) {
          result.errors.push(`retrieve ${i}: structuredContent.memories is not an array`);
          continue;
        }
        if (mems.some((m) => m && m.id === id)) {
          result.retrieved += 1;
        } else {
          const got = mems.map((m) => m?.id);
          result.errors.push(
            `retrieve ${i}: id ${id} not among results ${JSON.stringify(got)}`,
          );
        }
      } catch (e) {
        result.errors.push(`retrieve ${i}: ${errText(e)}`);
      }
    }
  } finally {
    // Closing the client closes the transport, which ends the server's stdin
    // and, if it does not exit, terminates the child process.
    try {
      await client.close();
    } catch (e) {
      result.errors.push(`close: ${errText(e)}`);
    }
  }
}

const watchdogMs = (() => {
  try {
    return intEnv("CLARITY_TS_TOTAL_TIMEOUT_MS", 900000);
  } catch {
    return 900000;
  }
})();
const watchdog = setTimeout(() => {
  result.errors.push(`watchdog: run exceeded ${watchdogMs} ms`);
  const pid = transport?.pid;
  if (pid) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  finish(1);
}, watchdogMs);
watchdog.unref();

main()
  .then(() => finish(0))
  .catch((e) => {
    result.errors.push(errText(e));
    finish(1);
  });
