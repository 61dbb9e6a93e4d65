"""The gateway's routers, one module per area."""
