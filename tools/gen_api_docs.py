"""Write docs/api.md from protos/: every service, RPC, message, field and enum with its comment.

Buf-style reference for callers in other languages: protoc parses the .proto files (keeping their
comments as source info), and this script renders the descriptors as Markdown. `--check` fails
when docs/api.md differs from what the protos give (run `make protos` to refresh it).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
OUT = ROOT / "docs" / "api.md"

# Where things sit in a FileDescriptorProto, as source-info paths name them (descriptor.proto's field numbers).
_MESSAGE, _ENUM, _SERVICE = 4, 5, 6
_FIELD, _NESTED, _NESTED_ENUM = 2, 3, 4
_VALUE, _METHOD = 2, 2
_SCALARS = {
    getattr(descriptor_pb2.FieldDescriptorProto, name): name.removeprefix("TYPE_").lower()
    for name in descriptor_pb2.FieldDescriptorProto.Type.keys()
}


def descriptors() -> list[descriptor_pb2.FileDescriptorProto]:
    import grpc_tools

    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.pb"
        rc = protoc.main(["protoc", f"-I{PROTO_ROOT}", f"-I{well_known}", "--include_source_info",
                          f"--descriptor_set_out={out}", *protos])
        if rc != 0:
            sys.exit(f"protoc failed with exit code {rc}")
        files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    return sorted(files, key=lambda f: f.name)


class _Comments:
    def __init__(self, file: descriptor_pb2.FileDescriptorProto):
        self._by_path = {tuple(loc.path): loc for loc in file.source_code_info.location}

    def __call__(self, *path: int) -> str:
        loc = self._by_path.get(path)
        if loc is None:
            return ""
        text = (loc.leading_comments or loc.trailing_comments).strip()
        return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _anchor(full_name: str) -> str:
    return full_name.lower().replace(".", "")


def _type(field: descriptor_pb2.FieldDescriptorProto, maps: dict[str, tuple[str, str]]) -> str:
    if field.type_name:
        name = field.type_name.lstrip(".")
        if name in maps:
            key, value = maps[name]
            return f"map<{key}, {value}>"
        return f"[{name.split('.')[-1]}](#{_anchor(name)})" if name.startswith("feedrank.") else name
    return _SCALARS[field.type]


def _label(field: descriptor_pb2.FieldDescriptorProto, maps: dict[str, tuple[str, str]]) -> str:
    if field.type_name.lstrip(".") in maps:
        return ""
    if field.label == descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED:
        return "repeated"
    return "optional" if field.proto3_optional else ""


def _map_entries(file: descriptor_pb2.FileDescriptorProto) -> dict[str, tuple[str, str]]:
    """map<k, v> fields are nested *Entry messages; they are shown as maps, not as messages."""
    out: dict[str, tuple[str, str]] = {}

    def walk(prefix: str, messages) -> None:
        for message in messages:
            name = f"{prefix}.{message.name}"
            if message.options.map_entry:
                key, value = message.field
                out[name] = (_SCALARS[key.type], value.type_name.lstrip(".").split(".")[-1] or _SCALARS[value.type])
            walk(name, message.nested_type)

    walk(file.package, file.message_type)
    return out


def render(files: list[descriptor_pb2.FileDescriptorProto]) -> str:
    lines = ["# feedrank gRPC API", "",
             "Generated from `protos/` by `tools/gen_api_docs.py` (`make protos`); do not edit by hand.",
             "Every service also serves `grpc.health.v1.Health` and server reflection. Python callers can use",
             "the client in `services/client` (README); other languages generate stubs from the same protos.", ""]
    for file in files:
        lines.append(f"- [{file.name}](#{_anchor(file.name.replace('/', ''))})")
    for file in files:
        lines += _file(file)
    return "\n".join(lines).rstrip() + "\n"


def _file(file: descriptor_pb2.FileDescriptorProto) -> list[str]:
    comment, maps = _Comments(file), _map_entries(file)
    lines = ["", f"## {file.name}", "", f"Package `{file.package}`."]
    for s, service in enumerate(file.service):
        lines += ["", f"### service {service.name}", ""]
        if comment(_SERVICE, s):
            lines += [comment(_SERVICE, s), ""]
        lines += ["| RPC | Request | Response | Description |", "|---|---|---|---|"]
        for m, method in enumerate(service.method):
            def side(type_name: str, streaming: bool) -> str:
                name = type_name.lstrip(".")
                return ("stream " if streaming else "") + f"[{name.split('.')[-1]}](#{_anchor(name)})"
            lines.append(f"| {method.name} | {side(method.input_type, method.client_streaming)} | "
                         f"{side(method.output_type, method.server_streaming)} | "
                         f"{_cell(comment(_SERVICE, s, _METHOD, m))} |")
    for e, enum in enumerate(file.enum_type):
        lines += _enum(f"{file.package}.{enum.name}", enum, comment, (_ENUM, e))
    for m, message in enumerate(file.message_type):
        lines += _message(f"{file.package}.{message.name}", message, comment, (_MESSAGE, m), maps)
    return lines


def _message(full_name: str, message, comment: _Comments, path: tuple[int, ...],
             maps: dict[str, tuple[str, str]]) -> list[str]:
    if message.options.map_entry:
        return []
    lines = ["", f"### {full_name.removeprefix('feedrank.v1.')}", "", f'<a id="{_anchor(full_name)}"></a>', ""]
    if comment(*path):
        lines += [comment(*path), ""]
    if message.field:
        oneofs = {i: o.name for i, o in enumerate(message.oneof_decl)}
        lines += ["| Field | Number | Type | Label | Description |", "|---|---|---|---|---|"]
        for f, field in enumerate(message.field):
            note = comment(*path, _FIELD, f)
            if field.HasField("oneof_index") and not field.proto3_optional:
                note = f"oneof `{oneofs[field.oneof_index]}`. {note}".strip()
            lines.append(f"| {field.name} | {field.number} | {_type(field, maps)} | {_label(field, maps)} | "
                         f"{_cell(note)} |")
    else:
        lines.append("No fields.")
    for n, nested in enumerate(message.nested_type):
        lines += _message(f"{full_name}.{nested.name}", nested, comment, (*path, _NESTED, n), maps)
    for n, enum in enumerate(message.enum_type):
        lines += _enum(f"{full_name}.{enum.name}", enum, comment, (*path, _NESTED_ENUM, n))
    return lines


def _enum(full_name: str, enum, comment: _Comments, path: tuple[int, ...]) -> list[str]:
    lines = ["", f"### enum {full_name.removeprefix('feedrank.v1.')}", "", f'<a id="{_anchor(full_name)}"></a>', ""]
    if comment(*path):
        lines += [comment(*path), ""]
    lines += ["| Name | Number | Description |", "|---|---|---|"]
    for v, value in enumerate(enum.value):
        lines.append(f"| {value.name} | {value.number} | {_cell(comment(*path, _VALUE, v))} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when docs/api.md is out of date")
    args = parser.parse_args()
    text = render(descriptors())
    if args.check:
        if not OUT.is_file() or OUT.read_text() != text:
            sys.exit(f"{OUT.relative_to(ROOT)} is out of date with protos/: run `make protos`")
        return
    OUT.write_text(text)


if __name__ == "__main__":
    main()
