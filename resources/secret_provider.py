"""The Pulumi dynamic provider behind every Cellosign secret.

Runs in the provider plugin process (``pulumi-resource-pulumi-python``), which
imports this module by reference: keep it importable and keep no state on the
provider instance (it is pickled into every resource's ``__provider`` input).
Up to four calls run at once; the token test's HTTP clients are cached in
``resources.tokentest`` behind a lock.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)

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


class SecretProvider(ResourceProvider):
    """check → validate; create/update → live token test; read → token test again."""

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

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [k for k in COMPARED_KEYS if olds.get(k) != news.get(k)]
        unknown = any(news.get(k) == UNKNOWN for k in COMPARED_KEYS)
        replaces = ["convention"] if olds.get("convention") != news.get("convention") else []
        return DiffResult(
            changes=bool(changed) or unknown,
            replaces=replaces,
            delete_before_replace=False,
        )

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=str(props["name"]), outs=self._tested(props))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=self._tested(news))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        # `pulumi refresh`: the credential must still work. A failure is reported
        # as an error (state stays as it was), never written over silently.
        self._tested(props)
        return ReadResult(id_=id_, outs=props)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        # Nothing to call: Cellosign has no API for secrets; the configuration
        # rendered from state is what an administrator applies.
        return None

    @staticmethod
    def _tested(props: Mapping[str, Any]) -> dict[str, Any]:
        convention = CONVENTIONS[str(props["convention"])]
        result = run_token_test(str(props["name"]), token_request_for(props, convention))
        if not result.ok:
            raise TokenTestFailed(result)
        outs = dict(props)
        outs["tested_at"] = result.tested_at
        outs["token_expires_in"] = result.expires_in
        outs["token_test_warnings"] = list(result.warnings)
        return outs
