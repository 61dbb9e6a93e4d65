#!/usr/bin/env bash
# Debian's chromium for the gateway's browser tests (Playwright drives it by path; it never
# downloads a browser of its own). Root only; a no-op when it is already there.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install_chromium.sh: needs root for apt-get (the browser tests skip without /usr/bin/chromium)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends chromium chromium-driver fonts-dejavu-core
