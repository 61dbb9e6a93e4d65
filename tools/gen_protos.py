"""Generate the Python gRPC stubs from protos/ into services/proto/.

protoc writes imports as `from feedrank.v1 import x_pb2`; they are rewritten to the
package path so the stubs import without touching sys.path. `--check` regenerates into
a temporary folder and fails when the committed stubs differ from the .proto files.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
OUT = ROOT / "services" / "proto"
PACKAGE = "services.proto"


def generate(out: Path) -> None:
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    import grpc_tools

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    rc = protoc.main(
        ["protoc", f"-I{PROTO_ROOT}", f"-I{well_known}", f"--python_out={out}", f"--pyi_out={out}",
         f"--grpc_python_out={out}", *protos]
    )
    if rc != 0:
        sys.exit(f"protoc failed with exit code {rc}")
    for path in [*out.rglob("*.py"), *out.rglob("*.pyi")]:
        text = path.read_text()
        text = re.sub(r"^from feedrank\.v1 import", f"from {PACKAGE}.feedrank.v1 import", text, flags=re.M)
        path.write_text(text)
    for pkg in [out / "feedrank", out / "feedrank" / "v1"]:
        (pkg / "__init__.py").touch()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    if not args.check:
        shutil.rmtree(OUT / "feedrank", ignore_errors=True)
        generate(OUT)
        return
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        stale = _stale(Path(tmp), OUT)
        if stale:
            sys.exit(f"generated stubs are out of date ({', '.join(stale)}): run `make protos`")


# Each stub carries the version of the grpcio-tools / protoc that wrote it; a newer patch release of the
# generator changes only these stamps, so the check compares the stubs without them. The committed stamps
# are the oldest runtime the stubs accept (pyproject's grpcio and protobuf floors).
_STAMPS = re.compile(
    r"^GRPC_GENERATED_VERSION = .*$|^# Protobuf Python Version: .*$|(?<=Domain\.PUBLIC,)\s*\d+,\s*\d+,\s*\d+,", re.M
)


def _stale(generated: Path, committed: Path) -> list[str]:
    def stubs(root: Path) -> set[str]:
        return {p.relative_to(root).as_posix() for p in root.rglob("*.py*")
                if p.suffix in (".py", ".pyi") and p.name != "__init__.py"}

    def unstamped(path: Path) -> str:
        return _STAMPS.sub("", path.read_text())

    fresh, kept = stubs(generated), stubs(committed)
    changed = [n for n in sorted(fresh & kept) if unstamped(generated / n) != unstamped(committed / n)]
    return sorted(fresh ^ kept) + changed


if __name__ == "__main__":
    main()
