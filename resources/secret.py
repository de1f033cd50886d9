"""The typed Python API: one resource class per Cellosign convention.

    GeneralSecret("crm-api", url=..., grant_type="password", scope=["read", "write"],
                  username="svc-crm", password=config.require_secret("crmPassword"))
    GraphSecret("graph-mail", url=..., grant_type="client_credentials",
                client_id="8e17edb9-...", client_secret=config.require_secret("graphSecret"))

Both share one Pulumi type (``cellosign:Secret``), so changing a secret's
convention is a replacement of the same resource, not a delete and an add.
The secret value is always made a Pulumi secret, in inputs and outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi
from pulumi import Input, Output, ResourceOptions
from pulumi.dynamic import Resource

from .conventions import GENERAL, MSGRAPH
from .secret_provider import SecretProvider
from .secret_spec import SECRET_OUTPUTS

Scope = str | Sequence[str]


class _SecretBase(Resource, module="cellosign", name="Secret"):
    tested_at: Output[str]
    token_expires_in: Output[int]
    token_test_warnings: Output[list]

    def _register(self, resource_name: str, props: dict[str, Any], opts: ResourceOptions | None) -> None:
        props.update({"tested_at": None, "token_expires_in": None, "token_test_warnings": None})
        opts = ResourceOptions.merge(opts, ResourceOptions(additional_secret_outputs=list(SECRET_OUTPUTS)))
        super().__init__(SecretProvider(), resource_name, props, opts)


def _common(
    convention: str,
    url: Input[str],
    grant_type: Input[str],
    scope: Input[Scope],
    allow_insecure_http: Input[bool],
    request_format: Input[str],
    connect_timeout: Input[float] | None,
    read_timeout: Input[float] | None,
    ca_bundle: Input[str] | None,
    description: Input[str] | None,
    source: str | None,
    secret_fingerprint: str | None,
) -> dict[str, Any]:
    return {
        "convention": convention,
        "url": url,
        "grant_type": grant_type,
        "scope": scope,
        "allow_insecure_http": allow_insecure_http,
        "request_format": request_format,
        "connect_timeout": connect_timeout,
        "read_timeout": read_timeout,
        "ca_bundle": ca_bundle,
        "description": description,
        "source": source,
        # A keyed fingerprint of the secret value: preview shows that it changed, never the value.
        "secret_fingerprint": secret_fingerprint,
    }


class GeneralSecret(_SecretBase, module="cellosign", name="Secret"):
    """General – username and password."""

    def __init__(
        self,
        resource_name: str,
        *,
        url: Input[str],
        grant_type: Input[str],
        scope: Input[Scope],
        username: Input[str],
        password: Input[str],
        allow_insecure_http: Input[bool] = False,
        request_format: Input[str] = "json",
        connect_timeout: Input[float] | None = None,
        read_timeout: Input[float] | None = None,
        ca_bundle: Input[str] | None = None,
        description: Input[str] | None = None,
        source: str | None = None,
        secret_fingerprint: str | None = None,
        opts: ResourceOptions | None = None,
    ) -> None:
        props = _common(GENERAL, url, grant_type, scope, allow_insecure_http, request_format,
                        connect_timeout, read_timeout, ca_bundle, description, source, secret_fingerprint)
        props.update({"name": resource_name, "username": username, "password": pulumi.Output.secret(password)})
        self._register(resource_name, props, opts)


class GraphSecret(_SecretBase, module="cellosign", name="Secret"):
    """Microsoft Graph REST API v1.0 – client id and client secret."""

    def __init__(
        self,
        resource_name: str,
        *,
        url: Input[str],
        grant_type: Input[str],
        scope: Input[Scope],
        client_id: Input[str],
        client_secret: Input[str],
        allow_insecure_http: Input[bool] = False,
        request_format: Input[str] = "json",
        connect_timeout: Input[float] | None = None,
        read_timeout: Input[float] | None = None,
        ca_bundle: Input[str] | None = None,
        description: Input[str] | None = None,
        source: str | None = None,
        secret_fingerprint: str | None = None,
        opts: ResourceOptions | None = None,
    ) -> None:
        props = _common(MSGRAPH, url, grant_type, scope, allow_insecure_http, request_format,
                        connect_timeout, read_timeout, ca_bundle, description, source, secret_fingerprint)
        props.update({"name": resource_name, "client_id": client_id,
                      "client_secret": pulumi.Output.secret(client_secret)})
        self._register(resource_name, props, opts)
