"""What the declarations mean for one stack: every reference resolved, every
value validated, ready for the program (resources) or the CLI (render,
promote, test-token). One place, so `up`, `render` and `promote` agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .conventions import CONVENTIONS
from .errors import CellosignError
from .loader import Loaded, load_declarations
from .render import ConfigModel, SecretEntry, WebhookEntry, fingerprint
from .report import format_text
from .resolve import ConfigLookup, Resolver
from .secret_spec import normalize_inputs
from .validation import validate_document, validate_secret, validate_webhook

FINGERPRINT_KEY = "reviewFingerprintKey"  # per-stack encrypted config: the key of review fingerprints


class DeclarationsInvalid(CellosignError):
    """The declarations break their schema, or resolved values break the rules; every problem is listed."""


@dataclass(frozen=True)
class Desired:
    stack: str
    secrets: tuple[tuple[dict[str, Any], str], ...]  # (resolved, normalized props; "file:line")
    webhooks: tuple[tuple[dict[str, Any], str], ...]
    fingerprint_key: bytes

    def secret_fingerprint(self, props: dict[str, Any]) -> str:
        return fingerprint(self.fingerprint_key, str(props[CONVENTIONS[props["convention"]].secret_field]))

    def auth_fingerprint(self, props: dict[str, Any]) -> str:
        conv = CONVENTIONS[props["convention"]]
        return fingerprint(self.fingerprint_key, f"{props[conv.identity_field]}\0{props[conv.secret_field]}")

    def secret_named(self, name: str) -> dict[str, Any]:
        return next(p for p, _ in self.secrets if p["name"] == name)

    def model(self, *, redacted: bool) -> ConfigModel:
        entries = []
        for p, _ in self.secrets:
            conv = CONVENTIONS[p["convention"]]
            value = self.secret_fingerprint(p) if redacted else str(p[conv.secret_field])
            entries.append(SecretEntry(name=p["name"], convention=conv.key, url=p["url"], grant_type=p["grant_type"],
                                       scopes=tuple(p["scope"]), identity=p[conv.identity_field], secret=value,
                                       description=p.get("description")))
        hooks = [WebhookEntry(name=h["name"], url=h["url"], events=tuple(h.get("events") or ()), secret=h["secret"],
                              headers=tuple(sorted((h.get("headers") or {}).items())),
                              description=h.get("description")) for h, _ in self.webhooks]
        return ConfigModel(stack=self.stack, secrets=tuple(entries), webhooks=tuple(hooks))


def load_valid(path: Path) -> Loaded:
    loaded = load_declarations(path)
    problems = validate_document(loaded)
    if problems:
        raise DeclarationsInvalid(format_text([(str(path), problems)]))
    return loaded


def resolve_desired(path: Path, lookup: ConfigLookup, stack: str, *, collect: list[str] | None = None) -> Desired:
    """Resolve and validate. Raises ResolutionError / DeclarationsInvalid listing every problem,
    unless ``collect`` is given: then problems are appended to it and what could be resolved is returned."""
    loaded = load_valid(path)
    resolver = Resolver(lookup, stack=stack)
    key_text = resolver.value({"config": FINGERPRINT_KEY}, where="review fingerprint key", secret=True)
    secrets = []
    for i, decl in enumerate(loaded.data.get("secrets") or []):
        where = f"{path.name}:{loaded.positions.get(('secrets', i), (0, 0))[0]}"
        props = resolver.secret_props(decl, where=f"{where}: secrets[{i}] ({decl.get('name')})")
        secrets.append((normalize_inputs(props), where))
    hooks = []
    for i, decl in enumerate(loaded.data.get("webhooks") or []):
        where = f"{path.name}:{loaded.positions.get(('webhooks', i), (0, 0))[0]}"
        props = {k: resolver.value(v, where=f"{where}: webhooks[{i}] ({decl.get('name')}).{k}", secret=False)
                 for k, v in decl.items()}
        if isinstance(decl.get("headers"), dict):  # a header value may be {config: KEY} too
            props["headers"] = {h: resolver.value(v, where=f"{where}: webhooks[{i}] ({decl.get('name')}).headers.{h}",
                                                  secret=False) for h, v in decl["headers"].items()}
        hooks.append((props, where))
    if collect is not None:
        collect.extend(resolver.problems)
    else:
        resolver.raise_if_problems()

    # Resolved values get the same validation the providers' check runs, for
    # everything at once (the engine would stop at the first failed check).
    names = [str(p["name"]) for p, _ in secrets]
    complete = not resolver.problems
    bad = [f"{where}: {p['name']}: {problem.path or problem.field}: {problem.message}"
           for p, where in secrets if complete for problem in validate_secret(p, resolved=True)]
    bad += [f"{where}: {p['name']}: {problem.path or problem.field}: {problem.message}"
            for p, where in hooks if complete
            for problem in validate_webhook(p, resolved=True, secret_names=names)]
    if bad:
        if collect is None:
            raise DeclarationsInvalid(f"stack '{stack}': " + "\n".join(bad))
        collect.extend(bad)
    return Desired(stack, tuple(secrets), tuple(hooks), str(key_text or "").encode())
