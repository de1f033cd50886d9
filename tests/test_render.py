"""Rendering of the Cellosign configuration: escaping, conventions, redaction, order, schema, atomic writes."""

from __future__ import annotations

import json
import os
import random
import threading
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from resources import render as r
from resources.conventions import CONVENTIONS, GENERAL, MSGRAPH
from resources.errors import CellosignError
from resources.render import (
    ConfigModel,
    RenderError,
    SecretEntry,
    WebhookEntry,
    fingerprint,
    redacted,
    render,
    write_atomically,
)

KEY = b"test-fingerprint-key"
GUID = "8e17edb9-0f05-46cc-8741-a937e351e631"
CANARY_PASSWORD = "CANARY-pw-7f3a9c1e"
CANARY_CLIENT_SECRET = "CANARY-cs-2b8d4e6f"
TEMPLATE = r.DEFAULT_TEMPLATE_DIR / r.TEMPLATE_NAME


def general(name: str = "crm-api", secret: str = CANARY_PASSWORD, **kw: object) -> SecretEntry:
    fields: dict[str, object] = {
        "name": name,
        "convention": GENERAL,
        "url": "https://crm.example.com/oauth/token",
        "grant_type": "password",
        "scopes": ("read", "write"),
        "identity": "svc-cellosign",
        "secret": secret,
        "description": "CRM account",
    }
    fields.update(kw)
    return SecretEntry(**fields)  # type: ignore[arg-type]


def msgraph(name: str = "graph-mail", secret: str = CANARY_CLIENT_SECRET, **kw: object) -> SecretEntry:
    fields: dict[str, object] = {
        "name": name,
        "convention": MSGRAPH,
        "url": "https://login.example.com/tenant/oauth2/v2.0/token",
        "grant_type": "client_credentials",
        "scopes": ("read", "write"),
        "identity": GUID,
        "secret": secret,
    }
    fields.update(kw)
    return SecretEntry(**fields)  # type: ignore[arg-type]


def webhook(name: str = "signed-docs", secret: str = "crm-api", **kw: object) -> WebhookEntry:
    fields: dict[str, object] = {
        "name": name,
        "url": "https://hooks.example.com/cellosign",
        "events": ("document.signed", "document.declined"),
        "secret": secret,
        "headers": (("X-Request-Source", "cellosign"), ("X-Tenant", "acme")),
        "description": "Signed documents to the CRM",
    }
    fields.update(kw)
    return WebhookEntry(**fields)  # type: ignore[arg-type]


def model(**kw: object) -> ConfigModel:
    fields: dict[str, object] = {
        "stack": "dev",
        "secrets": (general(), msgraph()),
        "webhooks": (webhook(), webhook("graph-files", secret="graph-mail", headers=())),
    }
    fields.update(kw)
    return ConfigModel(**fields)  # type: ignore[arg-type]


def parse(text: str) -> dict:
    doc = yaml.safe_load(text)
    assert isinstance(doc, dict)
    return doc


def form(doc: dict, name: str) -> dict:
    (entry,) = [s for s in doc["secrets"] if s["name"] == name]
    return entry["form"]


def custom_dir(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "my-templates"
    folder.mkdir(exist_ok=True)
    (folder / r.TEMPLATE_NAME).write_text(text, encoding="utf-8")
    return folder


# --------------------------------------------------------------------------- conventions


def test_general_form_labels_and_tuple_scope() -> None:
    doc = parse(render(model(), redacted=False))
    f = form(doc, "crm-api")
    assert list(f) == ["Type", "url", "Grant type", "Scope", "User name", "Password"]
    assert f == {
        "Type": "General – username and password",
        "url": "https://crm.example.com/oauth/token",
        "Grant type": "password",
        "Scope": "('read,write',)",
        "User name": "svc-cellosign",
        "Password": CANARY_PASSWORD,
    }


def test_msgraph_form_labels_and_plain_scope() -> None:
    doc = parse(render(model(), redacted=False))
    f = form(doc, "graph-mail")
    assert list(f) == ["Type", "url", "Grant type", "Scope", "client_id", "client_secret"]
    assert f["Type"] == "Microsoft Graph REST API v1.0"
    assert f["Scope"] == "read,write"
    assert f["client_id"] == GUID
    assert f["client_secret"] == CANARY_CLIENT_SECRET


@pytest.mark.parametrize("convention", [GENERAL, MSGRAPH])
def test_labels_and_scope_come_from_conventions(convention: str) -> None:
    c = CONVENTIONS[convention]
    scopes = ("https://graph.microsoft.com/.default", "it's")
    entry = general(convention=convention, scopes=scopes)
    doc = parse(render(model(secrets=(entry,), webhooks=(webhook(),)), redacted=False))
    f = form(doc, "crm-api")
    assert f["Type"] == c.type_label
    assert f["Scope"] == c.scope_value(scopes)
    assert f[c.identity_label] == entry.identity
    assert f[c.secret_label] == entry.secret


def test_schema_labels_agree_with_conventions() -> None:
    schema = json.loads(r.SCHEMA_PATH.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    assert schema["$id"] == "https://schemas.cellosign-iac.dev/v1/cellosign-config.schema.json"
    for key, form_def in ((GENERAL, "generalForm"), (MSGRAPH, "msgraphForm")):
        c = CONVENTIONS[key]
        d = schema["$defs"][form_def]
        assert d["required"] == ["Type", "url", "Grant type", "Scope", c.identity_label, c.secret_label]
        assert d["properties"]["Type"]["const"] == c.type_label
    secret_labels = {c.secret_label for c in CONVENTIONS.values()}
    for d in ("redactedSecretValue", "clearSecretValue"):
        assert set(schema["$defs"][d]["properties"]["form"]["properties"]) == secret_labels


def test_header_comment_and_top_level() -> None:
    full = render(model(stack="staging"), redacted=False)
    red = render(redacted(model(stack="staging"), KEY), redacted=True)
    for text in (full, red):
        head = text.split('"version"')[0]
        assert "Generated by cellosign-iac" in head
        assert '# Stack: "staging"' in head
    assert "keyed fingerprint" in red.split('"version"')[0]
    assert "keyed fingerprint" not in full.split('"version"')[0]
    assert parse(full)["redacted"] is False
    assert parse(red)["redacted"] is True
    assert parse(full)["stack"] == "staging"
    assert parse(full)["version"] == 1


def test_webhook_fields() -> None:
    doc = parse(render(model(), redacted=False))
    (w,) = [w for w in doc["webhooks"] if w["name"] == "signed-docs"]
    assert list(w) == ["name", "description", "url", "events", "secret", "headers"]
    assert w["url"] == "https://hooks.example.com/cellosign"
    assert w["events"] == ["document.declined", "document.signed"]
    assert w["secret"] == "crm-api"
    assert w["headers"] == {"X-Request-Source": "cellosign", "X-Tenant": "acme"}
    (g,) = [w for w in doc["webhooks"] if w["name"] == "graph-files"]
    assert g["headers"] == {}


def test_empty_stack() -> None:
    doc = parse(render(ConfigModel("dev", (), ()), redacted=False))
    assert doc["secrets"] == [] and doc["webhooks"] == []


# --------------------------------------------------------------------------- escaping


@pytest.mark.parametrize(
    "value",
    [
        "{{ 1+1 }}",
        "{% if true %}x{% endif %}",
        "{# comment #}",
        "{{ secrets }}",
        "{% raw %}{{ x }}{% endraw %}",
    ],
)
def test_template_syntax_in_values_renders_literally(value: str) -> None:
    m = model(
        stack=value,
        secrets=(general(name=value, secret=value, identity=value, url=value, description=value),),
        webhooks=(webhook(secret=value, url=value, headers=(("X-T", value),), events=(value,)),),
    )
    doc = parse(render(m, redacted=False))
    assert doc["stack"] == value
    s = doc["secrets"][0]
    assert s["name"] == value and s["description"] == value
    assert s["form"]["url"] == value and s["form"]["User name"] == value and s["form"]["Password"] == value
    w = doc["webhooks"][0]
    assert w["url"] == value and w["secret"] == value and w["events"] == [value] and w["headers"] == {"X-T": value}


TRICKY = [
    'say "hi"',
    "it's",
    "key: value",
    "a: b: c",
    "line1\nline2\n",
    "\r\n\t",
    "- item",
    "* star",
    "&anchor",
    "*alias",
    "!tag",
    "%directive",
    "@at",
    "`tick",
    "| literal",
    "> folded",
    "? key",
    "# not a comment",
    "a # b",
    "[1, 2]",
    "{a: 1}",
    "yes",
    "no",
    "on",
    "off",
    "y",
    "N",
    "true",
    "False",
    "null",
    "~",
    "",
    " ",
    "  leading and trailing  ",
    "0123",
    "1e3",
    "0x1F",
    ".inf",
    "1:20",
    "---",
    "...",
    "back\\slash \\n not a newline",
    "héllo wörld – “quotes” 日本語 😀 👨\u200d👩\u200d👧",
    "\x00\x01\x07\x1b\x7f\x85\xa0",
    "\u2028\u2029\ufeff\u202e\u2066",
    "\ue000\U000f0000",
    "tab\there",
    "ends with backslash \\",
]


@pytest.mark.parametrize("value", TRICKY)
def test_values_round_trip_exactly(value: str) -> None:
    m = ConfigModel(
        stack=value or "dev",
        secrets=(
            general(name="g" + value, secret=value, identity=value, url=value, grant_type=value, description=value),
            msgraph(name="m" + value, secret=value, identity=value, scopes=(value,)),
        ),
        webhooks=(
            webhook(
                name="w" + value,
                secret="g" + value,
                url=value,
                events=(value,),
                headers=(("h" + value, value),),
                description=value,
            ),
        ),
    )
    doc = parse(render(m, redacted=False))
    assert doc["stack"] == (value or "dev")
    g, ms = doc["secrets"]
    assert g["name"] == "g" + value and g["description"] == value
    assert g["form"] == {
        "Type": CONVENTIONS[GENERAL].type_label,
        "url": value,
        "Grant type": value,
        "Scope": "('read,write',)",
        "User name": value,
        "Password": value,
    }
    assert ms["form"]["Scope"] == value and ms["form"]["client_id"] == value and ms["form"]["client_secret"] == value
    (w,) = doc["webhooks"]
    assert w == {
        "name": "w" + value,
        "description": value,
        "url": value,
        "events": [value],
        "secret": "g" + value,
        "headers": {"h" + value: value},
    }


def test_output_has_only_visible_characters() -> None:
    text = render(model(secrets=(general(identity="a\u202eb\u200dc\x85d\u2028e\xa0f"),), webhooks=()), redacted=False)
    for ch in "\u202e\u200d\x85\u2028\xa0\t\r":
        assert ch not in text
    assert '"a\\u202eb\\u200dc\\x85d\\u2028e\\xa0f"' in text


def test_longest_header_name_round_trips() -> None:
    # every character escaped to \UXXXXXXXX: still within PyYAML's limit for a key
    name = "\U000f0000" * r.MAX_HEADER_NAME_CHARS
    doc = parse(render(model(webhooks=(webhook(headers=((name, "v"),)),)), redacted=False))
    assert doc["webhooks"][0]["headers"] == {name: "v"}


def test_yaml_filter_and_finalize() -> None:
    assert r.yaml_value(None) == "null"
    assert r.yaml_value(True) == "true"
    assert r.yaml_value(3) == "3"
    assert yaml.safe_load(r.yaml_value(["a", "b: c"])) == ["a", "b: c"]
    assert yaml.safe_load(r.yaml_value({"k: 1": "v"})) == {"k: 1": "v"}
    with pytest.raises(TypeError):
        r.yaml_value(1.5)


def test_unfiltered_expression_is_escaped_anyway(tmp_path: Path) -> None:
    # A template that forgets |yaml still cannot write raw data: finalize escapes it.
    folder = custom_dir(
        tmp_path,
        TEMPLATE.read_text(encoding="utf-8").replace("{{ s.description|yaml }}", "{{ s.description }}"),
    )
    value = 'x\n"redacted": true\n- {{ 7*7 }}'
    doc = parse(render(model(secrets=(general(description=value),), webhooks=()), redacted=False, template_dir=folder))
    assert doc["secrets"][0]["description"] == value
    assert doc["redacted"] is False


# --------------------------------------------------------------------------- templates


def test_strict_undefined_fails_with_render_error(tmp_path: Path) -> None:
    folder = custom_dir(tmp_path, '"version": 1\n"stack": {{ no_such_variable|yaml }}\n')
    with pytest.raises(RenderError) as info:
        render(model(), redacted=False, template_dir=folder)
    message = str(info.value)
    assert r.TEMPLATE_NAME in message and "no_such_variable" in message and "undefined" in message
    assert f"{r.TEMPLATE_NAME}:2" in message  # the template line


def test_strict_undefined_attribute(tmp_path: Path) -> None:
    folder = custom_dir(tmp_path, "{% for s in secrets %}{{ s.nope }}{% endfor %}\n")
    with pytest.raises(RenderError, match="nope"):
        render(model(), redacted=False, template_dir=folder)


def test_render_error_is_a_cellosign_error() -> None:
    assert issubclass(RenderError, CellosignError)


def test_custom_template_dir(tmp_path: Path) -> None:
    text = TEMPLATE.read_text(encoding="utf-8").replace("# Generated by", "# ACME layout. Generated by")
    folder = custom_dir(tmp_path, text)
    out = render(model(), redacted=False, template_dir=folder)
    assert out.startswith("# ACME layout.")
    assert parse(out) == parse(render(model(), redacted=False))


def test_env_var_template_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = TEMPLATE.read_text(encoding="utf-8").replace("# Generated by", "# FROM ENV. Generated by")
    folder = custom_dir(tmp_path, text)
    monkeypatch.setenv(r.TEMPLATE_ENV_VAR, str(folder))
    assert render(model(), redacted=False).startswith("# FROM ENV.")
    # an explicit template_dir wins over the environment variable
    assert render(model(), redacted=False, template_dir=r.DEFAULT_TEMPLATE_DIR).startswith("# Generated by")
    monkeypatch.delenv(r.TEMPLATE_ENV_VAR)
    assert render(model(), redacted=False).startswith("# Generated by")


def test_missing_template(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="template not found"):
        render(model(), redacted=False, template_dir=tmp_path)


def test_template_syntax_error(tmp_path: Path) -> None:
    folder = custom_dir(tmp_path, '"version": 1\n{% for x in %}\n')
    with pytest.raises(RenderError, match=rf"{r.TEMPLATE_NAME}:2: template syntax error"):
        render(model(), redacted=False, template_dir=folder)


def test_environment_built_once_per_dir(tmp_path: Path) -> None:
    folder = custom_dir(tmp_path, TEMPLATE.read_text(encoding="utf-8"))
    envs: list[object] = []

    def worker() -> None:
        envs.append(r.environment(folder))
        render(model(), redacted=False, template_dir=folder)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(e) for e in envs}) == 1
    assert r.environment(folder) is envs[0]
    assert r.environment(tmp_path / "my-templates" / ".." / "my-templates") is envs[0]
    assert r.environment(None) is r.environment(r.DEFAULT_TEMPLATE_DIR)
    assert r.environment(folder) is not r.environment(None)
    env = r.environment(None)
    assert isinstance(env.undefined(), __import__("jinja2").StrictUndefined)
    assert env.autoescape is False


def test_template_sandboxed(tmp_path: Path) -> None:
    folder = custom_dir(tmp_path, "{{ secrets.__class__.__mro__ }}\n")
    with pytest.raises(RenderError):
        render(model(), redacted=False, template_dir=folder)


# --------------------------------------------------------------------------- schema


@pytest.mark.parametrize(
    "template, problem",
    [
        ('"version": 1\n', "missing"),
        ("not: [valid\n", "not valid YAML"),
        ('"a": 1\n"a": 2\n', "duplicate key"),
        ('"version": 2\n"stack": "x"\n"redacted": false\n"secrets": []\n"webhooks": []\n', "version"),
        ('"version": 1\n"stack": "x"\n"redacted": false\n"secrets": []\n"webhooks": []\n"extra": 1\n', "extra"),
    ],
)
def test_invalid_output_is_refused(tmp_path: Path, template: str, problem: str) -> None:
    folder = custom_dir(tmp_path, template)
    with pytest.raises(RenderError, match=problem) as info:
        render(model(), redacted=False, template_dir=folder)
    assert r.TEMPLATE_NAME in str(info.value)


def test_wrong_scope_format_is_refused(tmp_path: Path) -> None:
    # a template that writes the msgraph scope for a general secret
    text = TEMPLATE.read_text(encoding="utf-8").replace(
        "{% for label, value in s.form %}",
        "{% for label, value in s.form %}{% if label == 'Scope' %}{% set value = s.scopes|join(',') %}{% endif %}",
    )
    folder = custom_dir(tmp_path, text)
    with pytest.raises(RenderError, match=r"secrets\[0\]\.form\.Scope: expected the scope list written as a"):
        render(model(), redacted=False, template_dir=folder)


def test_wrong_label_is_refused(tmp_path: Path) -> None:
    text = TEMPLATE.read_text(encoding="utf-8").replace("{{ label|yaml }}", "{{ label|lower|yaml }}")
    folder = custom_dir(tmp_path, text)
    with pytest.raises(RenderError, match="unexpected key"):
        render(model(), redacted=False, template_dir=folder)


def test_full_model_rendered_as_redacted_is_refused_without_leaking() -> None:
    with pytest.raises(RenderError) as info:
        render(model(), redacted=True)
    message = str(info.value)
    assert "fingerprint" in message and "Password" in message and "client_secret" in message
    assert CANARY_PASSWORD not in message and CANARY_CLIENT_SECRET not in message


def test_redacted_model_rendered_as_full_is_refused() -> None:
    with pytest.raises(RenderError, match="not a fingerprint"):
        render(redacted(model(), KEY), redacted=False)


def test_template_errors_never_quote_secrets(tmp_path: Path) -> None:
    templates = [
        # the secret used as an attribute name: Jinja's message would quote it
        "{% for s in secrets %}{{ s[s.secret] }}{% endfor %}\n",
        # the secret in invalid YAML
        "{% for s in secrets %}{{ s.secret }}: [\n{% endfor %}",
        # the secret as an extra key
        '"version": 1\n{% for s in secrets %}{{ s.secret|yaml }}: 1\n{% endfor %}',
        # the secret where the schema wants something else
        '"version": {{ secrets[0].secret|yaml }}\n"stack": "x"\n"redacted": false\n"secrets": []\n"webhooks": []\n',
        # the secret in an exception message
        "{{ secrets[0].secret|int(base=secrets[0].secret) }}\n",
    ]
    weird = 'p"w\\:\n' + CANARY_PASSWORD
    m = model(secrets=(general(secret=weird), msgraph()))
    for i, text in enumerate(templates):
        (tmp_path / str(i)).mkdir()
        folder = custom_dir(tmp_path / str(i), text)
        with pytest.raises(RenderError) as info:
            render(m, redacted=False, template_dir=folder)
        message = str(info.value)
        assert CANARY_PASSWORD not in message, (text, message)
        assert CANARY_CLIENT_SECRET not in message, (text, message)
        assert info.value.__cause__ is None
        assert info.value.__context__ is None or info.value.__suppress_context__


@pytest.mark.parametrize(
    "bad, problem",
    [
        (model(secrets=(general(), general())), "declared twice"),
        (model(webhooks=(webhook(), webhook())), "declared twice"),
        (model(webhooks=(webhook(secret="nope"),)), "not declared"),
        (model(secrets=(general(convention="basic"),), webhooks=()), "unknown convention"),
        (model(webhooks=(webhook(headers=(("X-A", "1"), ("X-A", "2"))),)), "listed twice"),
        (model(webhooks=(webhook(events=("a", "a")),)), "listed twice"),
        (model(webhooks=(webhook(headers=(("", "1"),)),)), "header name"),
        (model(webhooks=(webhook(headers=(("X" * 101, "1"),)),)), "header name"),
    ],
)
def test_model_problems(bad: ConfigModel, problem: str) -> None:
    with pytest.raises(RenderError, match=problem) as info:
        render(bad, redacted=False)
    assert CANARY_PASSWORD not in str(info.value)


# --------------------------------------------------------------------------- redaction


def test_redacted_document_has_no_canary() -> None:
    full = render(model(), redacted=False)
    assert CANARY_PASSWORD in full and CANARY_CLIENT_SECRET in full
    red_model = redacted(model(), KEY)
    red = render(red_model, redacted=True)
    assert CANARY_PASSWORD not in red and CANARY_CLIENT_SECRET not in red
    doc = parse(red)
    assert form(doc, "crm-api")["Password"] == fingerprint(KEY, CANARY_PASSWORD)
    assert form(doc, "graph-mail")["client_secret"] == fingerprint(KEY, CANARY_CLIENT_SECRET)
    # everything but the secret values is the same in both documents
    full_doc = parse(full)
    for d in (doc, full_doc):
        d.pop("redacted")
        for s in d["secrets"]:
            s["form"].pop("Password", None)
            s["form"].pop("client_secret", None)
    assert doc == full_doc
    # only the secret values change in the model
    assert [s.identity for s in red_model.secrets] == [s.identity for s in model().secrets]
    assert red_model.webhooks == model().webhooks


def test_fingerprint_stable_and_keyed() -> None:
    fp = fingerprint(KEY, "hunter2")
    assert fp == fingerprint(KEY, "hunter2")
    assert fp.startswith("hmac-sha256:") and len(fp) == len("hmac-sha256:") + 16
    int(fp.split(":", 1)[1], 16)
    assert fp != fingerprint(KEY, "hunter3")
    assert fp != fingerprint(b"another-key", "hunter2")
    assert "hunter2" not in fp
    # known answer: HMAC-SHA256(key="key", "The quick brown fox jumps over the lazy dog")
    assert fingerprint(b"key", "The quick brown fox jumps over the lazy dog") == "hmac-sha256:f7bc83f430538424"
    with pytest.raises(ValueError):
        fingerprint(b"", "x")


def test_changed_secret_shows_in_redacted_diff() -> None:
    a = render(redacted(model(), KEY), redacted=True)
    b = render(redacted(model(secrets=(general(secret="new-password"), msgraph())), KEY), redacted=True)
    changed = [(x, y) for x, y in zip(a.splitlines(), b.splitlines(), strict=True) if x != y]
    assert len(changed) == 1 and '"Password"' in changed[0][0]


# --------------------------------------------------------------------------- order


def test_render_twice_identical() -> None:
    assert render(model(), redacted=False) == render(model(), redacted=False)
    red = redacted(model(), KEY)
    assert render(red, redacted=True) == render(red, redacted=True)


def test_shuffled_input_identical() -> None:
    secrets = [general(f"s{i:02d}", secret=f"pw{i}") for i in range(12)] + [msgraph("graph")]
    hooks = [
        webhook(f"w{i:02d}", secret="graph", events=("b.x", "a.y", "c.z"), headers=(("X-B", "2"), ("X-A", "1")))
        for i in range(12)
    ]
    expected = render(ConfigModel("dev", tuple(secrets), tuple(hooks)), redacted=False)
    rng = random.Random(1234)
    for _ in range(10):
        rng.shuffle(secrets)
        rng.shuffle(hooks)
        shuffled_hooks = [
            WebhookEntry(
                w.name,
                w.url,
                tuple(rng.sample(w.events, len(w.events))),
                w.secret,
                tuple(rng.sample(w.headers, len(w.headers))),
                w.description,
            )
            for w in hooks
        ]
        assert render(ConfigModel("dev", tuple(secrets), tuple(shuffled_hooks)), redacted=False) == expected
    doc = parse(expected)
    assert [s["name"] for s in doc["secrets"]] == sorted(s.name for s in secrets)
    assert [w["name"] for w in doc["webhooks"]] == sorted(w.name for w in hooks)
    assert doc["webhooks"][0]["events"] == ["a.y", "b.x", "c.z"]
    assert list(doc["webhooks"][0]["headers"]) == ["X-A", "X-B"]


def test_scope_order_is_kept() -> None:
    # the scope text is what Cellosign sends: its order is the user's, not sorted
    doc = parse(render(model(secrets=(general(scopes=("write", "read")),), webhooks=()), redacted=False))
    assert form(doc, "crm-api")["Scope"] == "('write,read',)"


def test_key_order_fixed() -> None:
    text = render(model(), redacted=False)
    top = [line.split(":")[0] for line in text.splitlines() if line.startswith('"')]
    assert top == ['"version"', '"stack"', '"redacted"', '"secrets"', '"webhooks"']
    doc = parse(text)
    assert all(list(s) == ["name", "convention", "description", "form"] for s in doc["secrets"])


# --------------------------------------------------------------------------- write_atomically


def test_write_atomically_creates_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "cellosign-config.dev.yaml"
    write_atomically(target, "first ü\n")
    assert target.read_bytes() == "first ü\n".encode()
    assert os.stat(target).st_mode & 0o777 == 0o600
    os.chmod(target, 0o644)
    write_atomically(target, "second\n")
    assert target.read_text(encoding="utf-8") == "second\n"
    assert os.stat(target).st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


def test_write_atomically_failure_leaves_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.yaml"
    target.write_text("old\n", encoding="utf-8")
    with pytest.raises(UnicodeEncodeError):
        write_atomically(target, "bad \ud800 surrogate")
    assert target.read_text(encoding="utf-8") == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.yaml"]


def test_write_atomically_replace_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.yaml"
    target.write_text("old\n", encoding="utf-8")

    def boom(src: object, dst: object) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(r.os, "replace", boom)
    with pytest.raises(OSError, match="disk on fire"):
        write_atomically(target, "new\n")
    assert target.read_text(encoding="utf-8") == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.yaml"]


def test_write_rendered_document(tmp_path: Path) -> None:
    text = render(redacted(model(), KEY), redacted=True)
    target = tmp_path / "dev.yaml"
    write_atomically(target, text)
    assert target.read_text(encoding="utf-8") == text


# --------------------------------------------------------------------------- property test

any_text = st.text(st.characters(codec="utf-8"), max_size=40)
printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
text_values = st.one_of(any_text, printable, st.sampled_from(TRICKY))
names = st.text(st.characters(codec="utf-8"), min_size=1, max_size=20)


@st.composite
def models(draw: st.DrawFn) -> ConfigModel:
    secret_names = draw(st.lists(names, min_size=1, max_size=3, unique=True))
    secrets = tuple(
        SecretEntry(
            name=n,
            convention=draw(st.sampled_from([GENERAL, MSGRAPH])),
            url=draw(text_values),
            grant_type=draw(text_values),
            scopes=tuple(draw(st.lists(text_values, max_size=3))),
            identity=draw(text_values),
            secret=draw(text_values.filter(lambda v: not v.startswith("hmac-sha256:"))),
            description=draw(st.none() | text_values),
        )
        for n in secret_names
    )
    webhook_names = draw(st.lists(names, max_size=3, unique=True))
    webhooks = tuple(
        WebhookEntry(
            name=n,
            url=draw(text_values),
            events=tuple(draw(st.lists(text_values, min_size=1, max_size=3, unique=True))),
            secret=draw(st.sampled_from(secret_names)),
            headers=tuple(sorted(draw(st.dictionaries(names, text_values, max_size=3)).items())),
            description=draw(st.none() | text_values),
        )
        for n in webhook_names
    )
    return ConfigModel(stack=draw(names), secrets=secrets, webhooks=webhooks)


def expected_document(m: ConfigModel, *, is_redacted: bool) -> dict:
    def secret(s: SecretEntry) -> dict:
        c = CONVENTIONS[s.convention]
        return {
            "name": s.name,
            "convention": s.convention,
            "description": s.description,
            "form": {
                "Type": c.type_label,
                "url": s.url,
                "Grant type": s.grant_type,
                "Scope": c.scope_value(s.scopes),
                c.identity_label: s.identity,
                c.secret_label: s.secret,
            },
        }

    def hook(w: WebhookEntry) -> dict:
        return {
            "name": w.name,
            "description": w.description,
            "url": w.url,
            "events": sorted(w.events),
            "secret": w.secret,
            "headers": dict(w.headers),
        }

    return {
        "version": 1,
        "stack": m.stack,
        "redacted": is_redacted,
        "secrets": [secret(s) for s in sorted(m.secrets, key=lambda s: s.name)],
        "webhooks": [hook(w) for w in sorted(m.webhooks, key=lambda w: w.name)],
    }


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(models())
def test_property_every_field_round_trips(m: ConfigModel) -> None:
    doc = yaml.safe_load(render(m, redacted=False))
    assert doc == expected_document(m, is_redacted=False)
    red = redacted(m, KEY)
    red_text = render(red, redacted=True)
    assert yaml.safe_load(red_text) == expected_document(red, is_redacted=True)


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(codec="utf-8")))
def test_property_yaml_filter_round_trips(value: str) -> None:
    quoted = r.yaml_value(value)
    assert "\n" not in quoted
    assert yaml.safe_load(quoted) == value
    assert yaml.safe_load(f"{quoted}: {quoted}") == {value: value}
