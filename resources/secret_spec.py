"""The properties of a Secret resource: names, defaults, normalization, and the
token request they describe. Shared by the resource classes (program side) and
the provider (plugin side) so both agree on what a secret is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .conventions import CONVENTIONS, Convention, normalize_scopes
from .tokentest import TokenRequest

# What Pulumi sends for a value that is not known yet (during preview).
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"

DEFAULTS: dict[str, Any] = {
    "allow_insecure_http": False,
    "request_format": "json",
    "connect_timeout": 5.0,
    "read_timeout": 15.0,
    "ca_bundle": None,
    "description": None,
}

# The properties whose change matters: a change to any of them is an update
# with a fresh token test (a change of convention is a replacement). Nothing
# else (e.g. where in the file a secret is declared) ever causes a diff.
COMPARED_KEYS: tuple[str, ...] = (
    "convention",
    "url",
    "allow_insecure_http",
    "grant_type",
    "scope",
    "username",
    "password",
    "client_id",
    "client_secret",
    "request_format",
    "connect_timeout",
    "read_timeout",
    "ca_bundle",
    "description",
    # Stored for the review copy; it changes with the secret value (or the stack's fingerprint key).
    "secret_fingerprint",
)

SECRET_OUTPUTS = ["password", "client_secret"]


def _as_bool(value: Any) -> Any:
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def _as_float(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def normalize_inputs(props: Mapping[str, Any]) -> dict[str, Any]:
    """Fill defaults and canonical forms so that equal declarations compare equal."""
    out: dict[str, Any] = {k: v for k, v in props.items() if v is not None or k == "__provider"}
    for key, default in DEFAULTS.items():
        if out.get(key) is None and default is not None:
            out[key] = default
    if "scope" in out and out["scope"] != UNKNOWN:
        out["scope"] = normalize_scopes(out["scope"])
    if "allow_insecure_http" in out:
        out["allow_insecure_http"] = _as_bool(out["allow_insecure_http"])
    for key in ("connect_timeout", "read_timeout"):
        if key in out:
            out[key] = _as_float(out[key])
    return out


def token_request_for(props: Mapping[str, Any], convention: Convention | None = None) -> TokenRequest:
    """Exactly the request Cellosign would send for these (resolved) properties."""
    conv = convention or CONVENTIONS[str(props["convention"])]
    secret = str(props[conv.secret_field])
    body = conv.wire_body(
        identity=str(props[conv.identity_field]),
        secret=secret,
        grant_type=str(props["grant_type"]),
        scopes=normalize_scopes(props.get("scope")),
    )
    return TokenRequest(
        url=str(props["url"]),
        body=body,
        secret_values=(secret,),
        request_format=str(props.get("request_format") or "json"),
        connect_timeout=float(props.get("connect_timeout") or DEFAULTS["connect_timeout"]),
        read_timeout=float(props.get("read_timeout") or DEFAULTS["read_timeout"]),
        ca_bundle=props.get("ca_bundle") or None,
    )
