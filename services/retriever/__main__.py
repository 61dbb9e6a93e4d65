"""`python -m services.retriever [--port P]`: the feedrank.v1.Retriever gRPC server (default 50051)."""

from __future__ import annotations

import argparse
import asyncio

from services.common.config import get_settings
from services.common.logs import setup_logging
from services.retriever.server import serve


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m services.retriever", description=__doc__)
    parser.add_argument("--port", type=int, default=None, help="gRPC port (default: the port of endpoints.retriever)")
    args = parser.parse_args()
    settings = get_settings()
    setup_logging(settings.log_level, settings.log_json)
    asyncio.run(serve(settings, args.port))


if __name__ == "__main__":
    main()
