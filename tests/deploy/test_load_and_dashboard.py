"""The ghz configs send requests the services accept; the Grafana dashboard queries metrics that exist."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from google.protobuf import json_format

from services.common.config import FeedbackSettings, RerankingSettings, Settings
from services.feedback.validation import validate_batch
from services.proto.feedrank.v1 import feedback_pb2, reranker_pb2, retriever_pb2

ROOT = Path(__file__).resolve().parents[2]
GHZ = ROOT / "deploy" / "ghz"
MODULES = {"retriever": retriever_pb2, "reranker": reranker_pb2, "feedback": feedback_pb2}
CONFIGS = {"search": "retriever", "rerank": "reranker", "record": "feedback"}


def render_template(value: str) -> str:
    """ghz's per-call template fields, with sample values."""
    samples = {"{{.UUID}}": "0b7e8c1e-1111-4a4a-8888-123456789abc", "{{.RequestNumber}}": "7",
               "{{.TimestampUnixMilli}}": str(int(time.time() * 1000))}
    for placeholder, sample in samples.items():
        value = value.replace(placeholder, sample)
    assert "{{" not in value, f"unknown ghz template in {value!r}"
    return value


def _rendered(data):
    if isinstance(data, dict):
        return {k: _rendered(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_rendered(v) for v in data]
    return render_template(data) if isinstance(data, str) else data


def request_for(name: str):
    config = json.loads((GHZ / f"{name}.json").read_text())
    module = MODULES[CONFIGS[name]]
    package, service, method = config["call"].rsplit(".", 2)
    assert package == "feedrank.v1"
    descriptor = module.DESCRIPTOR.services_by_name[service].methods_by_name[method]
    assert (ROOT / config["proto"]).is_file() and config["proto"].startswith(config["import-paths"][0] + "/")
    message = getattr(module, descriptor.input_type.name)()
    # ignore_unknown_fields=False: a misspelt field in the config fails here, not under load.
    json_format.ParseDict(_rendered(config["data"]), message)
    return config, message


@pytest.mark.parametrize("name", CONFIGS)
def test_ghz_config_targets_the_service_port_with_a_parseable_request(name):
    config, _ = request_for(name)
    endpoint = getattr(Settings().endpoints, CONFIGS[name])
    assert config["host"].rsplit(":", 1)[1] == endpoint.rsplit(":", 1)[1]
    assert config["insecure"] is True and config["total"] > 0 and config["concurrency"] > 0
    assert set(config["metadata"]) == {"x-request-id"}


def test_ghz_record_events_pass_feedback_validation():
    _, request = request_for("record")
    records = validate_batch(request.events, FeedbackSettings(), int(time.time() * 1000))
    assert len(records) == 1
    # A fresh event_id per call: a constant one would be deduplicated and measure nothing.
    assert "{{.UUID}}" in (GHZ / "record.json").read_text()


def test_ghz_rerank_request_fits_the_limits():
    _, request = request_for("rerank")
    limits = RerankingSettings()
    assert 1 < len(request.documents) <= limits.max_documents
    assert len({d.id for d in request.documents}) == len(request.documents)
    assert all(len(d.text.encode()) <= limits.max_text_bytes for d in request.documents)


# -- Grafana ---------------------------------------------------------------------------------------

DASHBOARD = ROOT / "deploy" / "grafana" / "feedrank-dashboard.json"


def declared_metrics() -> set[str]:
    """Metric names the services declare (prometheus_client constructor string literals)."""
    names = set()
    for path in (ROOT / "services").rglob("*.py"):
        names |= set(re.findall(r"\"(feedrank_[a-z0-9_]+)\"", path.read_text()))
    return names


def test_dashboard_queries_only_declared_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    declared = declared_metrics()
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert panels and len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    queried = set()
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            queried |= set(re.findall(r"\bfeedrank_[a-z0-9_]+", target["expr"]))
    for name in queried:
        # Exposition adds _bucket (histograms) and _info (Info); counters are declared with _total.
        base = re.sub(r"_(bucket|info)$", "", name)
        assert name in declared or base in declared, f"{name} is not declared by any service"
    # The list: requests and latency by RPC, batch size, queue depth, model version, swaps,
    # consumer lag, spool depth.
    for needed in ("feedrank_grpc_requests_total", "feedrank_grpc_request_seconds_bucket", "feedrank_rerank_batch_pairs_bucket",
                   "feedrank_rerank_queue_pairs", "feedrank_model_info", "feedrank_model_swaps_total",
                   "feedrank_model_swap_failures_total", "feedrank_events_consumer_lag", "feedrank_feedback_spool_depth"):
        assert needed in queried, needed
