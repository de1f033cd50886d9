"""Webhooks, the rendered configuration and promotion, end to end through the
real Pulumi engine, with a token server and a webhook target on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from pulumi import automation as auto

from resources import cli
from resources.tokenserver import TokenServer
from resources.webhook_target import WebhookTarget
from tests.engine_fixtures import PASSPHRASE, Project, new_project

PW = "CANARY-hook-pw-4b1e"
OTHER_PW = "CANARY-hook-other-9c3d"
CANARIES = (PW, OTHER_PW)

DECLARATIONS = """\
version: 1
secrets:
  - name: crm-api
    convention: general
    description: "braces stay literal: {{ 7*7 }} {% if x %}"
    url: {config: tokenUrl}
    allow_insecure_http: true
    grant_type: password
    scope: read,write
    username: {config: crmUser}
    password: {config: crmPassword}
webhooks:
  - name: signed-docs
    url: {config: hookUrl}
    allow_insecure_http: true
    events: [document.signed]
    secret: crm-api
    headers:
      X-Tenant: "{{ tenant }}"
"""


@pytest.fixture()
def servers() -> Iterator[tuple[TokenServer, WebhookTarget]]:
    with TokenServer() as tokens:
        tokens.set_account("svc-crm", PW)
        tokens.set_account("svc-other", OTHER_PW)
        with WebhookTarget(tokens, allowed_identities={"svc-crm"}) as target:
            yield tokens, target


@pytest.fixture()
def project(tmp_path: Path, servers: tuple[TokenServer, WebhookTarget], monkeypatch: pytest.MonkeyPatch) -> Project:
    tokens, target = servers
    proj = new_project(tmp_path)
    proj.write(DECLARATIONS)
    proj.set_config({"tokenUrl": tokens.url, "hookUrl": target.url(), "crmUser": "svc-crm", "crmPassword": PW},
                    secret={"crmPassword"})
    # The CLI, run in-process, works on this project and its own backend.
    monkeypatch.setenv("CELLOSIGN_PROJECT_DIR", str(proj.root))
    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{proj.state_dir}")
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", PASSPHRASE)
    return proj


def assert_no_canary(*texts: str) -> None:
    for text in texts:
        for canary in CANARIES:
            assert canary not in text


def test_webhook_verified_then_refused_after_secret_changes_user(
    project: Project, servers: tuple[TokenServer, WebhookTarget], capsys: pytest.CaptureFixture[str]
) -> None:
    tokens, target = servers
    assert cli.main(["up", "--stack", "test"]) == 0
    assert len(target.deliveries) == 1
    delivery = target.deliveries[0]
    assert delivery["body"]["type"] == "cellosign.test_delivery" and delivery["body"]["events"] == ["document.signed"]
    assert delivery["headers"]["X-Tenant"] == "{{ tenant }}"
    hooks = project.resources("cellosign:Webhook")
    assert hooks["signed-docs"]["outputs"]["delivery_status"] == 200
    verified_at = hooks["signed-docs"]["outputs"]["verified_at"]

    # The review copy: redacted, rendered literally, valid, in sync with state.
    review = project.root / "review" / "test.cellosign.yaml"
    doc = yaml.safe_load(review.read_text())
    assert doc["redacted"] is True
    form = doc["secrets"][0]["form"]
    assert form["Scope"] == "('read,write',)" and form["Password"].startswith("hmac-sha256:")
    assert doc["secrets"][0]["description"] == "braces stay literal: {{ 7*7 }} {% if x %}"
    assert doc["webhooks"][0]["headers"] == {"X-Tenant": "{{ tenant }}"}
    # The full configuration is a secret stack output.
    outputs = project.stack().outputs()
    assert outputs["cellosign_config"].secret
    full = yaml.safe_load(outputs["cellosign_config"].value)
    assert full["redacted"] is False and full["secrets"][0]["form"]["Password"] == PW  # in memory only

    # The secret now logs in as another user: the target refuses that user's token.
    project.set_config({"crmUser": "svc-other", "crmPassword": OTHER_PW}, secret={"crmPassword"})
    assert cli.main(["up", "--stack", "test"]) == 1
    out = capsys.readouterr()
    assert "refused the token" in out.out and "HTTP 403" in out.out
    hooks = project.resources("cellosign:Webhook")
    assert hooks["signed-docs"]["outputs"]["verified_at"] == verified_at  # the webhook kept its state
    # The secret itself did change (its own token test passed) and the review copy follows state.
    assert yaml.safe_load(review.read_text())["secrets"][0]["form"]["User name"] == "svc-other"

    # Back to the accepted user: converges.
    project.set_config({"crmUser": "svc-crm", "crmPassword": PW}, secret={"crmPassword"})
    assert cli.main(["up", "--stack", "test"]) == 0
    assert cli.main(["destroy", "--stack", "test"]) == 0
    assert yaml.safe_load(review.read_text())["secrets"] == []
    out = capsys.readouterr()
    assert_no_canary(out.out, out.err, review.read_text(), project.output_text(), project.state_text(),
                     str(project.exported()))


def test_promotion_reports_missing_config_and_changed_url(
    project: Project, servers: tuple[TokenServer, WebhookTarget], capsys: pytest.CaptureFixture[str]
) -> None:
    tokens, target = servers
    assert cli.main(["up", "--stack", "test"]) == 0
    # A second stack of the same project, lacking the password and with another token URL.
    staging = Project(root=project.root, stack_name="staging")
    staging.set_config({"tokenUrl": tokens.url.replace("/oauth2/token", "/v2/token"), "hookUrl": target.url(),
                        "crmUser": "svc-crm"})
    capsys.readouterr()
    assert cli.main(["promote", "--from", "test", "--to", "staging"]) == 1
    out = capsys.readouterr()
    assert "cellosign-iac:crmPassword" in out.err and "pulumi config set --secret --stack staging" in out.err

    # Every value present, but the password is not the one the identity provider knows.
    staging.set_config({"crmPassword": OTHER_PW}, secret={"crmPassword"})
    assert cli.main(["promote", "--from", "test", "--to", "staging", "--live"]) == 1
    out = capsys.readouterr()
    assert "/v2/token" in out.out  # the changed URL shows in the redacted diff
    assert "live: FAILED crm-api" in out.out and "invalid_grant" in out.out
    assert_no_canary(out.out, out.err)

    staging.set_config({"crmPassword": PW}, secret={"crmPassword"})
    deliveries = len(target.deliveries)
    assert cli.main(["promote", "--from", "test", "--to", "staging", "--live", "--deliveries"]) == 0
    out = capsys.readouterr()
    assert "READY" in out.out and len(target.deliveries) == deliveries + 1
    assert staging.resources() == {}  # promotion commits nothing
    assert_no_canary(out.out, out.err)


def test_declaration_error_in_preview_names_file_line_and_field(project: Project) -> None:
    project.write(DECLARATIONS.replace("events: [document.signed]", "events: [document.signed]\n    sekret: x"))
    with pytest.raises(auto.CommandError):
        project.preview()
    text = project.output_text()
    assert "cellosign.yaml:" in text and "sekret" in text and "did you mean" in text.lower()
