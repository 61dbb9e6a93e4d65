"""Code chunking for `feedrank ingest --repo`."""

from __future__ import annotations

from services.common.config import RetrievalSettings
from services.retriever.chunking import chunk_repo, windows

PY = '''"""Module doc."""
import os


def login(user):
    return user


@decorated
class OAuth:
    def token(self):
        return 1
'''


def test_python_is_chunked_by_definition(tmp_path):
    (tmp_path / "auth").mkdir()
    (tmp_path / "auth" / "oauth.py").write_text(PY)
    docs = {d.id: d for d in chunk_repo(tmp_path, RetrievalSettings())}
    assert set(docs) == {"auth/oauth.py:1-2", "auth/oauth.py:5-6", "auth/oauth.py:9-12"}
    assert docs["auth/oauth.py:5-6"].title == "auth/oauth.py login"
    assert docs["auth/oauth.py:9-12"].text.startswith("@decorated\nclass OAuth")


def test_long_classes_split_into_methods(tmp_path):
    body = "class Big:\n" + "".join(f"    def m{i}(self):\n" + "        x = 1\n" * 8 for i in range(10))
    (tmp_path / "big.py").write_text(body)
    docs = list(chunk_repo(tmp_path, RetrievalSettings(repo_window_lines=20, repo_window_overlap=0)))
    assert docs[0].id == "big.py:1-1"
    assert docs[1].id == "big.py:2-10" and docs[1].title == "big.py Big.m0"
    assert len(docs) == 11


def test_other_languages_use_line_windows_and_junk_is_skipped(tmp_path):
    (tmp_path / "main.go").write_text("\n".join(f"line {i}" for i in range(1, 26)))
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "node_modules" / "lib.js").write_text("vendored()")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config.txt").write_text("hidden")
    (tmp_path / "logo.png").write_bytes(b"\x89PNG\x00\x00")
    (tmp_path / "data.txt").write_bytes(b"abc\x00def")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "broken.py").write_text("def broken(:\n    pass\n")
    docs = {d.id for d in chunk_repo(tmp_path, RetrievalSettings(repo_window_lines=10, repo_window_overlap=2))}
    assert docs == {"main.go:1-10", "main.go:9-18", "main.go:17-25", "broken.py:1-2"}


def test_windows_cover_everything():
    assert list(windows(1, 5, 10, 2)) == [(1, 5)]
    assert list(windows(1, 20, 10, 0)) == [(1, 10), (11, 20)]
