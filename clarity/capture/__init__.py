"""Capture without a model call: what a Claude Code session did, read from its transcript.

`transcript` reads a Claude Code session transcript (JSONL) into a `SessionRecord`: what the user asked,
which files the session changed, which commands failed and then passed, the agent's last message, and
Claude Code's own compaction summaries. `digest` turns a record into the text, tags and metadata of one
`session` memory within the store's size limit. Neither calls a model, opens the store or the network:
the `clarity hook` command (clarity.cli.hooks) stores the digest through the coordination layer.
"""
