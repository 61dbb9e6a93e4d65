#!/bin/bash
# Init container of OpenSearch: builds the security plugin's config folder (mounted at
# config/opensearch-security) from the image's defaults, feedrank's config, roles and role mapping, and an
# internal_users.yml holding bcrypt hashes of the passwords in /passwords (files of Secret
# feedrank-secrets): no password or hash is stored in git or in a ConfigMap. An empty password stops the
# pod here.
set -euo pipefail
out=/security
cp /usr/share/opensearch/config/opensearch-security/*.yml "$out"/
cp /feedrank-security/config.yml /feedrank-security/roles.yml /feedrank-security/roles_mapping.yml "$out"/
for var in OPENSEARCH_ADMIN_PASSWORD OPENSEARCH_RETRIEVER_PASSWORD OPENSEARCH_INGEST_PASSWORD; do
  # hash.sh -env reads the password from a variable of this shell, never from the command line.
  export "$var=$(cat "/passwords/$var")"
  if [ -z "${!var}" ]; then
    echo "internal_users.sh: $var is empty (Secret feedrank-secrets)" >&2
    exit 1
  fi
done
hash() { /usr/share/opensearch/plugins/opensearch-security/tools/hash.sh -env "$1" | tail -n 1; }
cat > "$out/internal_users.yml" <<USERS
_meta:
  type: "internalusers"
  config_version: 2
admin:
  hash: "$(hash OPENSEARCH_ADMIN_PASSWORD)"
  reserved: true
feedrank-retriever:
  hash: "$(hash OPENSEARCH_RETRIEVER_PASSWORD)"
feedrank-ingest:
  hash: "$(hash OPENSEARCH_INGEST_PASSWORD)"
USERS
