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

from .conventions import GENERAL
from .engine import PROJECT_ROOT
from .errors import CellosignError
from .loader import DeclarationFileError, load_declarations
from .report import format_text
from .resolve import Resolver, pulumi_program_lookup
from .secret import GeneralSecret, GraphSecret
from .secret_spec import normalize_inputs
from .validation import validate_document, validate_secret


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
    resolver = Resolver(pulumi_program_lookup, stack=pulumi.get_stack())
    resolved = []
    for i, decl in enumerate(loaded.data.get("secrets") or []):
        line = loaded.positions.get(("secrets", i), (0, 0))[0]
        where = f"secrets[{i}] ({decl.get('name')})"
        props = normalize_inputs(resolver.secret_props(decl, where=where))
        resolved.append((decl, props, f"{decl_path.name}:{line}"))
    resolver.raise_if_problems()
    # Resolved values get the same validation the provider's check runs, for
    # every secret at once (the engine would stop at the first failed check).
    bad = [
        f"{source}: {decl['name']}: {p.path or p.field}: {p.message}"
        for decl, props, source in resolved
        for p in validate_secret(props, resolved=True)
    ]
    if bad:
        raise DeclarationsInvalid(f"stack '{pulumi.get_stack()}': " + "\n".join(bad))

    summary: dict[str, Any] = {}
    for decl, props, source in resolved:
        name = str(decl["name"])
        common: dict[str, Any] = {
            "url": props["url"],
            "grant_type": props["grant_type"],
            "scope": props["scope"],
            "allow_insecure_http": props.get("allow_insecure_http", False),
            "request_format": props.get("request_format", "json"),
            "connect_timeout": props.get("connect_timeout"),
            "read_timeout": props.get("read_timeout"),
            "ca_bundle": props.get("ca_bundle"),
            "description": props.get("description"),
            "source": source,
        }
        res: GeneralSecret | GraphSecret
        if props["convention"] == GENERAL:
            res = GeneralSecret(name, username=props["username"], password=props["password"], **common)
        else:
            res = GraphSecret(name, client_id=props["client_id"], client_secret=props["client_secret"], **common)
        summary[name] = {
            "convention": props["convention"],
            "url": props["url"],
            "token_expires_in": res.token_expires_in,
            "tested_at": res.tested_at,
        }
    pulumi.export("secrets", summary)
