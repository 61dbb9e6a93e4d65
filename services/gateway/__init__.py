"""HTTP gateway: REST routes, Cohere/TEI-compatible rerank and the web console over the gRPC services."""
