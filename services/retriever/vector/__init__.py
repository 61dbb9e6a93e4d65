"""The dense leg's vector store: one interface, embedded qdrant-edge or a Qdrant server."""
