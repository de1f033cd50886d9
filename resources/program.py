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
from .engine import PROJECT_ROOT
from .errors import CellosignError
from .loader import DeclarationFileError, load_declarations
from .render import ConfigModel, SecretEntry, WebhookEntry, fingerprint, render
from .report import format_text
from .resolve import Resolver, pulumi_program_lookup
from .secret import GeneralSecret, GraphSecret
from .secret_spec import normalize_inputs
from .stack_config import FINGERPRINT_KEY
from .validation import validate_document, validate_secret, validate_webhook
from .webhook import Webhook


class DeclarationsInvalid(CellosignError):
    """The declarations file breaks its schema; every problem is listed."""


def default_declarations() -> Path:
    return Path(os.environ.get("CELLOSIGN_DECLARATIONS") or PROJECT_ROOT / "cellosign.yaml")


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
    loaded = load_declarations(decl_path)
    problems = validate_document(loaded)
    if problems:
        raise DeclarationsInvalid(format_text([(str(decl_path), problems)]))
    stack = pulumi.get_stack()
    resolver = Resolver(pulumi_program_lookup, stack=stack)
    key_text = resolver.value({"config": FINGERPRINT_KEY}, where="review fingerprint key", secret=True)

    secrets: list[tuple[dict[str, Any], str]] = []
    for i, decl in enumerate(loaded.data.get("secrets") or []):
        where = f"{decl_path.name}:{loaded.positions.get(('secrets', i), (0, 0))[0]}"
        secrets.append((normalize_inputs(resolver.secret_props(decl, where=f"secrets[{i}] ({decl.get('name')})")),
                        where))
    hooks: list[tuple[dict[str, Any], str]] = []
    for i, decl in enumerate(loaded.data.get("webhooks") or []):
        where = f"{decl_path.name}:{loaded.positions.get(('webhooks', i), (0, 0))[0]}"
        props = {k: resolver.value(v, where=f"webhooks[{i}] ({decl.get('name')}).{k}", secret=False)
                 for k, v in decl.items()}
        hooks.append((props, where))
    resolver.raise_if_problems()

    # Resolved values get the same validation the providers' check runs, for
    # everything at once (the engine would stop at the first failed check).
    names = [str(p["name"]) for p, _ in secrets]
    bad = [f"{where}: {p['name']}: {problem.path or problem.field}: {problem.message}"
           for p, where in secrets for problem in validate_secret(p, resolved=True)]
    bad += [f"{where}: {p['name']}: {problem.path or problem.field}: {problem.message}"
            for p, where in hooks for problem in validate_webhook(p, resolved=True, secret_names=names)]
    if bad:
        raise DeclarationsInvalid(f"stack '{stack}': " + "\n".join(bad))

    key = str(key_text).encode()
    by_name: dict[str, tuple[dict[str, Any], GeneralSecret | GraphSecret]] = {}
    summary: dict[str, Any] = {}
    for props, where in secrets:
        conv = CONVENTIONS[props["convention"]]
        name = str(props["name"])
        common: dict[str, Any] = {k: props.get(k) for k in _COMMON}
        common["secret_fingerprint"] = fingerprint(key, str(props[conv.secret_field]))
        common["source"] = where
        res: GeneralSecret | GraphSecret
        if conv.key == GENERAL:
            res = GeneralSecret(name, username=props["username"], password=props["password"], **common)
        else:
            res = GraphSecret(name, client_id=props["client_id"], client_secret=props["client_secret"], **common)
        by_name[name] = (props, res)
        summary[name] = {"convention": conv.key, "url": props["url"], "token_expires_in": res.token_expires_in,
                         "tested_at": res.tested_at}

    hook_summary: dict[str, Any] = {}
    for props, where in hooks:
        secret_props, secret_res = by_name[str(props["secret"])]
        conv = CONVENTIONS[secret_props["convention"]]
        hook = Webhook(
            str(props["name"]), url=props["url"], events=list(props.get("events") or []),
            secret_name=str(props["secret"]), auth={k: v for k, v in secret_props.items() if k != "source"},
            auth_fingerprint=fingerprint(
                key, f"{secret_props[conv.identity_field]}\0{secret_props[conv.secret_field]}"),
            headers=props.get("headers") or {}, test_delivery=props.get("test_delivery", True),
            allow_insecure_http=props.get("allow_insecure_http", False), description=props.get("description"),
            source=where, opts=pulumi.ResourceOptions(depends_on=[secret_res]),
        )
        hook_summary[str(props["name"])] = {"url": props["url"], "secret": props["secret"],
                                            "verified_at": hook.verified_at}

    pulumi.export("secrets", summary)
    pulumi.export("webhooks", hook_summary)
    # The full configuration an administrator enters in Cellosign: a Pulumi secret.
    full = render(_model(stack, [p for p, _ in secrets], [p for p, _ in hooks]), redacted=False)
    pulumi.export("cellosign_config", pulumi.Output.secret(full))


_COMMON = ("url", "grant_type", "scope", "allow_insecure_http", "request_format", "connect_timeout",
           "read_timeout", "ca_bundle", "description")


def _model(stack: str, secrets: list[dict[str, Any]], hooks: list[dict[str, Any]]) -> ConfigModel:
    entries = []
    for p in secrets:
        conv = CONVENTIONS[p["convention"]]
        entries.append(SecretEntry(name=p["name"], convention=conv.key, url=p["url"], grant_type=p["grant_type"],
                                   scopes=tuple(p["scope"]), identity=p[conv.identity_field],
                                   secret=p[conv.secret_field], description=p.get("description")))
    webhooks = [WebhookEntry(name=h["name"], url=h["url"], events=tuple(h.get("events") or ()), secret=h["secret"],
                             headers=tuple(sorted((h.get("headers") or {}).items())),
                             description=h.get("description")) for h in hooks]
    return ConfigModel(stack=stack, secrets=tuple(entries), webhooks=tuple(webhooks))
