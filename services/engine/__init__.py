"""The ONNX inference engine shared by the reranker (cross-encoders) and the retriever (embedder)."""
