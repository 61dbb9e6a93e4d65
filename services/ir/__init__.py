"""IR evaluation: metrics (pure numpy) and BEIR loading; the retriever's eval runner is services/retriever/evaluation.py."""
