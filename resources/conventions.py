"""The two Cellosign secret conventions: their fields, form labels and wire requests.

This module is the single place that knows what Cellosign sends for each
convention (see the product spec). Everything else asks it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

GENERAL = "general"
MSGRAPH = "msgraph"


@dataclass(frozen=True)
class Convention:
    key: str  # the value of `convention:` in a declaration
    type_label: str  # "Type" in the Cellosign form
    identity_field: str  # username / client_id
    secret_field: str  # password / client_secret
    identity_label: str  # label of the identity field in the Cellosign form
    secret_label: str  # label of the secret field in the Cellosign form

    def scope_value(self, scopes: Sequence[str]) -> str:
        """The scope text exactly as Cellosign sends it for this convention."""
        joined = ",".join(scopes)
        if self.key == GENERAL:
            # Cellosign's own example: the list written as a one-element tuple.
            return repr((joined,))
        return joined

    def wire_body(
        self, *, identity: str, secret: str, grant_type: str, scopes: Sequence[str]
    ) -> dict[str, str]:
        """The body Cellosign POSTs to the token endpoint, members in Cellosign's order."""
        scope = self.scope_value(scopes)
        if self.key == GENERAL:
            return {
                "username": identity,
                "password": secret,
                "grant_type": grant_type,
                "scope": scope,
            }
        return {
            "client_id": identity,
            "client_secret": secret,
            "scope": scope,
            "grant_type": grant_type,
        }


CONVENTIONS: Mapping[str, Convention] = {
    GENERAL: Convention(
        key=GENERAL,
        type_label="General – username and password",
        identity_field="username",
        secret_field="password",
        identity_label="User name",
        secret_label="Password",
    ),
    MSGRAPH: Convention(
        key=MSGRAPH,
        type_label="Microsoft Graph REST API v1.0",
        identity_field="client_id",
        secret_field="client_secret",
        identity_label="client_id",
        secret_label="client_secret",
    ),
}

SECRET_FIELDS = frozenset(c.secret_field for c in CONVENTIONS.values())


def normalize_scopes(scope: str | Iterable[str] | None) -> list[str]:
    """Users write scopes once, as a list or as comma-separated text."""
    if scope is None:
        return []
    items = scope.split(",") if isinstance(scope, str) else list(scope)
    return [s.strip() for s in items if s.strip()]
