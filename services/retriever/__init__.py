"""The retriever: corpora, lexical and vector legs, fusion, the reranker call, impressions."""
