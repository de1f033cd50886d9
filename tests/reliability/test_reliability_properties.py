"""Property-based tests over the declaration schemas (hypothesis).

- Every declarations file that validates resolves and renders a configuration
  that validates (schemas/cellosign-config.schema.json), with every value intact
  and no secret value in the redacted copy.
- Every file that fails validation gets problems that each name a field (a
  path, a field and a line), and no message shows a secret value or a raw
  control character.
Files are generated valid, then mutated: fields removed, replaced by hostile
values (any Unicode, control characters, look-alikes, wrong types), unknown
fields added.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from resources.conventions import CONVENTIONS
from resources.desired import FINGERPRINT_KEY, resolve_desired
from resources.loader import Loaded, load_declarations_text
from resources.render import SCHEMA_PATH, render
from resources.resolve import mapping_lookup
from resources.validation import validate_document

EXAMPLES = int(os.environ.get("RELIABILITY_EXAMPLES", "100"))
# Shrinking a failure can take minutes: only when asked for (RELIABILITY_SHRINK=1); the
# failing example is printed either way.
PHASES = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if os.environ.get("RELIABILITY_SHRINK")
                                                           else [])
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, phases=PHASES,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.data_too_large])
GUID = "8e17edb9-0f05-46cc-8741-a937e351e631"
CONFIG_SCHEMA = Draft202012Validator(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))

# --------------------------------------------------------------------------- strategies

any_text = st.text(st.characters(codec="utf-8"), max_size=24)
hostile_text = st.one_of(
    any_text,
    st.sampled_from([
        "{{ 7*7 }}", "{% for x in range(10**9) %}x{% endfor %}", "{{ ''.__class__.__mro__ }}", "${HOME}",
        "line\nbreak", "cr\r\nlf", "esc\x1b[2Jclear", "nul\x00byte", "rtl\u202eoverride", "zero\u200bwidth",
        "сrm-api", "ｃｒｍ", "crm\u00a0api", "'quoted'", '"double"', "#comment", "- dash", "*alias", "&anchor",
        "<<", "~", "null", "yes", "0x1F", "1e3", ".inf", "", " ", "\t",
    ]),
)
names = st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True)
keys = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,10}", fullmatch=True)
env_names = st.from_regex(r"REL_[A-Z0-9_]{1,8}", fullmatch=True)
nonblank = any_text.filter(lambda s: bool(s.strip()))
urls = st.sampled_from(["https://idp.example.com/oauth2/token", "https://[::1]:8443/t?x=1",
                        "https://login.microsoftonline.com/t/oauth2/v2.0/token", "http://127.0.0.1:8080/token",
                        "http://localhost/token", "https://idp.example.com:443/a%20b"])
scope_items = st.from_regex(r"[A-Za-z0-9:/._-]{1,12}", fullmatch=True)


def config_ref() -> st.SearchStrategy[dict[str, str]]:
    return keys.map(lambda k: {"config": k})


def maybe_ref(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(values, config_ref())


@st.composite
def secrets(draw: st.DrawFn, name: str) -> dict[str, Any]:
    convention = draw(st.sampled_from(sorted(CONVENTIONS)))
    conv = CONVENTIONS[convention]
    decl: dict[str, Any] = {
        "name": name,
        "convention": convention,
        "url": draw(maybe_ref(urls)),
        "grant_type": draw(maybe_ref(nonblank)),
        "scope": draw(maybe_ref(st.one_of(st.lists(scope_items, min_size=1, max_size=3),
                                          st.lists(scope_items, min_size=1, max_size=3).map(",".join)))),
        conv.identity_field: draw(maybe_ref(st.just(GUID) if convention == "msgraph" else nonblank)),
        conv.secret_field: draw(st.one_of(config_ref(), env_names.map(lambda n: {"env": n}))),
    }
    optional = {
        "description": maybe_ref(hostile_text),
        "allow_insecure_http": maybe_ref(st.booleans()),
        "request_format": st.sampled_from(["json", "form"]),
        "timeouts": st.fixed_dictionaries({}, optional={"connect": st.floats(0.5, 120),
                                                        "read": st.integers(1, 120)}),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            decl[key] = draw(strategy)
    return decl


@st.composite
def webhooks(draw: st.DrawFn, name: str, secret_names: list[str]) -> dict[str, Any]:
    hook: dict[str, Any] = {
        "name": name,
        "url": draw(maybe_ref(urls)),
        "events": draw(st.lists(st.from_regex(r"[a-z][a-z0-9_.-]{0,12}", fullmatch=True), min_size=1,
                                max_size=3, unique=True)),
        "secret": draw(st.sampled_from(secret_names)),
    }
    if draw(st.booleans()):
        hook["headers"] = draw(st.dictionaries(st.from_regex(r"X-[A-Za-z0-9-]{1,10}", fullmatch=True),
                                               maybe_ref(hostile_text), max_size=3))
    for key, strategy in {"allow_insecure_http": maybe_ref(st.booleans()), "test_delivery": st.booleans(),
                          "description": maybe_ref(hostile_text)}.items():
        if draw(st.booleans()):
            hook[key] = draw(strategy)
    return hook


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    secret_names = draw(st.lists(names, min_size=1, max_size=4, unique=True))
    doc: dict[str, Any] = {"version": 1, "secrets": [draw(secrets(n)) for n in secret_names]}
    hook_names = draw(st.lists(names, max_size=3, unique=True))
    if hook_names:
        doc["webhooks"] = [draw(webhooks(n, secret_names)) for n in hook_names]
    return doc


hostile_values = st.one_of(
    hostile_text, st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.booleans(), st.none(),
    st.lists(hostile_text, max_size=3), st.dictionaries(hostile_text, hostile_text, max_size=2),
    config_ref(), env_names.map(lambda n: {"env": n}), names,
)


@st.composite
def mutated_documents(draw: st.DrawFn) -> dict[str, Any]:
    doc = draw(documents())
    for _ in range(draw(st.integers(1, 3))):
        containers = _containers(doc)
        path, target = draw(st.sampled_from(containers))
        action = draw(st.sampled_from(["delete", "replace", "add"]))
        if isinstance(target, dict) and target and action in ("delete", "replace"):
            key = draw(st.sampled_from(sorted(target)))
            if action == "delete":
                del target[key]
            else:
                target[key] = draw(hostile_values)
        elif isinstance(target, dict):
            target[draw(st.one_of(hostile_text.filter(bool), st.sampled_from(["pasword", "Name", "urI"])))] = \
                draw(hostile_values)
        elif isinstance(target, list) and target:
            target[draw(st.integers(0, len(target) - 1))] = draw(hostile_values)
        else:
            target.append(draw(hostile_values))
    return doc


def _containers(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    found = [(path, node)] if isinstance(node, (dict, list)) else []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, child in items:
        found += _containers(child, path + (key,))
    return found


# --------------------------------------------------------------------------- the properties


class _Dumper(yaml.SafeDumper):
    """Text always double-quoted, never folded: PyYAML's plain and single-quoted styles can turn
    a NEL (U+0085) into a space, which would test the dumper rather than the project."""


_Dumper.add_representer(str, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style='"'))


def dump(doc: dict[str, Any]) -> str:
    return yaml.dump(doc, Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=float("inf"))


def as_yaml(doc: dict[str, Any]) -> Loaded:
    """The document written as YAML and read back through the project's safe loader."""
    return load_declarations_text(dump(doc), "cellosign.yaml")


RESOLVED = {
    "url": "https://idp.example.com/oauth2/token", "allow_insecure_http": "true", "grant_type": "password",
    "scope": "read", "username": "svc-user", "client_id": GUID, "description": "from config",
    "request_format": "json", "test_delivery": "true", "connect": "5", "read": "10",
}


def lookup_for(doc: dict[str, Any]) -> tuple[dict[str, tuple[Any, bool]], dict[str, str], list[str]] | None:
    """Config and environment values valid for the fields that refer to them; None when one key serves
    two different fields (then no single value fits both)."""
    config: dict[str, tuple[Any, bool]] = {f"cellosign-iac:{FINGERPRINT_KEY}": ("k" * 64, True)}
    env: dict[str, str] = {}
    secret_values: list[str] = []
    for path, node in _containers(doc):
        if not isinstance(node, dict):
            continue
        field = str(path[-1]) if path else ""
        secret = field in ("password", "client_secret")
        value = f"CANARY-prop-{len(secret_values)}-{field}" if secret else RESOLVED.get(field, "v")
        if "config" in node and isinstance(node.get("config"), str):
            key = f"cellosign-iac:{node['config']}"
            if key in config and config[key] != (value, secret):
                return None
            config[key] = (value, secret)
        elif "env" in node and isinstance(node.get("env"), str):
            if node["env"] in env and env[node["env"]] != value:
                return None
            env[node["env"]] = value
        else:
            continue
        if secret:
            secret_values.append(value)
    return config, env, secret_values


def check_valid_renders(doc: dict[str, Any], problems: list[Any]) -> list[str]:
    """The property for one document; returns leaks (secret values where they must not be)."""
    if problems:
        for p in problems:
            assert p.path and p.line, f"a problem names no field: {p}"  # the path ends with the field
            assert p.message.isprintable(), f"raw control character in a message: {p.message!r}"
        listed: list[Any] = doc["secrets"] if isinstance(doc.get("secrets"), list) else []
        literal = [v for s in listed if isinstance(s, dict)
                   for f in ("password", "client_secret") if isinstance(v := s.get(f), str) and len(v) >= 4]
        return [f"message shows a literal secret ({p.path})" for p in problems for v in literal if v in p.message]
    resolved = lookup_for(doc)
    if resolved is None:
        return []
    config, env, secret_values = resolved
    with tempfile.TemporaryDirectory() as folder, mock.patch.dict(os.environ, env):
        path = Path(folder) / "cellosign.yaml"
        path.write_text(dump(doc), encoding="utf-8")
        desired = resolve_desired(path, mapping_lookup(config), "prop")
    full = render(desired.model(redacted=False), redacted=False)
    red = render(desired.model(redacted=True), redacted=True)
    for text in (full, red):
        parsed = yaml.safe_load(text)
        assert not list(CONFIG_SCHEMA.iter_errors(parsed))
        assert sorted(s["name"] for s in parsed["secrets"]) == sorted(s["name"] for s in doc["secrets"])
        assert sorted(w["name"] for w in parsed["webhooks"]) == sorted(w["name"] for w in doc.get("webhooks") or [])
        by_name = {s["name"]: s for s in parsed["secrets"]}
        for decl in doc["secrets"]:
            if isinstance(decl.get("description"), str):
                assert by_name[decl["name"]]["description"] == decl["description"]
    return [f"secret value in the redacted copy: {v}" for v in secret_values if v in red]


def test_property_every_valid_declaration_renders_a_valid_configuration(record_property: Any) -> None:
    tried, leaked = [0], []

    @SETTINGS
    @given(documents())
    def check(doc: dict[str, Any]) -> None:
        tried[0] += 1
        problems = validate_document(as_yaml(doc))
        leaked.extend(check_valid_renders(doc, problems))

    check()
    record_property("cases", tried[0])
    record_property("leaked", leaked)
    assert not leaked


def test_property_every_invalid_declaration_gets_errors_naming_a_field(record_property: Any) -> None:
    tried, leaked = [0], []

    @SETTINGS
    @given(mutated_documents())
    def check(doc: dict[str, Any]) -> None:
        tried[0] += 1
        problems = validate_document(as_yaml(doc))
        leaked.extend(check_valid_renders(doc, problems))

    check()
    record_property("cases", tried[0])
    record_property("leaked", leaked)
    assert not leaked


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | hostile_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(hostile_text, children, max_size=4),
    max_leaves=25,
)


def test_property_any_data_is_judged_without_crashing(record_property: Any) -> None:
    tried = [0]

    @SETTINGS
    @given(st.dictionaries(st.sampled_from(["version", "secrets", "webhooks", "x"]) | hostile_text, json_like,
                           max_size=4))
    def check(data: dict[str, Any]) -> None:
        tried[0] += 1
        problems = validate_document(Loaded(data=data, positions={(): (1, 1)}, file="d.yaml"))
        if data:
            assert problems, "anything that is not a declarations file must be refused"
        for p in problems:
            assert p.path or p.message.startswith("the file is empty"), p
            assert p.message.isprintable(), repr(p.message)

    check()
    record_property("cases", tried[0])
