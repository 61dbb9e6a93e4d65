"""Model registry shared by the reranker (reads), the trainer and the CLI (write)."""
