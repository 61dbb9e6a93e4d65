"""The ghz configs send requests the services accept; the Grafana dashboard queries metrics that exist."""

from __future__ import annotations

import ast
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


_METRIC_CLASSES = {"Counter", "Gauge", "Histogram", "Info", "Summary", "Enum"}
# Labels the scrape adds to every series (kubernetes_sd relabelling and the scrape job), not the code.
TARGET_LABELS = {"namespace", "pod", "container", "instance", "job", "service", "node"}


def _series(kind: str, name: str) -> dict[str, set[str]]:
    """The series prometheus_client exposes for one metric, with the labels it adds itself."""
    if kind == "Counter":
        base = name.removesuffix("_total")
        return {f"{base}_total": set(), f"{base}_created": set()}
    if kind == "Histogram":
        return {f"{name}_bucket": {"le"}, f"{name}_sum": set(), f"{name}_count": set(), f"{name}_created": set()}
    if kind == "Summary":
        return {name: {"quantile"}, f"{name}_sum": set(), f"{name}_count": set(), f"{name}_created": set()}
    if kind == "Info":
        return {f"{name}_info": set()}
    if kind == "Enum":
        return {name: {name}}
    return {name: set()}


def exported_series() -> dict[str, set[str]]:
    """Every series the services export, with its label names, read from the prometheus_client constructor calls."""
    out: dict[str, set[str]] = {}
    for path in (ROOT / "services").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            kind = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            name = node.args[0].value if isinstance(node.args[0], ast.Constant) else None
            if kind not in _METRIC_CLASSES or not isinstance(name, str) or not name.startswith("feedrank_"):
                continue
            labels = node.args[2] if len(node.args) > 2 else next(
                (k.value for k in node.keywords if k.arg == "labelnames"), None)
            declared = set(ast.literal_eval(labels)) if labels is not None else set()
            for series, added in _series(kind, name).items():
                out[series] = declared | added
    return out


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(panel title, PromQL, legend format) of every panel target and the templating queries."""
    dashboard = json.loads(DASHBOARD.read_text())
    out = [(p["title"], t["expr"], t.get("legendFormat", "")) for p in dashboard["panels"] for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            out.append((f"${variable['name']}", variable["definition"], ""))
    return out


_SELECTOR = re.compile(r"\b(feedrank_[a-z0-9_]+)(?:\{([^}]*)\})?")
_MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_LABEL_VALUES = re.compile(r"label_values\(\s*(feedrank_[a-z0-9_]+)\s*,\s*(\w+)\s*\)")


def test_dashboard_series_and_labels_are_exported():
    """Each series, each label it filters, groups or names in a legend by, and each literal label value.

    Label values are a typo guard: a literal the dashboard matches on (outcome="promoted", name="loss") must
    appear as a string literal in the services' code, since prometheus_client takes label values from there.
    """
    exported = exported_series()
    source = "\n".join(path.read_text() for path in (ROOT / "services").rglob("*.py"))
    for title, expr, legend in dashboard_queries():
        selectors = _SELECTOR.findall(expr)
        assert selectors, f"{title}: no feedrank metric in {expr!r}"
        for name, matchers in selectors:
            assert name in exported, f"{title}: {name} is not a series any service exports"
            known = exported[name] | TARGET_LABELS
            for label, op, value in _MATCHER.findall(matchers):
                assert label in known, f"{title}: {name} has no label {label!r} (it has {sorted(exported[name])})"
                if value.startswith("$"):
                    continue
                for literal in value.split("|") if op in ("=~", "!~") else [value]:
                    if re.fullmatch(r"[\w@.-]+", literal):
                        assert f'"{literal}"' in source or f"'{literal}'" in source, \
                            f"{title}: {label}={literal!r} is a value no service code sets"
        names = [name for name, _ in selectors]
        grouped = {g.strip() for group in _GROUPING.findall(expr) for g in group.split(",") if g.strip()}
        for label in grouped:
            for name in names:
                assert label in exported[name] | TARGET_LABELS, f"{title}: groups {name} by {label!r}, which it lacks"
        for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", legend):
            assert label in (grouped or set.intersection(*(exported[n] | TARGET_LABELS for n in names))), \
                f"{title}: the legend names {label!r}, which the query's result does not carry"
        for name, label in _LABEL_VALUES.findall(expr):
            assert label in exported[name] | TARGET_LABELS, f"{title}: {name} has no label {label!r}"


def test_dashboard_has_a_training_row():
    dashboard = json.loads(DASHBOARD.read_text())
    rows = [i for i, p in enumerate(dashboard["panels"]) if p["type"] == "row"]
    titles = [dashboard["panels"][i]["title"] for i in rows]
    assert "Training" in titles
    start = rows[titles.index("Training")]
    end = next((i for i in rows if i > start), len(dashboard["panels"]))
    exprs = " ".join(t["expr"] for p in dashboard["panels"][start + 1:end] for t in p["targets"])
    for needed in ('feedrank_training_metric{namespace=~"$namespace", name="loss"}', 'metric="ndcg@10"',
                   "challenger|champion", "sum by (outcome) (increase(feedrank_gate_decisions_total",
                   "feedrank_events_consumer_lag", "feedrank_events_consumed_total"):
        assert needed in exprs, needed
