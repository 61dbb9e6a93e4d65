#!/usr/bin/env bash
# Installs the peers `make bench` compares against, each in its own venv (see ../shared/PEERS.md).
# Infinity pins older transformers / sentence-transformers, so it cannot share .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-infinity/bin/infinity_emb ]; then
  python3 -m venv .venv-infinity
  .venv-infinity/bin/pip install -q torch==2.13.0
  .venv-infinity/bin/pip install -q "infinity-emb[server,torch,optimum]==0.0.78" torch==2.13.0
fi
echo "peers ready: .venv-infinity"
