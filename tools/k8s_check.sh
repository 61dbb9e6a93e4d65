#!/usr/bin/env bash
# Validates the Kubernetes deployment under deploy/ (`make k8s-check`). Steps, all by default:
#   render    kubectl kustomize of each overlay (dev, gpu), piped to kubernetes-validate --strict;
#             any resource without a schema fails the step, so no kind slips through unvalidated. Then
#             every Secret key a pod needs must be rendered and non-empty (see check_secrets). An overlay
#             whose secrets.env is absent (kept out of git) is rendered from a copy with placeholder
#             values from its secrets.env.example, which checks everything but the values themselves.
#   crs       the Strimzi custom resources (deploy/k8s/kafka, kafka-dev): kubernetes-validate has no schema for
#             them, so a schema-less check: known kinds and fields, cluster labels, KRaft roles,
#             replication vs brokers, and topic names and bootstrap address against the settings file.
#   yamllint  yamllint --strict over deploy/ (config: deploy/.yamllint.yaml).
#   checkov   checkov -d deploy/ (Kubernetes, Kustomize, Dockerfile and secrets checks; on the same
#             placeholder copy when secrets.env is absent, so the gpu overlay is scanned too). Checkov pins
#             versions that conflict with the project's (packaging, networkx, python-dateutil), so it
#             lives in its own virtualenv, .venv-checkov, which this script creates on first use.
#             Also: every listener is TLS with SASL/SCRAM, each Kafka client pod logs in as a KafkaUser
#             with the password from that user's Secret, and the users' ACLs name existing topics.
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
SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT

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

# A copy of $1 (a folder holding k8s/overlays/*) in which each overlay's absent secrets.env is made from
# its secrets.env.example, every empty value but the optional cloud keys replaced by a placeholder. Prints
# the copy's path, or $1 itself when nothing is missing. The copy only ever feeds these checks.
with_placeholder_secrets() {
  local src="$1" missing=() example tmp
  for example in "$src"/k8s/overlays/*/secrets.env.example; do
    [ -e "$example" ] && [ ! -e "${example%.example}" ] && missing+=("${example#"$src"/}")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "$src"
    return
  fi
  tmp="$(mktemp -d "$SCRATCH/tree.XXXXXX")"
  cp -r "$src" "$tmp/"
  tmp="$tmp/$(basename "$src")"
  for example in "${missing[@]}"; do
    echo "k8s-check: ${example%.example} is absent: checking with placeholder values from $example" >&2
    sed -E '/^(COHERE|VOYAGE|JINA)_API_KEY=/! s/^([A-Z0-9_]+)=$/\1=k8s-check-placeholder/' \
      "$tmp/$example" > "$tmp/${example%.example}"
  done
  echo "$tmp"
}

render() {
  need kubectl
  need kubernetes-validate
  mkdir -p "$OUT"
  local overlay report tree
  tree="$(with_placeholder_secrets "$(dirname "$K8S_DIR")")/$(basename "$K8S_DIR")"
  for overlay in "${OVERLAYS[@]}"; do
    "$VENV/bin/kubectl" kustomize "$tree/overlays/$overlay" > "$OUT/$overlay.yaml"
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
    check_secrets "$OUT/$overlay.yaml" "$overlay"
  done
}

check_secrets() {
  "$VENV/bin/python" - "$@" <<'PY'
"""Every Secret key a pod reads (env secretKeyRef, secret and projected volumes) is rendered with a non-empty value.

References marked `optional: true` (the cloud providers' keys: empty = provider unused) are exempt, and so
are the Secrets other controllers create in the cluster, named below with who creates them.
"""
import base64
import sys

import yaml

IN_CLUSTER = {
    "feedrank-cluster-ca-cert": "Strimzi (the Kafka cluster CA)",
    "feedrank-feedback": "Strimzi's User Operator (KafkaUser feedrank-feedback)",
    "feedrank-trainer": "Strimzi's User Operator (KafkaUser feedrank-trainer)",
    "feedrank-reranker": "Strimzi's User Operator (KafkaUser feedrank-reranker)",
    "feedrank-opensearch-tls": "cert-manager or the operator (OpenSearch's certificate, docs/deploy.md)",
}
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
secrets = {d["metadata"]["name"]: d.get("data") or {} for d in docs if d["kind"] == "Secret"}
errors = []


def pod_spec(doc):
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if doc["kind"] in ("Deployment", "StatefulSet", "Job", "DaemonSet"):
        return doc["spec"]["template"]["spec"]
    return None


def need(owner, name, key):
    if name in IN_CLUSTER:
        return
    if name not in secrets:
        errors.append(f"{owner} reads Secret {name}, which this overlay does not render")
    elif key is not None and key not in secrets[name]:
        errors.append(f"Secret {name} has no key {key} (needed by {owner})")
    elif key is not None and not base64.b64decode(secrets[name][key]):
        errors.append(f"Secret {name} key {key} is empty (needed by {owner})")


for doc in docs:
    spec = pod_spec(doc)
    if spec is None:
        continue
    owner = f"{doc['kind']}/{doc['metadata']['name']}"
    for container in spec.get("containers", []) + spec.get("initContainers", []):
        for env in container.get("env", []):
            ref = (env.get("valueFrom") or {}).get("secretKeyRef")
            if ref and not ref.get("optional"):
                need(owner, ref["name"], ref["key"])
        for source in container.get("envFrom", []):
            if "secretRef" in source and not source["secretRef"].get("optional"):
                need(owner, source["secretRef"]["name"], None)
    for volume in spec.get("volumes", []):
        secret = volume.get("secret")
        if secret and not secret.get("optional"):
            for item in secret.get("items") or [{"key": None}]:
                need(owner, secret["secretName"], item["key"])
        for source in (volume.get("projected") or {}).get("sources", []):
            secret = source.get("secret")
            if secret and not secret.get("optional"):
                for item in secret.get("items") or [{"key": None}]:
                    need(owner, secret["name"], item["key"])

if errors:
    print("\n".join(f"ERROR secrets ({sys.argv[2]}): {e}" for e in errors), file=sys.stderr)
    print(f"k8s-check: overlay {sys.argv[2]}: fill the values (docs/deploy.md, \"Secrets\")", file=sys.stderr)
    sys.exit(1)
print(f"k8s-check: overlay {sys.argv[2]}: every Secret key the pods read is set")
PY
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
    "KafkaUser.spec": {"authentication", "authorization", "quotas", "template"},
}
# Listener authentication type -> the kafka.sasl_mechanism clients must use.
SASL = {"scram-sha-512": "SCRAM-SHA-512"}


def unknown(where: str, mapping: dict) -> None:
    extra = set(mapping) - ALLOWED[where]
    if extra:
        errors.append(f"{where}: unknown field(s) {sorted(extra)}")


by_kind: dict[str, list[dict]] = {}
for doc in kafka_docs:
    name = doc.get("metadata", {}).get("name", "?")
    if doc.get("apiVersion") != "kafka.strimzi.io/v1":
        errors.append(f"{doc.get('kind')}/{name}: apiVersion must be kafka.strimzi.io/v1")
    if doc.get("kind") not in {"Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser"}:
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

    # Every listener encrypts and authenticates; the settings point the clients at one of them.
    for listener in listeners:
        auth = (listener.get("authentication") or {}).get("type")
        if not listener.get("tls") or auth not in SASL:
            errors.append(f"listener {listener['name']}: needs tls: true and authentication {sorted(SASL)}")
    kafka_settings = settings.get("kafka") or {}
    served = {f"{cluster}-kafka-bootstrap:{lst['port']}": lst for lst in listeners}
    listener = served.get(kafka_settings.get("bootstrap_servers"))
    if listener is None:
        errors.append(f"settings kafka.bootstrap_servers should be one of {sorted(served)} (a listener's bootstrap Service)")
    else:
        mechanism = SASL.get((listener.get("authentication") or {}).get("type"))
        if kafka_settings.get("sasl_mechanism") != mechanism:
            errors.append(f"settings kafka.sasl_mechanism should be {mechanism} (listener {listener['name']})")
    if by_kind.get("KafkaUser") and "userOperator" not in (kafka["spec"].get("entityOperator") or {}):
        errors.append("Kafka: entityOperator.userOperator is needed for KafkaUser resources")
    users = {}
    for user in by_kind.get("KafkaUser", []):
        uname = user["metadata"]["name"]
        unknown("KafkaUser.spec", user["spec"])
        users[uname] = user
        if user["metadata"].get("labels", {}).get("strimzi.io/cluster") != cluster:
            errors.append(f"KafkaUser/{uname}: strimzi.io/cluster label must be {cluster}")
        if (user["spec"].get("authentication") or {}).get("type") not in SASL:
            errors.append(f"KafkaUser/{uname}: authentication must be one of {sorted(SASL)}")
        for acl in (user["spec"].get("authorization") or {}).get("acls", []):
            resource = acl.get("resource", {})
            if resource.get("type") == "topic" and resource.get("name") not in names:
                errors.append(f"KafkaUser/{uname}: ACL on unknown topic {resource.get('name')}")
    # Each pod that uses Kafka logs in as a KafkaUser, with the password Strimzi keeps in its Secret.
    clients = [d for d in base_docs if d["kind"] in ("Deployment", "StatefulSet")
               and d["spec"]["template"]["metadata"]["labels"].get("feedrank.io/kafka-client") == "true"]
    for pod in clients:
        pname = pod["metadata"]["name"]
        spec = pod["spec"]["template"]["spec"]
        env = {e["name"]: e for c in spec["containers"] for e in c.get("env", [])}
        protocol = env.get("FEEDRANK_KAFKA__SECURITY_PROTOCOL", {}).get("value")
        user = env.get("FEEDRANK_KAFKA__SASL_USERNAME", {}).get("value")
        # The password is a file of the secrets volume (FEEDRANK_SECRETS_DIR), named like the setting.
        ref = next(({"name": s["secret"]["name"], "key": i["key"]}
                    for v in spec.get("volumes", []) for s in (v.get("projected") or {}).get("sources", [])
                    if "secret" in s for i in s["secret"].get("items", [])
                    if i["path"] == "FEEDRANK_KAFKA__SASL_PASSWORD"), {})
        if protocol != "SASL_SSL":
            errors.append(f"{pname}: FEEDRANK_KAFKA__SECURITY_PROTOCOL must be SASL_SSL (the listeners' protocol)")
        if user not in users:
            errors.append(f"{pname}: FEEDRANK_KAFKA__SASL_USERNAME {user!r} is no KafkaUser ({sorted(users)})")
        elif ref != {"name": user, "key": "password"}:
            errors.append(f"{pname}: FEEDRANK_KAFKA__SASL_PASSWORD must come from Secret {user}, key password")
    # The listeners' peers must select the pods that use Kafka, in feedrank's namespace only.
    for listener in listeners:
        for peer in listener.get("networkPolicyPeers", []):
            want = peer.get("podSelector", {}).get("matchLabels", {})
            namespace = (peer.get("namespaceSelector") or {}).get("matchLabels", {})
            if namespace != {"kubernetes.io/metadata.name": "feedrank"}:
                errors.append(f"listener {listener['name']}: each networkPolicyPeer needs namespaceSelector "
                              "kubernetes.io/metadata.name: feedrank")
            selected = [d["metadata"]["name"] for d in clients
                        if all(d["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in want.items())]
            if not selected:
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
  local tree
  tree="$(with_placeholder_secrets "$ROOT/deploy")"
  PATH="$VENV/bin:$PATH" "$CHECKOV_VENV/bin/checkov" -d "$tree" --quiet --compact --skip-download
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
