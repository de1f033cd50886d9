"""How declaration changes reach state, through the real Pulumi engine (Automation
API, file:// backend, passphrase secrets) and a token server on 127.0.0.1:

- a change of convention is a replacement;
- a change of url, scope or grant_type is an update with a fresh token test;
- reformatting the declarations file changes nothing at all;
- refresh re-runs the token tests and never rewrites state; a credential that
  stopped working fails the refresh, naming the secret and the kind;
- a preview of a changed password shows the update, never the password.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pulumi import automation as auto

from resources.tokenserver import TokenServer
from tests.engine_fixtures import Project

PW1 = "CANARY-lc-pw-one-6e02af"
PW2 = "CANARY-lc-pw-two-0b9c51"
GRAPH_SECRET = "CANARY-lc-graph-d17a38"
CRM_CLIENT_SECRET = "CANARY-lc-crmclient-4f6e90"
CANARIES = (PW1, PW2, GRAPH_SECRET, CRM_CLIENT_SECRET)
CLIENT_ID = "8e17edb9-0f05-46cc-8741-a937e351e631"
CRM_CLIENT_ID = "3f1c7c52-5d7e-4a7e-9f54-2b0c1a9d7e11"

CRM = """\
  - name: crm-api
    convention: general
    url: {config: crmUrl}
    allow_insecure_http: true
    grant_type: password
    scope: [read, write]
    username: svc-crm
    password: {config: crmPassword}
"""
GRAPH = f"""\
  - name: graph-mail
    convention: msgraph
    url: {{config: graphUrl}}
    allow_insecure_http: true
    grant_type: client_credentials
    scope: https://graph.microsoft.com/.default
    client_id: {CLIENT_ID}
    client_secret: {{config: graphSecret}}
"""
DECLARATIONS = "version: 1\nsecrets:\n" + CRM + GRAPH

# The same declarations, written differently: keys reordered, comments, blank
# lines, flow style, graph-mail first, scope as comma-separated text.
REFORMATTED = f"""\
# Cellosign secrets (reformatted: nothing here means anything new)
secrets:

  # the Graph application
  - client_secret: {{config: graphSecret}}   # encrypted stack config
    scope: "https://graph.microsoft.com/.default"
    client_id: "{CLIENT_ID}"
    grant_type: client_credentials
    allow_insecure_http: true
    url: {{ config: graphUrl }}
    convention: msgraph
    name: graph-mail

  - {{name: crm-api, convention: general, username: svc-crm, password: {{config: crmPassword}},
      scope: "read,write", grant_type: password, url: {{config: crmUrl}}, allow_insecure_http: true}}

version: 1
"""


@pytest.fixture(scope="module")
def shared_server() -> Iterator[TokenServer]:
    with TokenServer() as srv:
        yield srv


@pytest.fixture()
def server(shared_server: TokenServer) -> TokenServer:
    srv = shared_server
    srv.accounts.clear()
    srv.set_account("svc-crm", PW1)
    srv.set_account(CLIENT_ID, GRAPH_SECRET)
    srv.set_account(CRM_CLIENT_ID, CRM_CLIENT_SECRET)
    srv.requests_seen = 0
    return srv


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, shared_server: TokenServer) -> Project:
    """A project after its first `up` (made once; each test works on a copy)."""
    root = tmp_path_factory.mktemp("deployed") / "project"
    root.mkdir()
    shutil.copy(Path(__file__).resolve().parents[1] / "Pulumi.yaml", root / "Pulumi.yaml")
    proj = Project(root=root)
    proj.write(DECLARATIONS)
    shared_server.accounts.clear()
    shared_server.set_account("svc-crm", PW1)
    shared_server.set_account(CLIENT_ID, GRAPH_SECRET)
    proj.set_config({"crmUrl": shared_server.url, "graphUrl": shared_server.url,
                     "crmPassword": PW1, "graphSecret": GRAPH_SECRET, "crmClientSecret": CRM_CLIENT_SECRET},
                    secret={"crmPassword", "graphSecret", "crmClientSecret"})
    assert proj.up().summary.resource_changes == {"create": 3}
    return proj


@pytest.fixture()
def project(tmp_path: Path, deployed: Project, server: TokenServer) -> Project:
    root = tmp_path / "project"
    shutil.copytree(deployed.root, root)
    return Project(root=root, stack_name=deployed.stack_name)


SECRET_SIG = "4dabf18193072939515e22adb298388d"


def _plain(value: Any) -> Any:
    """State values with every encrypted secret as "[secret]" (ciphertexts change at every checkpoint)."""
    if isinstance(value, dict):
        return "[secret]" if SECRET_SIG in value else {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def outputs(project: Project) -> dict[str, dict[str, Any]]:
    return {name: _plain(res["outputs"]) for name, res in project.resources().items()}


def _without_source(props: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: {k: v for k, v in p.items() if k != "source"} for name, p in props.items()}


def inputs(project: Project) -> dict[str, dict[str, Any]]:
    return {name: _plain(res["inputs"]) for name, res in project.resources().items()}


def assert_no_canary(project: Project, *texts: str) -> None:
    haystacks = [project.output_text(), project.state_text(), str(project.exported()), *texts]
    for text in haystacks:
        for canary in CANARIES:
            assert canary not in text, f"secret value {canary!r} leaked"


# --------------------------------------------------------------------------- replacement / updates


def test_changing_the_convention_is_a_replacement(project: Project, server: TokenServer) -> None:
    project.write("version: 1\nsecrets:\n" + f"""\
  - name: crm-api
    convention: msgraph
    url: {{config: crmUrl}}
    allow_insecure_http: true
    grant_type: client_credentials
    scope: api://crm/.default
    client_id: {CRM_CLIENT_ID}
    client_secret: {{config: crmClientSecret}}
""" + GRAPH)
    assert project.preview().change_summary == {"replace": 1, "same": 2}
    assert server.requests_seen == 0  # preview sends nothing
    res = project.up()
    assert res.summary.resource_changes == {"replace": 1, "same": 2}
    assert server.requests_seen == 1
    crm = outputs(project)["crm-api"]
    assert crm["convention"] == "msgraph" and crm["client_id"] == CRM_CLIENT_ID
    assert "password" not in crm and "username" not in crm
    assert_no_canary(project)


@pytest.mark.parametrize("change", ["url", "scope", "grant_type"])
def test_url_scope_and_grant_type_changes_are_updates_with_a_fresh_token_test(
    project: Project, server: TokenServer, change: str
) -> None:
    before = outputs(project)["crm-api"]
    if change == "url":
        project.set_config({"crmUrl": server.url.replace("/oauth2/token", "/v2/oauth2/token")})
        expected = ("url", server.url.replace("/oauth2/token", "/v2/oauth2/token"))
    elif change == "scope":
        project.write(DECLARATIONS.replace("scope: [read, write]", "scope: [read]"))
        expected = ("scope", ["read"])
    else:
        project.write(DECLARATIONS.replace("grant_type: password", "grant_type: client_credentials"))
        expected = ("grant_type", "client_credentials")
    res = project.up()
    assert res.summary.resource_changes == {"update": 1, "same": 2}
    assert server.requests_seen == 1  # the changed secret, tested again; the other one not
    after = outputs(project)["crm-api"]
    assert after[expected[0]] == expected[1] != before[expected[0]]
    assert after["token_expires_in"] == 3600
    assert after["tested_at"] >= before["tested_at"]
    assert_no_canary(project)


def test_reformatting_the_file_changes_nothing(project: Project, server: TokenServer) -> None:
    before = outputs(project)
    before_inputs = inputs(project)
    project.write(REFORMATTED)
    assert project.preview().change_summary == {"same": 3}
    res = project.up()
    assert res.summary.resource_changes == {"same": 3}
    assert server.requests_seen == 0
    assert outputs(project) == before
    # only where each secret is declared (file:line) is recorded anew
    assert _without_source(inputs(project)) == _without_source(before_inputs)
    # and back: still nothing
    project.write(DECLARATIONS)
    assert project.up().summary.resource_changes == {"same": 3}
    assert server.requests_seen == 0
    assert outputs(project) == before


# --------------------------------------------------------------------------- refresh


def test_refresh_with_working_credentials_changes_nothing(project: Project, server: TokenServer) -> None:
    before = outputs(project)
    res = project.refresh()
    assert res.summary.resource_changes == {"same": 3}
    assert server.requests_seen == 2  # every credential tested again
    assert outputs(project) == before  # tested_at too: refresh never rewrites state
    assert project.up().summary.resource_changes == {"same": 3}


def test_refresh_after_the_password_stops_working_fails_and_keeps_state(
    project: Project, server: TokenServer
) -> None:
    before = outputs(project)
    server.set_account("svc-crm", PW2)  # rotated at the identity provider, not yet in the stack
    with pytest.raises(auto.CommandError) as err:
        project.refresh()
    message = str(err.value)
    assert "token test failed for secret 'crm-api' [oauth_error]" in message
    assert "invalid_grant" in message
    assert outputs(project) == before
    assert outputs(project)["crm-api"]["tested_at"] == before["crm-api"]["tested_at"]
    assert_no_canary(project, message)


# --------------------------------------------------------------------------- preview


def test_preview_of_a_changed_password_shows_the_update_not_the_password(
    project: Project, server: TokenServer
) -> None:
    server.set_account("svc-crm", PW2)
    project.set_config({"crmPassword": PW2}, secret={"crmPassword"})
    lines: list[str] = []
    res = project.stack().preview(on_output=lines.append, diff=True, color="never")
    assert res.change_summary == {"update": 1, "same": 2}
    text = "\n".join(lines)
    assert "cellosign:Secret: (update)" in text and "cellosign:Secret::crm-api]" in text
    assert "cellosign:Secret::graph-mail]" not in text  # only the changed secret is shown
    assert re.search(r"password +: \[secret\]", text)
    assert re.search(r"~ secret_fingerprint *: \"hmac-sha256:\w+\" => \"hmac-sha256:\w+\"", text)
    assert server.requests_seen == 0
    assert_no_canary(project, text)
    # and up applies it, with a token test of the new password
    assert project.up().summary.resource_changes == {"update": 1, "same": 2}
    assert server.requests_seen == 1
    assert_no_canary(project)
