"""End to end through the real Pulumi engine (Automation API, file:// backend,
passphrase secrets) against a token server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pulumi import automation as auto

from resources.tokenserver import TokenServer
from tests.engine_fixtures import Project, new_project

PW1 = "CANARY-pw-one-51c9e0"
PW2 = "CANARY-pw-two-8d2f7a"
WRONG = "CANARY-pw-wrong-33ab10"
GRAPH_SECRET = "CANARY-graph-secret-77e1"
CLIENT_ID = "8e17edb9-0f05-46cc-8741-a937e351e631"
CANARIES = (PW1, PW2, WRONG, GRAPH_SECRET)

DECLARATIONS = """\
version: 1
secrets:
  - name: crm-api
    convention: general
    url: {config: tokenUrl}
    allow_insecure_http: true
    grant_type: password
    scope: [read, write]
    username: svc-crm
    password: {config: crmPassword}
  - name: graph-mail
    convention: msgraph
    url: {config: tokenUrl}
    allow_insecure_http: true
    grant_type: client_credentials
    scope: https://graph.microsoft.com/.default
    client_id: CLIENT_ID
    client_secret: {config: graphSecret}
""".replace("CLIENT_ID", CLIENT_ID)


@pytest.fixture()
def server() -> Iterator[TokenServer]:
    with TokenServer() as srv:
        srv.set_account("svc-crm", PW1)
        srv.set_account(CLIENT_ID, GRAPH_SECRET)
        yield srv


@pytest.fixture()
def project(tmp_path: Path, server: TokenServer) -> Project:
    proj = new_project(tmp_path)
    proj.write(DECLARATIONS)
    proj.set_config({"tokenUrl": server.url, "crmPassword": PW1, "graphSecret": GRAPH_SECRET},
                    secret={"crmPassword", "graphSecret"})
    return proj


def assert_no_canary(project: Project) -> None:
    haystacks = {"engine output": project.output_text(), "state files": project.state_text(),
                 "stack export": str(project.exported())}
    for where, text in haystacks.items():
        for canary in CANARIES:
            assert canary not in text, f"secret value leaked into {where}"


def test_lifecycle(project: Project, server: TokenServer) -> None:
    # up creates, with a live token test per secret
    res = project.up()
    assert res.summary.resource_changes == {"create": 3}
    assert server.requests_seen == 2
    secrets = project.resources()
    assert set(secrets) == {"crm-api", "graph-mail"}
    crm = secrets["crm-api"]["outputs"]
    assert crm["token_expires_in"] == 3600 and crm["tested_at"]
    assert "access_token" not in crm
    # secret values are Pulumi secrets in state
    assert crm["password"]["4dabf18193072939515e22adb298388d"] == "1b47061264138c4ac30d75fd1eb44270"
    assert secrets["graph-mail"]["outputs"]["client_secret"]["4dabf18193072939515e22adb298388d"]

    # a second up changes nothing and calls no token endpoint
    res = project.up()
    assert res.summary.resource_changes == {"same": 3}
    assert server.requests_seen == 2

    # a changed password is an update with a fresh token test
    server.set_account("svc-crm", PW2)
    project.set_config({"crmPassword": PW2}, secret={"crmPassword"})
    res = project.up()
    assert res.summary.resource_changes == {"same": 2, "update": 1}
    assert server.requests_seen == 3
    tested_at = project.resources()["crm-api"]["outputs"]["tested_at"]

    # a wrong password fails the update; the old state is kept
    project.set_config({"crmPassword": WRONG}, secret={"crmPassword"})
    with pytest.raises(auto.CommandError) as err:
        project.up()
    assert "invalid_grant" in str(err.value) and "crm-api" in str(err.value)
    kept = project.resources()["crm-api"]["outputs"]
    assert kept["tested_at"] == tested_at
    shown = {r["urn"].rsplit("::", 1)[-1]: r for r in project.stack().export_stack().deployment["resources"]}
    assert shown["crm-api"]["outputs"]["password"]["plaintext"] == f'"{PW2}"'  # decrypted in memory only
    # back to the right password: converges
    project.set_config({"crmPassword": PW2}, secret={"crmPassword"})
    assert project.up().summary.resource_changes == {"same": 3}

    # destroy removes everything
    res = project.destroy()
    assert res.summary.resource_changes == {"delete": 3}
    assert project.resources() == {}
    assert_no_canary(project)


def test_preview_reports_bad_resolved_url_without_secret(project: Project) -> None:
    project.set_config({"tokenUrl": "http://203.0.113.9/token"})  # not loopback: http refused
    with pytest.raises(auto.CommandError):
        project.preview()
    text = project.output_text()
    assert "https" in text and "cellosign.yaml:" in text
    assert "crm-api" in text and "graph-mail" in text  # every problem at once
    assert_no_canary(project)
