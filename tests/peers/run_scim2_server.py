"""Serve scim2-server's WSGI app with waitress (keep-alive), for tests and benchmarks.

``python -m tests.peers.run_scim2_server --port P [--bearer-token T] [--threads N]
[--bulk-max-operations N] [--bulk-max-payload BYTES] [--user-extension FILE]``

scim2-server's own CLI uses wsgiref (HTTP/1.0, no keep-alive), which would make every request
pay a TCP handshake and hide the benefit of our one keep-alive client. We build the same app
the CLI builds (default schemas incl. the enterprise extension, default config: patch, bulk,
filter, etag) and hand it to waitress. ``--user-extension FILE`` (a JSON list of schemas)
serves those schemas too, each as an optional extension of the User resource type, as the
CLI's ``--schema``/``--resource-type`` would.

A test-only ``POST /__reset__`` swaps in a fresh in-memory storage, so one process can serve
many tests with a clean directory each (starting a process costs ~0.5 s, a reset ~1 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
from collections.abc import Callable, Iterable
from typing import Any

from scim2_models import ResourceType, Schema, SchemaExtension, ScimProvider
from scim2_server.memory import InMemoryStorage
from scim2_server.service import ScimService
from scim2_server.testserver.application import BEARER_TOKEN_SCHEME, BearerTokenApplication
from scim2_server.utils import (
    load_default_resource_types,
    load_default_schemas,
    load_default_service_provider_config,
)

RESET_PATH = "/__reset__"


def build_app(
    bearer_tokens: list[str],
    bulk_max_operations: int | None = None,
    bulk_max_payload: int | None = None,
    user_extensions: list[dict[str, Any]] | None = None,
) -> Callable[..., Iterable[bytes]]:
    """The scim2-server CLI's application, plus the reset hook. The /Bulk limits can be
    lowered so tests see a real server enforce them (413) on small requests;
    `user_extensions` are schema documents served as extensions of User."""
    config = load_default_service_provider_config()
    if config.bulk is not None and bulk_max_operations is not None:
        config.bulk.max_operations = bulk_max_operations
    if config.bulk is not None and bulk_max_payload is not None:
        config.bulk.max_payload_size = bulk_max_payload
    if bearer_tokens:
        config.authentication_schemes = [
            *(config.authentication_schemes or []),
            BEARER_TOKEN_SCHEME,
        ]
    schemas = dict(load_default_schemas())
    resource_types = dict(load_default_resource_types())
    for doc in user_extensions or []:
        schema = Schema.model_validate(doc)
        assert schema.id is not None
        schemas[schema.id] = schema
        user: ResourceType = resource_types["User"]
        user.schema_extensions = [*(user.schema_extensions or []),
                                  SchemaExtension.model_validate(
                                      {"schema": schema.id, "required": False})]
    provider = ScimProvider.from_discovery(
        schemas.values(), resource_types.values(), config=config
    )
    service = ScimService(provider, secret=secrets.token_urlsafe(32))

    def make() -> BearerTokenApplication:
        return BearerTokenApplication(
            InMemoryStorage(), provider, service=service, bearer_tokens=bearer_tokens
        )

    current = [make()]

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == RESET_PATH and environ["REQUEST_METHOD"] == "POST":
            current[0] = make()
            start_response("204 No Content", [])
            return [b""]
        return current[0](environ, start_response)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bearer-token", action="append", default=[])
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--bulk-max-operations", type=int, default=None)
    parser.add_argument("--bulk-max-payload", type=int, default=None)
    parser.add_argument("--user-extension", default=None,
                        help="JSON file: a list of schemas served as User extensions")
    args = parser.parse_args()
    tokens = list(args.bearer_token)
    extensions = None
    if args.user_extension:
        with open(args.user_extension, encoding="utf-8") as fh:
            extensions = json.load(fh)
    if os.environ.get("SCIM_PEER_TOKEN"):
        tokens.append(os.environ["SCIM_PEER_TOKEN"])

    import waitress

    waitress.serve(
        build_app(tokens, args.bulk_max_operations, args.bulk_max_payload, extensions),
        host="127.0.0.1",
        port=args.port,
        threads=args.threads,
        ident="scim2-server",
        _quiet=True,
    )


if __name__ == "__main__":
    main()
