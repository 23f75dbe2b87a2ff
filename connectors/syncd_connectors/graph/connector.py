"""Microsoft Graph (Entra ID) connector: users and groups via delta query, and write-back.

The connector is `GraphConnector`, composed of:

- `client.py`: the event loop in a thread of its own, the msgraph SDK client (imported only
  in `open()`), every request, and the throttling gate;
- `reads.py`: delta rounds (`read`), `find` and `confirm_gone`;
- `writes.py`: `create`, `update`, `set_members`, `deactivate` and `delete`;
- `errors.py`: Graph's answers as syncd errors (what is retried, deferred, held or failed);
- `delta.py`: payloads, cursors and delta rounds; `gone.py`: the proof of absence;
  `config.py`: the ``[connectors.NAME]`` table.

Absence is not proof: before the engine deprovisions a linked object a full round did not
return, `confirm_gone` asks Graph for it directly (`gone.py`). ``passwordProfile`` is never
selected nor kept (`delta.SECRET_PROPERTIES`).
"""

from __future__ import annotations

from typing import ClassVar

from syncd.connector import Capabilities, ConnectorConfig
from syncd.model import Kind
from syncd_connectors.graph import delta
from syncd_connectors.graph.config import GraphConfig
from syncd_connectors.graph.reads import GraphReads
from syncd_connectors.graph.writes import GraphWrites


class GraphConnector(GraphReads, GraphWrites):
    """An Entra ID tenant as a source (delta rounds) and a target (users, security groups)."""

    config_model: ClassVar[type[ConnectorConfig]] = GraphConfig

    def __init__(self, name: str, config: GraphConfig) -> None:
        super().__init__(name, config)
        self._caps = Capabilities(read=True, write=True, patch=True, bulk=False)

    # --- contract: lifecycle (open and close: client.py) ----------------------------------

    @staticmethod
    def known_paths(kind: Kind) -> frozenset[str]:
        """Canonical attributes (Graph property names, plus the engine's ``active``) a flow
        may map to this connector; config validation reports anything else as a typo."""
        return delta.known_paths(kind)

    @property
    def capabilities(self) -> Capabilities:
        return self._caps
