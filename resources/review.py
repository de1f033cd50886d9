"""The redacted review copy of a stack's Cellosign configuration.

Built from the stack's *state* (``pulumi stack export`` without secrets), so
it is consistent with state after every up, refresh and destroy, whatever
succeeded or failed. Secret values appear only as the keyed fingerprints the
program stored in state. Written atomically to ``review/<stack>.cellosign.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .conventions import CONVENTIONS
from .engine import project_dir
from .render import ConfigModel, SecretEntry, WebhookEntry, render, write_atomically


def review_path(stack: str, folder: Path | None = None) -> Path:
    return (folder or project_dir() / "review") / f"{stack}.cellosign.yaml"


def model_from_state(stack: str, deployment: dict[str, Any]) -> ConfigModel:
    secrets: list[SecretEntry] = []
    webhooks: list[WebhookEntry] = []
    for res in deployment.get("resources") or []:
        outs = res.get("outputs") or {}
        if res.get("delete"):
            continue
        if res["type"].endswith("cellosign:Secret"):
            conv = CONVENTIONS[outs["convention"]]
            secrets.append(SecretEntry(
                name=outs["name"], convention=conv.key, url=outs["url"], grant_type=outs["grant_type"],
                scopes=tuple(outs.get("scope") or ()), identity=outs[conv.identity_field],
                secret=outs["secret_fingerprint"], description=outs.get("description"),
            ))
        elif res["type"].endswith("cellosign:Webhook"):
            webhooks.append(WebhookEntry(
                name=outs["name"], url=outs["url"], events=tuple(outs.get("events") or ()), secret=outs["secret"],
                headers=tuple(sorted((outs.get("headers") or {}).items())), description=outs.get("description"),
            ))
    return ConfigModel(stack=stack, secrets=tuple(secrets), webhooks=tuple(webhooks))


def write_review(stack: str, deployment: dict[str, Any], folder: Path | None = None) -> Path:
    path = review_path(stack, folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, render(model_from_state(stack, deployment), redacted=True))
    return path
