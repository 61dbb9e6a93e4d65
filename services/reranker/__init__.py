"""The reranker service: ONNX cross-encoders behind a dynamic batcher, hot-swapped from the registry."""

# The floor of Rerank's max_tokens_per_doc, shared by the reranker and the gateway's bodies: fewer
# tokens leave too little of a document to rank it by (Cohere's API has the same floor).
MIN_TOKENS_PER_DOC = 16
