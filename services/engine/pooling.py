"""Sentence vectors from token embeddings (attention-masked mean, then unit length), and a query adapter on them."""

from __future__ import annotations

import numpy as np


def mean_pool_normalize(hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    mask = attention_mask[..., None].astype(np.float32)
    pooled = (hidden.astype(np.float32) * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
    return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)


def adapt_queries(queries: np.ndarray, W: np.ndarray) -> np.ndarray:
    """normalize(q + q W) per row: a version's linear query adapter, as the trainer learns it and the
    reranker and the retriever's vector leg serve it (one definition, so the three agree)."""
    adapted = queries + queries @ W
    return (adapted / np.clip(np.linalg.norm(adapted, axis=-1, keepdims=True), 1e-12, None)).astype(np.float32)
