"""feedrank: hybrid retrieval with a cross-encoder reranker that learns from its users."""

__version__ = "0.1.0"
