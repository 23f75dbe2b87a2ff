#!/usr/bin/env bash
# The whole test suite: installs what it needs (venv, slapd), lints, type-checks, runs pytest.
# Real peers (slapd, scim2-server, django-scim2-server) are started by the fixtures on
# 127.0.0.1 free ports and stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
.venv/bin/ruff check syncd connectors tests bench scripts
.venv/bin/mypy
exec .venv/bin/pytest "$@"
