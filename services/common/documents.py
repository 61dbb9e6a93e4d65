"""A document as every stage holds it: id, title, text (the BEIR reader, ingestion and the indexes share it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Doc:
    id: str
    title: str
    text: str
