"""The MCP server, ``wasm-sandbox mcp``: Python and JavaScript code run in sandboxes as tools
of the Model Context Protocol, fresh (``run_python``, ``run_javascript``) or in sessions kept
between calls. Only ``_server`` imports the ``mcp`` SDK (the optional extra ``[mcp]``); the
rest (options, answers, the session pool, the tools) is plain asyncio over the public API.
"""
