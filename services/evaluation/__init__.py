"""IR evaluation: metrics (pure numpy), BEIR loading, and the retriever's eval runner."""
