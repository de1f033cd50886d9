"""A dynamic resource that does nothing: the engine's floor for the benchmarks.

``tests/bench`` creates N of these beside N Cellosign secrets with the same
inputs (same property names and values, the same secret fields marked secret,
the same output placeholders), so the difference between the two runs is what
a Cellosign secret itself costs: loading and validating the declarations,
``check``, the live token test, rendering the configuration.

The provider lives in this package (not in the benchmark) because the Python
dynamic provider process imports it by reference, exactly as it imports
``resources.secret_provider``.
"""

from __future__ import annotations

from typing import Any

from pulumi import Output, ResourceOptions
from pulumi.dynamic import CheckResult, CreateResult, DiffResult, ReadResult, Resource, ResourceProvider, UpdateResult

# What resources.secret_spec.SECRET_OUTPUTS says, written out: importing that module would
# import the token test (httpx) into the provider process, which a no-op must not pay for.
SECRET_OUTPUTS = ("password", "client_secret")
_OUTPUTS = ("tested_at", "token_expires_in", "token_test_warnings")


class NoopProvider(ResourceProvider):
    """Every call answers at once: inputs are outputs, the id is the name."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        return CheckResult(news, [])

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = any(olds.get(k) != v for k, v in news.items() if k != "__provider" and k not in _OUTPUTS)
        return DiffResult(changes=changed, replaces=[], delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=str(props.get("name") or "noop"), outs=dict(props))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=dict(news))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_=id_, outs=props)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None


class Noop(Resource, module="bench", name="Noop"):
    """``Noop(name, props)``: props as a Secret resource would get them (secret fields as secrets)."""

    tested_at: Output[str]
    token_expires_in: Output[int]
    token_test_warnings: Output[list]

    def __init__(self, resource_name: str, props: dict[str, Any], opts: ResourceOptions | None = None) -> None:
        inputs = dict(props)
        inputs.update({k: None for k in _OUTPUTS})
        opts = ResourceOptions.merge(opts, ResourceOptions(additional_secret_outputs=list(SECRET_OUTPUTS)))
        super().__init__(NoopProvider(), resource_name, inputs, opts)
