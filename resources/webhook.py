"""The typed Python API for a Cellosign webhook.

    Webhook("signed-docs", url="https://crm.example.com/hooks/cellosign",
            events=["document.signed"], secret=crm_secret_props, secret_name="crm-api")

``auth`` is the resolved properties of the secret the webhook authenticates
with (a Pulumi secret, in inputs and outputs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pulumi
from pulumi import Input, Output, ResourceOptions
from pulumi.dynamic import Resource

from .webhook_provider import WebhookProvider


class Webhook(Resource, module="cellosign", name="Webhook"):
    verified_at: Output[str]
    delivery_status: Output[int]

    def __init__(
        self,
        resource_name: str,
        *,
        url: Input[str],
        events: Input[Sequence[str]],
        secret_name: str,
        auth: Input[Mapping[str, Any]],
        headers: Input[Mapping[str, str]] | None = None,
        test_delivery: Input[bool] = True,
        allow_insecure_http: Input[bool] = False,
        description: Input[str] | None = None,
        auth_fingerprint: Input[str] | None = None,
        source: str | None = None,
        opts: ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {
            "name": resource_name,
            "url": url,
            "events": events,
            "secret": secret_name,
            "auth": pulumi.Output.secret(auth),
            "auth_fingerprint": auth_fingerprint,
            "headers": headers or {},
            "test_delivery": test_delivery,
            "allow_insecure_http": allow_insecure_http,
            "description": description,
            "source": source,
            "verified_at": None,
            "delivery_status": None,
        }
        opts = ResourceOptions.merge(opts, ResourceOptions(additional_secret_outputs=["auth"]))
        super().__init__(WebhookProvider(), resource_name, props, opts)
