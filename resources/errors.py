"""The project's exceptions: one base class, one subclass per kind of failure.

Every message is written for an operator: it names what is wrong and where,
and never contains a secret value or a token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .tokentest import TokenTestResult


class CellosignError(Exception):
    """Base class of every error this project raises on purpose."""


class ResolutionError(CellosignError):
    """Declarations refer to stack config or environment variables that are missing or unsafe."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class TokenTestFailed(CellosignError):
    """The live token test did not get an answer Cellosign could use; nothing was committed."""

    def __init__(self, result: TokenTestResult) -> None:
        self.result = result
        text = f"token test failed for secret '{result.secret}' [{result.kind}]: {result.message}"
        if result.hint:
            text += f"\n  hint: {result.hint}"
        super().__init__(text)


class WebhookDeliveryFailed(CellosignError):
    """The webhook target did not accept the test delivery; nothing was committed."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(f"test delivery failed [{kind}]: {message}")
