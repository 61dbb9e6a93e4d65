"""The server backends authenticate with the configured credentials (deploy/k8s turns auth on for both).

Qdrant and OpenSearch are stood in for by a small HTTP(S) server on loopback that answers the few calls
the adapters make, but only to a request carrying the expected credentials (401 otherwise), and records
what each request sent.
"""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opensearchpy.exceptions import AuthenticationException, SSLError
from qdrant_client.http.exceptions import UnexpectedResponse

from services.common.config import RetrievalSettings
from services.retriever.lexical import opensearch_index
from services.retriever.lexical.opensearch_index import OpenSearchIndex
from services.retriever.vector import qdrant
from services.retriever.vector.qdrant import QdrantIndex

QDRANT_ANSWERS = {
    ("GET", "/"): {"title": "qdrant", "version": "1.20.0"},
    ("GET", "/collections/feedrank-tiny/exists"): {"result": {"exists": True}, "status": "ok", "time": 0.0},
    ("POST", "/collections/feedrank-tiny/points/count"): {"result": {"count": 12}, "status": "ok", "time": 0.0},
}
OPENSEARCH_ANSWERS = {
    ("HEAD", "/feedrank-tiny"): {},
    ("GET", "/feedrank-tiny/_count"): {"count": 12},
    ("POST", "/feedrank-tiny/_count"): {"count": 12},
}


class FakeServer:
    """Answers `answers[(method, path)]` to requests whose header `header` equals `expected`, else 401."""

    def __init__(self, answers: dict, header: str, expected: str, tls: tuple[Path, Path] | None = None):
        self.seen: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                outer.seen.append({k.lower(): v for k, v in self.headers.items()})
                body = answers.get((self.command, self.path.split("?")[0]))
                status = 401 if self.headers.get(header) != expected else 404 if body is None else 200
                payload = json.dumps(body if status == 200 else {"error": "unauthorized" if status == 401 else "?"})
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload.encode())

            do_GET = do_POST = do_HEAD = do_PUT = _answer

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (it is its own CA)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "server.crt", folder / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


def test_qdrant_client_sends_the_api_key():
    with FakeServer(QDRANT_ANSWERS, "api-key", "read-only-key") as server:
        settings = RetrievalSettings(qdrant_url=server.url, qdrant_api_key="read-only-key")
        index = QdrantIndex(qdrant.connect(settings), "feedrank-tiny", 384)
        assert index.count() == 12
        assert server.seen and all(h.get("api-key") == "read-only-key" for h in server.seen)

        # Without the key the server refuses, and the adapter does not pretend otherwise.
        with pytest.raises(UnexpectedResponse) as refused:
            QdrantIndex(qdrant.connect(RetrievalSettings(qdrant_url=server.url)), "feedrank-tiny", 384)
        assert refused.value.status_code == 401


def test_opensearch_client_sends_basic_auth():
    expected = "Basic " + base64.b64encode(b"feedrank-retriever:s3cret").decode()
    with FakeServer(OPENSEARCH_ANSWERS, "Authorization", expected) as server:
        settings = RetrievalSettings(opensearch_url=server.url, opensearch_username="feedrank-retriever",
                                     opensearch_password="s3cret")
        index = OpenSearchIndex(opensearch_index.connect(settings), "feedrank-tiny", k1=0.9, b=0.4, retries=0)
        assert index.count() == 12
        assert server.seen and all(h.get("authorization") == expected for h in server.seen)

        wrong = RetrievalSettings(opensearch_url=server.url, opensearch_username="feedrank-retriever",
                                  opensearch_password="guess")
        with pytest.raises(AuthenticationException):
            OpenSearchIndex(opensearch_index.connect(wrong), "feedrank-tiny", k1=0.9, b=0.4, retries=0).count()


def test_opensearch_https_is_verified_against_the_configured_ca(certificate):
    expected = "Basic " + base64.b64encode(b"feedrank-ingest:s3cret").decode()
    with FakeServer(OPENSEARCH_ANSWERS, "Authorization", expected, tls=certificate) as server:
        trusted = RetrievalSettings(opensearch_url=server.url, opensearch_username="feedrank-ingest",
                                    opensearch_password="s3cret", opensearch_ca_file=str(certificate[0]),
                                    opensearch_bulk_retries=0)
        assert OpenSearchIndex(opensearch_index.connect(trusted), "feedrank-tiny", k1=0.9, b=0.4, retries=0).count() == 12
        # The system CAs do not know this certificate: the connection is refused, not silently trusted.
        untrusted = trusted.model_copy(update={"opensearch_ca_file": ""})
        with pytest.raises(SSLError):
            opensearch_index.connect(untrusted).count(index="feedrank-tiny")


def test_opensearch_user_without_password_is_refused_naming_the_fields():
    with pytest.raises(ValueError, match="opensearch_username and opensearch_password"):
        RetrievalSettings(opensearch_username="feedrank-retriever")
