"""Turning a source tree into searchable chunks, the way the seed system indexes code.

- Python: one chunk per top-level function/class (methods stay inside their class; a class
  longer than a window is split into its methods), found with `ast`; module-level code between
  definitions becomes line-window chunks.
- Other text files: line windows (`repo_window_lines`, overlapping by `repo_window_overlap`).
- Skipped: vendored and generated folders, hidden folders, binary files, files over
  `repo_max_file_bytes`, and files that are not UTF-8.
Doc ids are `<relative/path>:<first line>-<last line>` (1-based, inclusive), e.g. `auth/oauth.py:45-67`.
The title is the path plus the definition name, which BM25 and the embedder both see.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from services.common.config import RetrievalSettings
from services.common.documents import Doc
from services.common.errors import invalid

SKIP_DIRS = {
    "node_modules", "vendor", "third_party", "third-party", "site-packages", "dist", "build", "target",
    "__pycache__", "venv", ".venv", "env", "bower_components", "Pods",
}
SOURCE_SUFFIXES = {
    ".py", ".pyi", ".js", ".jsx", ".ts", ".tsx", ".go", ".rs", ".java", ".kt", ".scala", ".c", ".h", ".cc", ".cpp",
    ".hpp", ".cs", ".rb", ".php", ".swift", ".m", ".sh", ".bash", ".sql", ".proto", ".md", ".rst", ".txt", ".toml",
    ".yaml", ".yml", ".json", ".html", ".css", ".scss", ".vue", ".lua", ".r", ".jl", ".ex", ".exs", ".erl", ".hs",
    ".clj", ".dart", ".tf", ".cfg", ".ini", ".mk",
}
SOURCE_NAMES = {"Makefile", "Dockerfile", "CMakeLists.txt", "BUILD", "WORKSPACE"}
MINIFIED_LINE = 1000  # a line this long is generated or minified code, not worth indexing


def iter_source_files(root: Path, max_bytes: int) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part in SKIP_DIRS or part.startswith(".") for part in rel.parts[:-1]):
            continue
        if not path.is_file() or path.name.startswith("."):
            continue
        if path.suffix.lower() not in SOURCE_SUFFIXES and path.name not in SOURCE_NAMES:
            continue
        if path.stat().st_size > max_bytes or path.stat().st_size == 0:
            continue
        yield path


def read_text(path: Path) -> str | None:
    """The file's text, or None for binary (a NUL byte) or non-UTF-8 content."""
    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any(len(line) > MINIFIED_LINE for line in text.splitlines()[:50]):
        return None
    return text


def windows(start: int, end: int, size: int, overlap: int) -> Iterator[tuple[int, int]]:
    """1-based inclusive (first, last) line ranges covering [start, end]."""
    step = max(1, size - overlap)
    first = start
    while first <= end:
        last = min(end, first + size - 1)
        yield first, last
        if last == end:
            break
        first += step


def python_spans(text: str, size: int) -> list[tuple[int, int, str]] | None:
    """(first line, last line, name) of each top-level definition; None when the file does not parse."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    spans = []
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        last = node.end_lineno or node.lineno
        if isinstance(node, ast.ClassDef) and last - first + 1 > size:
            methods = [n for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
            head_end = (min(m.lineno for m in methods) - 1) if methods else last
            spans.append((first, head_end, node.name))
            for m in methods:
                m_first = min([m.lineno, *(d.lineno for d in m.decorator_list)])
                spans.append((m_first, m.end_lineno or m.lineno, f"{node.name}.{m.name}"))
        else:
            spans.append((first, last, node.name))
    return spans


def chunk_file(rel: str, text: str, settings: RetrievalSettings) -> list[Doc]:
    lines = text.splitlines()
    size, overlap = settings.repo_window_lines, min(settings.repo_window_overlap, settings.repo_window_lines - 1)
    spans: list[tuple[int, int, str]] = []
    defs = python_spans(text, size) if rel.endswith((".py", ".pyi")) else None
    if defs:
        covered = 0
        for first, last, name in defs:
            if first > covered + 1:
                spans += [(a, b, "") for a, b in windows(covered + 1, first - 1, size, overlap)]
            spans.append((first, last, name))
            covered = max(covered, last)
        if covered < len(lines):
            spans += [(a, b, "") for a, b in windows(covered + 1, len(lines), size, overlap)]
    else:
        spans = [(a, b, "") for a, b in windows(1, len(lines), size, overlap)]
    docs = []
    for first, last, name in spans:
        # Blank edge lines are dropped so the id names the lines that hold code.
        while first <= last and not lines[first - 1].strip():
            first += 1
        while last >= first and not lines[last - 1].strip():
            last -= 1
        if first > last:
            continue
        body = "\n".join(lines[first - 1 : last])
        docs.append(Doc(f"{rel}:{first}-{last}", f"{rel} {name}".strip(), body))
    return docs


def chunk_repo(root: Path, settings: RetrievalSettings) -> Iterator[Doc]:
    if not root.is_dir():
        raise invalid("repo", f"{root} is not a folder")
    for path in iter_source_files(root, settings.repo_max_file_bytes):
        text = read_text(path)
        if text is None:
            continue
        yield from chunk_file(path.relative_to(root).as_posix(), text, settings)
