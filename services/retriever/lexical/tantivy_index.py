"""Embedded BM25 on tantivy, one on-disk index per corpus (`corpora/<id>/lexical/`).

Analysis: simple tokenizer, lowercase, English stop words, English (Snowball) stemmer, over
title + text in one field (as Pyserini's "flat" BEIR indexes).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import tantivy

from services.common.documents import Doc
from services.retriever.lexical.base import Hits

ANALYZER = "en_stem_stop"


def build_analyzer() -> tantivy.TextAnalyzer:
    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(40))
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.stopword("english"))
        .filter(tantivy.Filter.stemmer("english"))
        .build()
    )


def _schema() -> tantivy.Schema:
    return (
        tantivy.SchemaBuilder()
        .add_text_field("id", stored=True, tokenizer_name="raw")
        .add_text_field("body", stored=False, tokenizer_name=ANALYZER, index_option="freq")
        .build()
    )


class TantivyIndex:
    def __init__(self, path: Path):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self._index = tantivy.Index(_schema(), path=str(path), reuse=True)
        self._analyzer = build_analyzer()
        self._index.register_tokenizer(ANALYZER, self._analyzer)
        self._schema = self._index.schema
        self._writer: tantivy.IndexWriter | None = None

    def _w(self) -> tantivy.IndexWriter:
        if self._writer is None:
            self._writer = self._index.writer(heap_size=64_000_000, num_threads=1)
        return self._writer

    def upsert(self, docs: list[Doc]) -> None:
        writer = self._w()
        for doc in docs:
            writer.delete_documents_by_term("id", doc.id)
            writer.add_document(tantivy.Document(id=doc.id, body=f"{doc.title}\n{doc.text}"))

    def delete(self, ids: list[str]) -> None:
        writer = self._w()
        for doc_id in ids:
            writer.delete_documents_by_term("id", doc_id)

    def commit(self) -> None:
        if self._writer is not None:
            self._writer.commit()
            self._writer.wait_merging_threads()
            self._writer = None
        self._index.reload()

    def search(self, query: str, k: int) -> Hits:
        terms = self._analyzer.analyze(query)
        if not terms:
            return []
        clauses = [(tantivy.Occur.Should, tantivy.Query.term_query(self._schema, "body", t)) for t in terms]
        searcher = self._index.searcher()
        hits = searcher.search(tantivy.Query.boolean_query(clauses), limit=k, count=False).hits
        return [(searcher.doc(addr)["id"][0], float(score)) for score, addr in hits]

    def count(self) -> int:
        return self._index.searcher().num_docs

    def drop(self) -> None:
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.rollback()
            self._writer = None
