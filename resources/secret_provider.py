"""The Pulumi dynamic provider behind every Cellosign secret.

Runs in the provider plugin process (``pulumi-resource-pulumi-python``), which
imports this module by reference: keep it importable and keep no state on the
provider instance (it is pickled into every resource's ``__provider`` input).
Up to four calls run at once; the token test's HTTP clients are cached in
``resources.tokentest`` behind a lock.
"""

from __future__ import annotations

from typing import Any

from pulumi.dynamic import CheckFailure, CheckResult

from .conventions import CONVENTIONS
from .errors import TokenTestFailed
from .secret_spec import (
    COMPARED_KEYS,
    UNKNOWN,
    normalize_inputs,
    token_request_for,
)
from .tokentest import run_token_test
from .validation import validate_secret
from .verified_provider import VerifiedProvider


class SecretProvider(VerifiedProvider):
    """check → validate; create/update → live token test; read → token test again."""

    COMPARED_KEYS = COMPARED_KEYS
    REPLACE_KEYS = ("convention",)  # a change of convention replaces the secret

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        inputs = normalize_inputs(news)
        known = {k: v for k, v in inputs.items() if v != UNKNOWN}
        failures: list[CheckFailure] = []
        if len(known) == len(inputs):  # preview with unknown values validates at update time
            prefix = f"{inputs.get('source') or inputs.get('name')}: "
            for problem in validate_secret(known, resolved=True):
                # Property "" on purpose: Pulumi prints the input value beside a named
                # property, and a problem may be about a secret field.
                failures.append(CheckFailure("", f"{prefix}{problem.path or problem.field}: {problem.message}"))
        return CheckResult(inputs, failures)

    def verified(self, props: dict[str, Any]) -> dict[str, Any]:
        convention = CONVENTIONS[str(props["convention"])]
        result = run_token_test(str(props["name"]), token_request_for(props, convention))
        if not result.ok:
            raise TokenTestFailed(result)
        outs = dict(props)
        outs["tested_at"] = result.tested_at
        outs["token_expires_in"] = result.expires_in
        outs["token_test_warnings"] = list(result.warnings)
        return outs
