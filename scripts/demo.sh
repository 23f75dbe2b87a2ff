#!/usr/bin/env bash
# The demo on embedded defaults: installs what it needs, starts a throwaway OpenLDAP and SCIM
# server on 127.0.0.1, runs `syncd run --dry-run`, `syncd run`, and shows what happened.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/python scripts/demo.py
