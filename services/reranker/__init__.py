"""The reranker service: ONNX cross-encoders behind a dynamic batcher, hot-swapped from the registry."""
