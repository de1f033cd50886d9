"""The Pulumi dynamic provider behind every Cellosign webhook.

create / update (and refresh): obtain a token through the webhook's secret
(the same request Cellosign sends), then, unless the declaration opts out,
send the documented test delivery with that Bearer token and require a 2xx.
The ``auth`` input carries the secret's resolved properties (a Pulumi secret),
so a change of the secret's credentials is a change of every webhook using it:
those webhooks are verified again.
"""

from __future__ import annotations

from typing import Any

from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
)

from .delivery import send_test_delivery
from .errors import TokenTestFailed, WebhookDeliveryFailed
from .secret_spec import UNKNOWN, normalize_inputs, token_request_for
from .tokentest import obtain_token
from .validation import validate_webhook
from .verified_provider import VerifiedProvider

# Added by the program or the provider, not part of a declaration.
PROGRAM_KEYS = frozenset({"__provider", "auth", "auth_fingerprint", "source", "verified_at", "delivery_status"})
COMPARED_KEYS = ("url", "allow_insecure_http", "events", "secret", "headers", "test_delivery", "description", "auth")


class WebhookProvider(VerifiedProvider):
    COMPARED_KEYS = COMPARED_KEYS

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        inputs = dict(news)
        inputs.setdefault("test_delivery", True)
        inputs.setdefault("headers", {})
        failures: list[CheckFailure] = []
        known = {k: v for k, v in inputs.items() if k not in PROGRAM_KEYS and v is not None}
        if UNKNOWN not in known.values():
            prefix = f"{inputs.get('source') or inputs.get('name')}: "
            for problem in validate_webhook(known, resolved=True):
                failures.append(CheckFailure("", f"{prefix}{problem.path or problem.field}: {problem.message}"))
        return CheckResult(inputs, failures)

    def verified(self, props: dict[str, Any]) -> dict[str, Any]:
        auth = normalize_inputs(props["auth"])
        result, token = obtain_token(str(props["secret"]), token_request_for(auth))
        if not result.ok or token is None:
            raise TokenTestFailed(result)
        outs = dict(props)
        outs["verified_at"] = result.tested_at
        outs["delivery_status"] = None
        if props.get("test_delivery", True):
            delivery = send_test_delivery(
                str(props["name"]), str(props["url"]), token,
                events=list(props.get("events") or []), headers=dict(props.get("headers") or {}),
                ca_bundle=props.get("ca_bundle") or None,
                connect_timeout=float(auth.get("connect_timeout") or 5.0),
                read_timeout=float(auth.get("read_timeout") or 15.0),
            )
            if not delivery.ok:
                raise WebhookDeliveryFailed(delivery.kind, delivery.message)
            outs["delivery_status"] = delivery.status
        return outs
