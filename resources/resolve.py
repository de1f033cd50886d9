"""Turning references in a declaration into values, for one stack.

A declaration names per-stack values as ``{config: KEY}`` (stack config) or,
for secret fields only, ``{env: NAME}``. Resolution collects every missing or
unsafe reference at once and says, for each, the exact command that fixes it.
It never puts a secret value into a message.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .conventions import CONVENTIONS, SECRET_FIELDS
from .engine import PROJECT_NAME
from .errors import ResolutionError

BOOLEAN_FIELDS = frozenset({"allow_insecure_http", "test_delivery"})

# lookup(full_key) -> (value or None, is_secret)
ConfigLookup = Callable[[str], tuple[Any, bool]]


def full_key(key: str) -> str:
    return key if ":" in key else f"{PROJECT_NAME}:{key}"


def pulumi_program_lookup(key: str) -> tuple[Any, bool]:
    """Config as the running Pulumi program sees it (decrypted, with secret markers)."""
    from pulumi.runtime.config import get_config, is_config_secret

    return get_config(key), is_config_secret(key)


def mapping_lookup(values: Mapping[str, tuple[Any, bool]]) -> ConfigLookup:
    return lambda key: values.get(key, (None, False))


@dataclass
class Resolver:
    lookup: ConfigLookup
    stack: str
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    problems: list[str] = field(default_factory=list)

    def value(self, ref: Any, *, where: str, secret: bool) -> Any:
        if not isinstance(ref, dict):
            return ref
        resolved = self._lookup(ref, where=where, secret=secret)
        # Stack config holds text: a boolean field read from config becomes a boolean.
        if where.rsplit(".", 1)[-1] in BOOLEAN_FIELDS and isinstance(resolved, str):
            return {"true": True, "false": False}.get(resolved.strip().lower(), resolved)
        return resolved

    def _lookup(self, ref: dict[str, Any], *, where: str, secret: bool) -> Any:
        if "config" in ref:
            key = full_key(str(ref["config"]))
            value, is_secret = self.lookup(key)
            if value is None:
                flag = " --secret" if secret else ""
                self.problems.append(
                    f"{where}: stack '{self.stack}' has no config value '{key}'; "
                    f"set it with: pulumi config set{flag} --stack {self.stack} {key} <value>"
                )
                return None
            if secret and not is_secret:
                self.problems.append(
                    f"{where}: config value '{key}' of stack '{self.stack}' is stored in plaintext; "
                    f"a {where.rsplit('.', 1)[-1]} must be encrypted: "
                    f"pulumi config set --secret --stack {self.stack} {key} <value>"
                )
                return None
            return value
        if "env" in ref:
            name = str(ref["env"])
            if not self.env.get(name):
                self.problems.append(f"{where}: environment variable {name} is not set (or empty)")
                return None
            return self.env[name]
        return ref

    def secret_props(self, decl: Mapping[str, Any], *, where: str) -> dict[str, Any]:
        """The resolved properties of one secret declaration."""
        conv = CONVENTIONS.get(str(decl.get("convention")))
        out: dict[str, Any] = {}
        for key, raw in decl.items():
            if key == "timeouts" and isinstance(raw, dict):
                for t in ("connect", "read"):
                    if t in raw:
                        out[f"{t}_timeout"] = self.value(raw[t], where=f"{where}.timeouts.{t}", secret=False)
                continue
            out[key] = self.value(raw, where=f"{where}.{key}", secret=key in SECRET_FIELDS)
        if conv is None:
            self.problems.append(f"{where}.convention: unknown convention")
        return out

    def raise_if_problems(self) -> None:
        if self.problems:
            raise ResolutionError(self.problems)
