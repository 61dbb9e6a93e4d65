"""`python -m services.gateway [--port P] [--host H]`: serve the HTTP gateway and the web console."""

from __future__ import annotations

import argparse

import uvicorn

from services.common.config import get_settings
from services.common.errors import FeedrankError
from services.common.logs import setup_logging
from services.gateway.app import create_app


def main() -> None:
    settings = get_settings()
    default_port = int(settings.endpoints.gateway.rsplit(":", 1)[1])
    parser = argparse.ArgumentParser(prog="python -m services.gateway", description=__doc__)
    parser.add_argument("--port", type=int, default=default_port, help="HTTP port (default: endpoints.gateway's)")
    parser.add_argument("--host", default=settings.endpoints.bind_host, help="Interface (default: endpoints.bind_host)")
    args = parser.parse_args()
    setup_logging(settings.log_level, settings.log_json)
    try:
        app = create_app(settings, bind_host=args.host)
    except FeedrankError as err:  # no admin token beyond loopback: say why, plainly
        raise SystemExit(f"gateway: {err}") from None
    # One worker: the rate limiter and the gRPC channels live in the process.
    uvicorn.run(app, host=args.host, port=args.port, log_config=None,
                log_level=settings.log_level.lower(), timeout_graceful_shutdown=int(settings.endpoints.grace_seconds))


if __name__ == "__main__":
    main()
