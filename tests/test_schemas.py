"""The JSON Schemas and the validator built on them.

Data-driven part: every file in tests/data/bad/ says in its header which
problems `validate` must report (and where, with `# <-` markers) and whether
check-jsonschema, using only the schema, rejects it. See tests/data/README.md.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from resources.loader import load_declarations, load_declarations_text
from resources.validation import (
    SCHEMA_DIR,
    SCHEMA_FILES,
    bundled_declarations_schema,
    load_schema,
    url_problems,
    validate_document,
    validate_secret,
    validate_webhook,
)

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
EXAMPLE = ROOT / "cellosign.yaml"
CHECK_JSONSCHEMA = ROOT / ".venv" / "bin" / "check-jsonschema"
CANARY = "CANARY-pw-7f3a9"
GOOD = sorted((DATA / "good").glob("*.yaml")) + [EXAMPLE]
BAD = sorted((DATA / "bad").glob("*.yaml"))


def expectations(path: Path) -> tuple[list[tuple[str, str]], str, list[int]]:
    """(path, message part) per expected problem, check-jsonschema's verdict, marked lines."""
    text = path.read_text(encoding="utf-8")
    expects = [(m.group(1), m.group(2)) for m in re.finditer(r"^# expect: (.+?): (.+)$", text, re.MULTILINE)]
    verdict = re.search(r"^# check-jsonschema: (rejects|accepts)$", text, re.MULTILINE)
    assert expects and verdict, f"{path.name}: header lines missing"
    lines = []
    for number, line in enumerate(text.splitlines(), start=1):
        if "#" in line and not line.startswith("#"):
            lines += [number] * line.split("#", 1)[1].count("<-")
    return expects, verdict.group(1), lines


@pytest.fixture(scope="session")
def check_jsonschema_failures() -> set[str]:
    """Files check-jsonschema rejects, from one run over all good and bad files."""
    files = [str(p) for p in GOOD + BAD]
    proc = subprocess.run(
        [
            str(CHECK_JSONSCHEMA),
            "--output-format",
            "json",
            "--schemafile",
            str(SCHEMA_DIR / "declarations.schema.json"),
            *files,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["parse_errors"] == []
    return {Path(e["filename"]).resolve().as_posix() for e in report["errors"]}


# --------------------------------------------------------------------------- the schema files


@pytest.mark.parametrize("name", SCHEMA_FILES)
def test_schema_file_is_valid_2020_12_with_id_naming_the_file(name: str) -> None:
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].startswith("https://") and schema["$id"].endswith(f"/{name}.schema.json")


def test_declarations_schema_embeds_current_copies_of_the_other_schemas() -> None:
    on_disk = json.loads((SCHEMA_DIR / "declarations.schema.json").read_text(encoding="utf-8"))
    assert on_disk == bundled_declarations_schema(), (
        "schemas/declarations.schema.json is out of date: run `python -m resources.validation bundle-schemas`"
    )


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


@pytest.mark.parametrize("name", SCHEMA_FILES)
def test_every_ref_is_a_sibling_file_reference_that_resolves_by_path(name: str) -> None:
    """Editors (yaml-language-server) resolve $ref against the schema file's path, not its $id."""
    schema = load_schema(name)
    for ref in _refs(schema):
        file, _, pointer = ref.partition("#")
        assert re.fullmatch(r"[a-z-]+\.schema\.json", file), ref
        target: Any = json.loads((SCHEMA_DIR / file).read_text(encoding="utf-8"))
        for part in filter(None, pointer.split("/")):
            target = target[part]
        assert isinstance(target, dict)


def test_schemas_validate_by_file_path_without_ids_or_embedded_copies() -> None:
    """What an editor does with the header `$schema=./schemas/declarations.schema.json`."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k != "$id" and not k.endswith(".schema.json")}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    base = SCHEMA_DIR.as_uri() + "/"

    def retrieve(uri: str) -> Resource[Any]:
        assert uri.startswith(base), uri
        return DRAFT202012.create_resource(strip(load_schema(uri[len(base) :].removesuffix(".schema.json"))))

    validator = Draft202012Validator(
        {"$ref": urljoin(base, "declarations.schema.json")},
        registry=Registry(retrieve=retrieve),  # type: ignore[call-arg]
    )
    assert list(validator.iter_errors(load_declarations(EXAMPLE).data)) == []
    bad = load_declarations(DATA / "bad" / "literal-password.yaml").data
    assert [list(e.absolute_path) for e in validator.iter_errors(bad)] == [["secrets", 0, "password"]]


def test_example_has_the_editor_header_pointing_at_the_schema() -> None:
    first = EXAMPLE.read_text(encoding="utf-8").splitlines()[0]
    assert first == "# yaml-language-server: $schema=./schemas/declarations.schema.json"
    assert (EXAMPLE.parent / "schemas" / "declarations.schema.json").is_file()


# --------------------------------------------------------------------------- good and bad files


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.name)
def test_good_file_is_accepted_by_validate_and_check_jsonschema(
    path: Path, check_jsonschema_failures: set[str]
) -> None:
    assert validate_document(load_declarations(path)) == []
    assert path.resolve().as_posix() not in check_jsonschema_failures


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_file_reports_exactly_the_expected_problems_where_marked(path: Path) -> None:
    expects, _, lines = expectations(path)
    problems = validate_document(load_declarations(path))
    got = [(p.line, p.path, p.message) for p in problems]
    assert len(problems) == len(expects), got
    assert len(lines) == len(expects), f"{path.name}: one '# <-' marker per expected problem"
    for problem, (want_path, want_text), want_line in zip(problems, expects, lines, strict=True):
        assert (problem.line, problem.path) == (want_line, want_path), got
        assert want_text in problem.message, got
        assert problem.file == str(path)
        assert problem.column is not None and problem.column >= 1


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_check_jsonschema_agrees_where_the_schema_can_say_it(path: Path, check_jsonschema_failures: set[str]) -> None:
    _, verdict, _ = expectations(path)
    rejected = path.resolve().as_posix() in check_jsonschema_failures
    assert rejected == (verdict == "rejects")


# --------------------------------------------------------------------------- secrets never echoed


@pytest.mark.parametrize("path", [p for p in BAD if CANARY in p.read_text(encoding="utf-8")], ids=lambda p: p.stem)
def test_no_problem_text_contains_a_secret_written_in_the_file(path: Path) -> None:
    problems = validate_document(load_declarations(path))
    assert problems
    assert not any(CANARY in f"{p.path} {p.field} {p.message} {p.expected}" for p in problems)


@pytest.mark.parametrize(
    "value",
    [CANARY, 12345678, [CANARY], {"config": CANARY, "extra": CANARY}, {"value": CANARY}, {"env": f"{CANARY} x"}],
    ids=["text", "number", "list", "ref-with-extra", "wrong-ref", "bad-env-name"],
)
@pytest.mark.parametrize("field,convention", [("password", "general"), ("client_secret", "msgraph")])
def test_a_secret_field_value_is_never_shown(value: Any, field: str, convention: str) -> None:
    props = _secret(convention, **{field: value})
    problems = validate_secret(props, resolved=False, path_prefix="secrets[3]")
    assert problems
    assert all(p.path.startswith(f"secrets[3].{field}") for p in problems), problems
    text = " ".join(f"{p.message} {p.expected}" for p in problems)
    assert CANARY not in text and "12345678" not in text


def test_literal_secret_message_says_how_to_store_it() -> None:
    (problem,) = validate_secret(_secret("general", password=CANARY), resolved=False)
    assert "pulumi config set --secret KEY" in problem.message
    assert "{config: KEY}" in problem.message
    assert "a literal value" in problem.message


def test_misspelt_secret_field_is_reported_without_its_value() -> None:
    props = _secret("general")
    props["pasword"] = props.pop("password") and CANARY
    problems = validate_secret(props, resolved=False)
    assert [p.message for p in problems] == ["unknown field 'pasword' — did you mean 'password'?"]


def test_userinfo_in_url_is_not_echoed() -> None:
    problems = validate_secret(_secret("general", url=f"https://me:{CANARY}@example.com/t"), resolved=False)
    assert len(problems) == 1 and CANARY not in problems[0].message


# --------------------------------------------------------------------------- validate_secret / validate_webhook


def _secret(convention: str, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "crm-api",
        "convention": convention,
        "url": "https://login.example.com/token",
        "grant_type": "password",
        "scope": ["read", "write"],
    }
    if convention == "general":
        base.update(username={"config": "crmUsername"}, password={"config": "crmPassword"})
    else:
        base.update(client_id="8e17edb9-0f05-46cc-8741-a937e351e631", client_secret={"env": "GRAPH_SECRET"})
    base.update(overrides)
    return base


def test_validate_secret_accepts_a_declared_secret_of_each_convention() -> None:
    assert validate_secret(_secret("general"), resolved=False) == []
    assert validate_secret(_secret("msgraph"), resolved=False) == []


def test_resolved_secret_holds_plaintext_values() -> None:
    resolved = _secret("general", username="svc-user", password=CANARY, allow_insecure_http=False)
    assert validate_secret(resolved, resolved=True) == []
    resolved_graph = _secret("msgraph", client_secret=CANARY)
    assert validate_secret(resolved_graph, resolved=True) == []


def test_resolved_secret_accepts_the_secret_resources_inputs() -> None:
    """What the provider's check() gets: Pulumi keys, flattened timeouts, source, None for unset."""
    inputs = _secret("general", username="svc", password=CANARY)
    inputs.update(
        {
            "__provider": "opaque",
            "source": "cellosign.yaml:10",
            "connect_timeout": 5.0,
            "read_timeout": 15.0,
            "ca_bundle": None,
            "description": None,
            "request_format": "json",
            "allow_insecure_http": False,
        }
    )
    assert validate_secret(inputs, resolved=True) == []
    inputs["read_timeout"] = 500.0
    (problem,) = validate_secret(inputs, resolved=True)
    assert problem.path == "timeouts.read" and "at most 120" in problem.message


@pytest.mark.parametrize("value", ["", "   ", None, 42, {"config": "crmPassword"}])
def test_resolved_secret_must_be_non_empty_text_and_is_never_shown(value: Any) -> None:
    props = _secret("general", username="svc", password=value)
    if value is None:
        props.pop("password")
    problems = validate_secret(props, resolved=True, path_prefix="secrets[0]")
    assert [p.path for p in problems] == ["secrets[0].password"]
    assert "42" not in problems[0].message


def test_resolved_secret_url_rules_apply_to_the_resolved_url() -> None:
    props = _secret("general", username="svc", password=CANARY, url=f"http://{CANARY}.example.com/t")
    (problem,) = validate_secret(props, resolved=True, path_prefix="secrets[2]")
    assert problem.path == "secrets[2].url" and problem.field == "url"
    assert "loopback" in problem.message and CANARY not in problem.message  # scrubbed: it is the password
    ok = _secret("general", username="svc", password="pw", url="http://127.0.0.1:9/t", allow_insecure_http=True)
    assert validate_secret(ok, resolved=True) == []


def test_validate_webhook_resolves_the_secret_name_against_the_declared_ones() -> None:
    hook: dict[str, Any] = {
        "name": "signed",
        "url": "https://h.example.com/x",
        "events": ["document.signed"],
        "secret": "graph",
    }
    assert validate_webhook(hook, resolved=False, secret_names={"graph"}) == []
    (problem,) = validate_webhook(
        hook, resolved=False, secret_names={"graph-mail", "crm-api"}, path_prefix="webhooks[0]"
    )
    assert problem.path == "webhooks[0].secret"
    assert problem.message == (
        "webhook 'signed' uses secret 'graph', which is not declared under secrets: — did you mean 'graph-mail'?"
    )
    hook["headers"] = {"AUTHORIZATION": "Bearer x"}
    (problem,) = validate_webhook(hook, resolved=True, secret_names={"graph"})
    assert problem.path == "headers.AUTHORIZATION" and "reserved" in problem.message


def test_validators_are_shared_safely_between_threads() -> None:
    results: list[list[Any]] = []
    bad = _secret("msgraph", client_id="abc", password=CANARY)

    def work() -> None:
        for _ in range(20):
            results.append(validate_secret(bad, resolved=False))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 160 and all(r == results[0] for r in results)
    assert {p.field for p in results[0]} == {"client_id", "password"}


def test_missing_convention_and_missing_fields_point_at_the_secret() -> None:
    loaded = load_declarations_text("version: 1\nsecrets:\n  - name: a\n    convention: msgraph\n", "x.yaml")
    problems = validate_document(loaded)
    assert {(p.line, p.column, p.path) for p in problems} == {
        (3, 5, f"secrets[0].{f}") for f in ("url", "grant_type", "scope", "client_id", "client_secret")
    }
    assert all(p.message == f"missing required field '{p.field}'" for p in problems)
    assert next(p for p in problems if p.field == "client_id").expected.startswith("a GUID")  # type: ignore[union-attr]


def test_empty_file_and_non_mapping_document() -> None:
    (empty,) = validate_document(load_declarations_text("# nothing\n", "e.yaml"))
    assert "empty" in empty.message and empty.line == 1
    (listed,) = validate_document(load_declarations_text("- version: 1\n", "l.yaml"))
    assert listed.message.startswith("expected a mapping") and listed.path == ""


# --------------------------------------------------------------------------- URL rules


URLS_OK = [
    ("https://login.example.com/oauth2/token", False),
    ("https://login.example.com", False),
    ("https://login.example.com:8443/t?x=1&y=a@b", False),
    ("https://[2001:db8::1]:443/t", False),
    ("https://10.0.0.1/t", False),
    ("http://127.0.0.1:8080/token", True),
    ("http://127.255.0.9/token", True),
    ("http://localhost:9000", True),
    ("http://[::1]/token", True),
]
URLS_BAD = [
    ("http://login.example.com/token", True, "only allowed for a loopback host"),
    ("http://127.0.0.1/token", False, "needs allow_insecure_http: true"),
    ("http://localhost.example.com/t", True, "only allowed for a loopback host"),
    ("http://127.0.0.1.nip.io/t", True, "only allowed for a loopback host"),
    ("http://128.0.0.1/t", True, "only allowed for a loopback host"),
    ("http://[::2]/t", True, "only allowed for a loopback host"),
    ("https://user:pw@example.com/t", False, "user name or password"),
    ("https://user@example.com/t", False, "user name or password"),
    ("https://example.com/t#frag", False, "fragment"),
    ("https://example.com/t#", False, "fragment"),
    ("https:///t", False, "no host"),
    ("https://:443/t", False, "no host"),
    ("https://example.com:/t", False, "port"),
    ("https://example.com:99x/t", False, "port"),
    ("https://[zz::1]/t", False, "IPv6"),
    ("https://exa mple.com/t", False, "space"),
    ("HTTPS://example.com/t", False, "lowercase"),
    ("ftp://example.com/t", False, "scheme 'ftp'"),
    ("example.com/token", False, "not an absolute URL"),
    ("https:example.com", False, "followed by a host"),
    ("", False, "not an absolute URL"),
]


@pytest.mark.parametrize("url,allow", URLS_OK)
def test_url_accepted(url: str, allow: bool) -> None:
    assert url_problems(url, allow) == []


@pytest.mark.parametrize("url,allow,text", URLS_BAD)
def test_url_rejected_with_a_precise_message(url: str, allow: bool, text: str) -> None:
    problems = url_problems(url, allow)
    assert problems and text in problems[0], problems


def test_url_with_insecure_flag_from_config_defers_the_http_rule() -> None:
    assert url_problems("http://127.0.0.1/t", None) == []
    assert url_problems("http://example.com/t", None) != []


@pytest.mark.parametrize("url,allow", [(u, a) for u, a in URLS_OK] + [(u, a) for u, a, _ in URLS_BAD])
def test_schema_and_url_rules_agree(url: str, allow: bool) -> None:
    """The schema alone (what editors and check-jsonschema see) says the same about every URL."""
    schema_validator = Draft202012Validator(
        {"$ref": "https://schemas.cellosign-iac.dev/v1/secret-general.schema.json"},
        registry=Registry().with_resources(
            (s["$id"], DRAFT202012.create_resource(s)) for s in map(load_schema, SCHEMA_FILES)
        ),
    )
    instance = _secret("general", url=url, allow_insecure_http=allow)
    schema_ok = not any(e for e in schema_validator.iter_errors(instance))
    assert schema_ok == (url_problems(url, allow) == [])


def test_deleting_a_secret_that_a_webhook_uses_is_refused_naming_both() -> None:
    hook = {"name": "signed", "url": "https://h.example.com/x", "events": ["document.signed"], "secret": "crm-api"}
    (problem,) = validate_webhook(hook, resolved=False, secret_names={"graph-mail"})
    assert "webhook 'signed'" in problem.message and "secret 'crm-api'" in problem.message
    assert "deleting a secret that a webhook still uses is refused" in problem.message
