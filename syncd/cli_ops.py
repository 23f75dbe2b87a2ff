"""Operational commands (daemon, test-mapping, …) registered on the `syncd` group.

Kept apart from syncd/cli.py so the run/validate/status core stays small; imported at the end
of cli.py. Heavy imports stay inside the command functions.
"""

from __future__ import annotations
