"""The lexical (BM25) leg: one interface, an embedded tantivy index or an OpenSearch server."""
