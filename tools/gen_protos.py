"""Generate the Python gRPC stubs from protos/ into services/proto/.

protoc writes imports as `from feedrank.v1 import x_pb2`; they are rewritten to the
package path so the stubs import without touching sys.path. `--check` regenerates into
a temporary folder and fails when the committed stubs differ from the .proto files.
"""

from __future__ import annotations

import argparse
import filecmp
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
        cmp = filecmp.dircmp(tmp, OUT)
        stale = _differences(cmp)
        if stale:
            sys.exit(f"generated stubs are out of date ({', '.join(stale)}): run `make protos`")


def _differences(cmp: filecmp.dircmp, prefix: str = "") -> list[str]:
    ignored = {"__pycache__", "__init__.py"}
    out = [prefix + n for n in cmp.left_only + cmp.diff_files if n not in ignored]
    out += [prefix + n for n in cmp.right_only if n not in ignored and not n.endswith(".pyc")]
    for name, sub in cmp.subdirs.items():
        if name not in ignored:
            out += _differences(sub, prefix + name + "/")
    return out


if __name__ == "__main__":
    main()
