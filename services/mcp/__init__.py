"""MCP server (stdio) giving coding agents feedrank's `search` and `feedback` tools."""
