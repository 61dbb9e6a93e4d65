"""`python -m services.mcp`: the MCP server on stdio (for an agent's MCP client configuration).

Logs go to stderr: stdout carries the protocol.
"""

from __future__ import annotations

from services.common.config import get_settings
from services.common.logs import setup_logging
from services.mcp.server import create_server


def main() -> None:
    settings = get_settings()
    setup_logging(settings.log_level, settings.log_json)
    create_server(settings).run("stdio")


if __name__ == "__main__":
    main()
