"""Code every service shares: settings, errors, the gRPC bootstrap, logging and metrics."""
