"""The Pulumi program: declarations file → Cellosign resources for one stack.

Used as an inline Automation API program by the CLI and the tests, and by
``__main__.py`` when a full Pulumi installation runs ``pulumi up`` itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi

from .conventions import CONVENTIONS, GENERAL
from .desired import DeclarationsInvalid, resolve_desired
from .engine import project_dir
from .errors import CellosignError
from .loader import DeclarationFileError
from .render import render
from .resolve import pulumi_program_lookup
from .secret import GeneralSecret, GraphSecret
from .webhook import Webhook

__all__ = ["DeclarationsInvalid", "default_declarations", "program_for"]


def default_declarations() -> Path:
    return Path(os.environ.get("CELLOSIGN_DECLARATIONS") or project_dir() / "cellosign.yaml")


def program_for(path: Path | None = None) -> Callable[[], None]:
    decl_path = (path or default_declarations()).resolve()

    def program() -> None:
        try:
            _declare(decl_path)
        except (CellosignError, DeclarationFileError) as exc:
            # RunError: Pulumi shows the message alone, without a Python traceback.
            raise pulumi.RunError(str(exc)) from None

    return program


def _declare(decl_path: Path) -> None:
    desired = resolve_desired(decl_path, pulumi_program_lookup, pulumi.get_stack())
    resources: dict[str, GeneralSecret | GraphSecret] = {}
    summary: dict[str, Any] = {}
    for props, where in desired.secrets:
        conv = CONVENTIONS[props["convention"]]
        name = str(props["name"])
        common: dict[str, Any] = {k: props.get(k) for k in _COMMON}
        common.update(secret_fingerprint=desired.secret_fingerprint(props), source=where)
        res: GeneralSecret | GraphSecret
        if conv.key == GENERAL:
            res = GeneralSecret(name, username=props["username"], password=props["password"], **common)
        else:
            res = GraphSecret(name, client_id=props["client_id"], client_secret=props["client_secret"], **common)
        resources[name] = res
        summary[name] = {"convention": conv.key, "url": props["url"], "token_expires_in": res.token_expires_in,
                         "tested_at": res.tested_at}

    hook_summary: dict[str, Any] = {}
    for props, where in desired.webhooks:
        secret_name = str(props["secret"])
        secret_props = desired.secret_named(secret_name)
        hook = Webhook(
            str(props["name"]), url=props["url"], events=list(props.get("events") or []), secret_name=secret_name,
            auth={k: v for k, v in secret_props.items() if k != "source"},
            auth_fingerprint=desired.auth_fingerprint(secret_props),
            headers=props.get("headers") or {}, test_delivery=props.get("test_delivery", True),
            allow_insecure_http=props.get("allow_insecure_http", False), description=props.get("description"),
            source=where, opts=pulumi.ResourceOptions(depends_on=[resources[secret_name]]),
        )
        hook_summary[str(props["name"])] = {"url": props["url"], "secret": secret_name,
                                            "verified_at": hook.verified_at}

    pulumi.export("secrets", summary)
    pulumi.export("webhooks", hook_summary)
    # The full configuration an administrator enters in Cellosign: a Pulumi secret.
    pulumi.export("cellosign_config", pulumi.Output.secret(render(desired.model(redacted=False), redacted=False)))


_COMMON = ("url", "grant_type", "scope", "allow_insecure_http", "request_format", "connect_timeout",
           "read_timeout", "ca_bundle", "description")
