"""Signed query_ids: the retriever signs what it showed, the feedback service checks events against it.

A query_id is `q1` followed by the unpadded base64url of

    issued_s (u32) | nonce (6 bytes) | query tag (8) | one doc tag (4) per shown result, in rank order | mac (16)

- query tag = HMAC(key, "query" | corpus id | query text), truncated;
- doc tag   = HMAC(key, "doc" | doc id), truncated;
- mac       = HMAC-SHA256(key, "feedrank.query-id.v1" | everything before it), truncated to 128 bits.

So the mac covers the corpus, the query text, the shown document ids in order and the issue time,
through keyed digests: the id stays a compact string (a Kafka key; ~100 characters for ten results)
that reveals neither the query nor the documents, yet a verifier holding the key can tell, from the
id alone, whether a document was shown and at which rank. A 32-bit keyed doc tag means that a
click naming a document that was not shown passes with probability 2^-32, and no one without the
key can search for such a document offline.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

PREFIX = "q1"
KEY_FILE = "feedback-signing.key"
_HEAD = struct.Struct(">I6s8s")
_DOC_TAG = 4
_MAC = 16
_DOMAIN = b"feedrank.query-id.v1\x00"


class QueryIdError(ValueError):
    """A query_id that does not open: `reason` is "invalid" (not signed here, or altered) or "expired"."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class SignedQuery:
    issued_s: int
    query_tag: bytes
    doc_tags: tuple[bytes, ...]  # rank 1 first


class QueryIdSigner:
    def __init__(self, key: bytes):
        if not key:
            raise ValueError("the query_id signing key is empty")
        self._key = key

    def _tag(self, *parts: str, size: int) -> bytes:
        message = b"\x00".join(p.encode() for p in parts)
        return hmac.new(self._key, message, hashlib.sha256).digest()[:size]

    def query_tag(self, corpus_id: str, query: str) -> bytes:
        return self._tag("query", corpus_id, query, size=8)

    def doc_tag(self, doc_id: str) -> bytes:
        return self._tag("doc", doc_id, size=_DOC_TAG)

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, _DOMAIN + body, hashlib.sha256).digest()[:_MAC]

    def sign(self, corpus_id: str, query: str, doc_ids: Sequence[str], now_s: float) -> str:
        body = _HEAD.pack(int(now_s), secrets.token_bytes(6), self.query_tag(corpus_id, query))
        body += b"".join(self.doc_tag(d) for d in doc_ids)
        return PREFIX + base64.urlsafe_b64encode(body + self._mac(body)).rstrip(b"=").decode()

    def open(self, query_id: str, now_s: float, ttl_s: float, skew_s: float) -> SignedQuery:
        """The signed content of `query_id`; raises QueryIdError if it was altered, not signed with
        this key, issued more than `ttl_s` ago or more than `skew_s` in the future."""
        if not query_id.startswith(PREFIX):
            raise QueryIdError("invalid", "is not a query_id issued by this deployment's retriever")
        text = query_id[len(PREFIX):]
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            raise QueryIdError("invalid", "is not a query_id issued by this deployment's retriever") from None
        tags = len(raw) - _HEAD.size - _MAC
        if tags < 0 or tags % _DOC_TAG:
            raise QueryIdError("invalid", "is not a query_id issued by this deployment's retriever")
        body, mac = raw[:-_MAC], raw[-_MAC:]
        if not hmac.compare_digest(mac, self._mac(body)):
            raise QueryIdError("invalid", "was altered, or was not signed by this deployment's retriever")
        issued_s, _nonce, query_tag = _HEAD.unpack_from(body)
        age = now_s - issued_s
        if age > ttl_s:
            raise QueryIdError("expired", f"expired: issued {age:.0f}s ago, feedback.query_id_ttl_s is {ttl_s:g}")
        if -age > skew_s:
            raise QueryIdError("invalid", f"is issued {-age:.0f}s in the future")
        docs = body[_HEAD.size:]
        return SignedQuery(issued_s, query_tag, tuple(docs[i:i + _DOC_TAG] for i in range(0, len(docs), _DOC_TAG)))


def signing_key(configured: str, data_dir: Path) -> bytes:
    """`feedback.signing_key`, or else the key in the data dir, made (mode 0600) by whichever
    service needs it first; services on one machine sharing the data dir share it."""
    if configured:
        return configured.encode()
    path = Path(data_dir) / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_hex(32).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # never replaces a key another service made meanwhile
            log.info("made the query_id signing key", extra={"fields": {"path": str(path)}})
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    key = path.read_bytes().strip()
    if not key:
        raise ValueError(f"the query_id signing key file {path} is empty")
    log.info("query_ids are signed with the key in the data dir: services on other hosts need "
             "FEEDRANK_FEEDBACK__SIGNING_KEY set to one shared key", extra={"fields": {"path": str(path)}})
    return key
