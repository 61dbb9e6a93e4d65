"""docs/api.md is what tools/gen_api_docs.py makes of protos/, and names everything the protos define."""

from __future__ import annotations

import subprocess
import sys

from services.proto.feedrank.v1 import common_pb2, feedback_pb2, reranker_pb2, retriever_pb2, trainer_pb2
from tests.conftest import REPO


def test_api_docs_are_up_to_date():
    check = subprocess.run([sys.executable, "tools/gen_api_docs.py", "--check"], cwd=REPO, capture_output=True,
                           text=True, timeout=120)
    assert check.returncode == 0, check.stderr


def test_every_service_rpc_message_field_and_enum_value_is_documented_with_its_comment():
    doc = (REPO / "docs" / "api.md").read_text()
    for module in (common_pb2, feedback_pb2, reranker_pb2, retriever_pb2, trainer_pb2):
        file = module.DESCRIPTOR
        for service in file.services_by_name.values():
            assert f"### service {service.name}" in doc
            for method in service.methods:
                assert f"| {method.name} | " in doc
        for message in file.message_types_by_name.values():
            assert f'<a id="{message.full_name.lower().replace(".", "")}"></a>' in doc
            for field in message.fields:
                assert f"| {field.name} | {field.number} | " in doc
        for enum in file.enum_types_by_name.values():
            for value in enum.values:
                assert f"| {value.name} | {value.number} | " in doc
    # Comments travel: a service's leading one and a field's trailing one.
    assert "Takes user feedback; acknowledged means durable" in doc
    assert "| top_n | 3 | int32 |  | 0 = return every document |" in doc
