"""Hostile declarations, end to end through `validate`, resolution and rendering:
each gets a clear error (file, line, field) or is handled safely, within bounded
time and memory. tests/test_loader.py covers the loader's own rules one by one;
here every case goes through the command an operator runs."""

from __future__ import annotations

import copy
import json
import resource
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import yaml

from resources import cmd_validate
from resources.desired import FINGERPRINT_KEY, resolve_desired
from resources.engine import PROJECT_ROOT
from resources.loader import MAX_BYTES
from resources.render import render
from resources.resolve import mapping_lookup
from resources.validation import MAX_PROBLEMS

GOOD_SECRET = """\
  - name: crm-api
    convention: general
    url: https://idp.example.com/oauth2/token
    grant_type: password
    scope: [read]
    username: svc-crm
    password: {config: crmPassword}
"""
HEAD = "version: 1\nsecrets:\n"
TIME_BOUND_S = 2.0
MEMORY_BOUND_MB = 64.0


def write(tmp_path: Path, content: str | bytes) -> Path:
    path = tmp_path / "cellosign.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def check(path: Path) -> tuple[list[Any], int, float, float]:
    """validate's verdict on one file: (problems, exit code, seconds, peak MiB traced)."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        problems, code = cmd_validate.check_file(str(path))
    finally:
        took = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return problems, code, took, peak


def alias_bomb(levels: int = 9) -> str:
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    letters = "abcdefghijklmnopqrstuvwxyz"
    for n in range(1, levels + 1):
        lines.append(f"{letters[n]}: &{letters[n]} [{', '.join([f'*{letters[n - 1]}'] * 9)}]")
    return "\n".join(lines) + "\n"


# name: (content, exit code, words in the message, line of the first problem or None)
YAML_CASES: dict[str, tuple[str | bytes, int, str, int | None]] = {
    "alias-bomb": (alias_bomb(), 1, "anchors", 1),
    "alias-into-secret": (HEAD + GOOD_SECRET.replace("username: svc-crm", "username: &u svc-crm")
                          + GOOD_SECRET.replace("crm-api", "other").replace("username: svc-crm", "username: *u"),
                          1, "anchors", 8),
    "duplicate-password-key": (HEAD + GOOD_SECRET + "    password: {env: OTHER}\n", 1,
                               "duplicate key 'password': first at line 9", 10),
    "duplicate-top-level-key": ("version: 1\nsecrets: []\nsecrets: []\n", 1, "duplicate key 'secrets'", 3),
    "merge-key": (HEAD + GOOD_SECRET + "    <<: {scope: [admin]}\n", 1, "merge keys", 10),
    "non-string-key": (HEAD + GOOD_SECRET + "    1: x\n", 1, "not text", 10),
    "null-key": (HEAD + GOOD_SECRET + "    null: x\n", 1, "not text", 10),
    "bool-key": (HEAD + GOOD_SECRET + "    true: x\n", 1, "not text", 10),
    "list-key": (HEAD + GOOD_SECRET + "    ? [a]\n    : x\n", 1, "plain text", 10),
    "python-object-tag": (HEAD + GOOD_SECRET.replace("svc-crm", "!!python/object/apply:os.system ['touch PWNED']"),
                          1, "tag", 8),
    "custom-tag": (HEAD + GOOD_SECRET.replace("svc-crm", "!secret svc"), 1, "tag", 8),
    "tabs-indentation": (HEAD + GOOD_SECRET.replace("    grant_type", "\tgrant_type"), 1, "tab character", 6),
    "deep-nesting": ("a: " + "[" * 40 + "]" * 40 + "\n", 1, "deeper than", 1),
    "very-deep-nesting": ("a: " + "[" * 200_000 + "]" * 200_000 + "\n", 1, "nesting", 1),
    "second-document": (HEAD + GOOD_SECRET + "---\nversion: 2\n", 1, "one YAML document", 10),
    "latin-1-byte": ((HEAD + GOOD_SECRET.replace("svc-crm", "caf\xe9")).encode("latin-1"), 2, "not valid UTF-8", 8),
    "utf-16": ((HEAD + GOOD_SECRET).encode("utf-16"), 2, "not valid UTF-8", 1),
    "overlong-utf8": (HEAD.encode() + b"  - name: \xc0\xaf\n", 2, "not valid UTF-8", 3),
    "encoded-surrogate": (HEAD.encode() + b"  - name: \xed\xa0\x80\n", 2, "not valid UTF-8", 3),
    "raw-nul-byte": (HEAD.encode() + b"  - name: a\x00b\n", 1, "U+0000", 3),
    "raw-escape-byte": (HEAD.encode() + b"  - name: a\x1b[2Jb\n", 1, "U+001B", 3),
    "over-one-mib": ("# " + "x" * MAX_BYTES + "\n" + HEAD + GOOD_SECRET, 2, "larger than 1024 KiB", None),
}


@pytest.mark.parametrize("name", list(YAML_CASES))
def test_hostile_yaml_gets_a_clear_error_in_bounded_time_and_memory(name: str, tmp_path: Path,
                                                                    record_property: Any) -> None:
    content, want_code, words, line = YAML_CASES[name]
    path = write(tmp_path, content)
    problems, code, took, peak = check(path)
    record_property("lost", [f"{took:.1f} s / {peak:.0f} MiB"] if took > TIME_BOUND_S or peak > MEMORY_BOUND_MB else [])
    assert code == want_code, problems
    assert problems and words in problems[0].message, problems
    assert problems[0].line == line, problems[0]
    assert problems[0].message.isprintable()
    assert took < TIME_BOUND_S and peak < MEMORY_BOUND_MB, f"{took:.2f} s, {peak:.1f} MiB"
    assert not (tmp_path / "PWNED").exists() and not Path("PWNED").exists()


def test_pyyaml_alone_would_keep_the_last_duplicate_silently() -> None:
    # Why duplicate keys are an error: a reviewer sees the first password reference, PyYAML uses the last.
    text = HEAD + GOOD_SECRET + "    password: {env: ATTACKER}\n"
    assert yaml.safe_load(text)["secrets"][0]["password"] == {"env": "ATTACKER"}


def huge(kind: str) -> str:
    room = MAX_BYTES - 64
    if kind == "many-empty-secrets":
        return HEAD + "- {}\n" * (room // 5)
    if kind == "many-bad-secrets":
        return HEAD + "- {name: a, convention: general}\n" * (room // 34)
    if kind == "many-duplicate-names":
        return HEAD + (GOOD_SECRET * (room // len(GOOD_SECRET)))
    if kind == "flat-list":
        return "version: 1\nsecrets: [" + "1," * (room // 2) + "1]\n"
    if kind == "long-string":
        return "version: 1\nsecrets: []\nx: '" + "y" * room + "'\n"
    raise ValueError(kind)


HUGE_TIME_S = 15.0
HUGE_RSS_MB = 400.0
MEASURE = textwrap.dedent("""
    import json, resource, sys, time
    from resources import cmd_validate
    started = time.perf_counter()
    problems, code = cmd_validate.check_file(sys.argv[1])
    print(json.dumps({"code": code, "problems": len(problems), "last": problems[-1].message,
                      "seconds": time.perf_counter() - started,
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""")


@pytest.mark.parametrize("kind", ["many-empty-secrets", "many-bad-secrets", "many-duplicate-names", "flat-list",
                                  "long-string"])
def test_huge_file_within_the_size_limit_is_judged_in_bounded_time_and_memory(kind: str, tmp_path: Path,
                                                                               record_property: Any) -> None:
    path = write(tmp_path, huge(kind))
    assert path.stat().st_size <= MAX_BYTES
    # A process of its own: its peak resident memory is this check's alone.
    proc = subprocess.run([sys.executable, "-c", MEASURE, str(path)], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout)
    over = got["seconds"] > HUGE_TIME_S or got["rss_mb"] > HUGE_RSS_MB
    record_property("lost", [f"{kind}: {got['seconds']:.1f} s / {got['rss_mb']:.0f} MB"] if over else [])
    assert got["code"] == 1
    assert got["problems"] <= MAX_PROBLEMS + 1, got
    assert got["seconds"] < HUGE_TIME_S and got["rss_mb"] < HUGE_RSS_MB, got


# --------------------------------------------------------------------------- hostile values

LOOKALIKES = {
    "cyrillic-a": "crm-\u0430pi",
    "cyrillic-c": "\u0441rm-api",
    "greek-omicron": "crm-api-\u03bf",
    "fullwidth": "\uff43rm-api",
    "zero-width-space": "crm\u200b-api",
    "soft-hyphen": "crm\u00ad-api",
    "nbsp": "crm\u00a0api",
    "non-ascii-hyphen": "crm\u2010api",
    "trailing-newline": "crm-api\n",
    "combining-accent": "crm-ap\u0069\u0301",
}


def secret_doc(name: str = "crm-api", **fields: Any) -> str:
    decl = {"name": name, "convention": "general", "url": "https://idp.example.com/oauth2/token",
            "grant_type": "password", "scope": ["read"], "username": "svc-crm",
            "password": {"config": "crmPassword"}, **fields}
    hook = {"name": "signed", "url": "https://crm.example.com/hooks", "events": ["document.signed"],
            "secret": "crm-api"}
    return yaml.safe_dump({"version": 1, "secrets": [decl], "webhooks": [hook]}, allow_unicode=True,
                          default_style='"', width=10**6)


def lookalike_docs(value: str) -> dict[str, tuple[str, str]]:
    """Where a look-alike can hide: (document, the field the error must name)."""
    out: dict[str, tuple[str, str]] = {}

    def variant(where: str, field: str, change: Any) -> None:
        doc = yaml.safe_load(secret_doc())
        change(doc)
        out[where] = (yaml.safe_dump(doc, allow_unicode=True, default_style='"', width=10**6), field)

    variant("secret-name", "secrets[0].name", lambda d: d["secrets"][0].update(name=value))
    variant("webhook-name", "webhooks[0].name", lambda d: d["webhooks"][0].update(name=value))
    variant("webhook-secret-reference", "webhooks[0].secret", lambda d: d["webhooks"][0].update(secret=value))
    variant("config-key", "secrets[0].password.config",
            lambda d: d["secrets"][0].update(password={"config": value.replace("-", "")}))
    variant("header-name", "webhooks[0].headers", lambda d: d["webhooks"][0].update(headers={value: "x"}))
    variant("event-name", "webhooks[0].events[0]", lambda d: d["webhooks"][0].update(events=[value]))
    return out


def test_the_base_document_is_valid(tmp_path: Path) -> None:
    assert check(write(tmp_path, secret_doc()))[1] == 0


@pytest.mark.parametrize("kind", list(LOOKALIKES))
def test_lookalike_unicode_in_any_name_is_an_error_naming_the_field(kind: str, tmp_path: Path,
                                                                    record_property: Any) -> None:
    cases = lookalike_docs(LOOKALIKES[kind])
    for where, (text, field) in cases.items():
        problems, code, _, _ = check(write(tmp_path, text))
        assert code == 1, f"{kind} in {where} was accepted"
        assert any(p.path.startswith(field) for p in problems), (where, problems)
        assert all(p.message.isprintable() for p in problems), problems
    record_property("cases", len(cases))


def test_names_differing_only_by_lookalikes_never_become_two_resources(tmp_path: Path) -> None:
    doc = yaml.safe_load(secret_doc())
    doc["secrets"].append({**copy.deepcopy(doc["secrets"][0]), "name": LOOKALIKES["cyrillic-a"]})
    problems, code, _, _ = check(write(tmp_path, yaml.safe_dump(doc, allow_unicode=True)))
    assert code == 1 and [p.path for p in problems] == ["secrets[1].name"], problems


CONTROL_VALUES = ["line\nbreak", "cr\r\nInjected-Header: 1", "esc\x1b[2J\x1b]0;title\x07", "nul\x00",
                  "rtl\u202eoverride", "bom\ufeff", "del\x7f", "nel\x85", "ls\u2028ps\u2029"]


@pytest.mark.parametrize("value", CONTROL_VALUES, ids=lambda v: v.split("\\")[0][:6])
def test_control_characters_in_free_text_render_escaped_and_round_trip(value: str, tmp_path: Path) -> None:
    text = secret_doc(description=value, username=f"svc{value}", grant_type=f"pw{value}")
    path = write(tmp_path, text)
    assert check(path)[1] == 0
    desired = resolve_desired(path, mapping_lookup({"cellosign-iac:crmPassword": ("CANARY-ctl-pw", True),
                                                    f"cellosign-iac:{FINGERPRINT_KEY}": ("k" * 64, True)}), "t")
    for redacted in (False, True):
        rendered = render(desired.model(redacted=redacted), redacted=redacted)
        assert all(ch == "\n" or ch.isprintable() for ch in rendered), "a raw control character was written"
        entry = yaml.safe_load(rendered)["secrets"][0]
        assert entry["description"] == value
        assert entry["form"]["User name"] == f"svc{value}" and entry["form"]["Grant type"] == f"pw{value}"
        assert ("CANARY-ctl-pw" in rendered) is not redacted


@pytest.mark.parametrize("value", ["a\r\nInjected: 1", "a\nb", "a\x00", "a\x1b[31m"])
def test_control_characters_in_a_header_value_are_an_error_naming_the_header(value: str, tmp_path: Path) -> None:
    doc = yaml.safe_load(secret_doc())
    doc["webhooks"][0]["headers"] = {"X-Tenant": value}
    problems, code, _, _ = check(write(tmp_path, yaml.safe_dump(doc, allow_unicode=True)))
    assert code == 1
    assert [p.path for p in problems] == ['webhooks[0].headers.X-Tenant'], problems
    assert "line break or a control character" in problems[0].message


def test_control_characters_in_keys_never_reach_the_terminal(tmp_path: Path) -> None:
    doc = yaml.safe_load(secret_doc())
    doc["secrets"][0]["descr\x1b[2J\niption"] = "x"
    doc["webhooks"][0]["headers"] = {"X-T\x1b]0;pwned\x07": "v"}
    proc = subprocess.run([sys.executable, "-m", "resources.cli", "validate",
                           str(write(tmp_path, yaml.safe_dump(doc, allow_unicode=True)))],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "\x1b" not in proc.stdout and "\x07" not in proc.stdout
    assert len(proc.stdout.strip().splitlines()) == 3  # two problems and the summary: no forged line
    assert "did you mean 'description'" in proc.stdout


JINJA = ["{{ 7*7 }}", "{% for x in range(10**9) %}x{% endfor %}", "{{ ''.__class__.__mro__[1].__subclasses__() }}",
         "{# comment #}", "{{ config }}", "{%- raw %}{{ x }}{% endraw -%}", "${HOME} $(id) `id`"]


@pytest.mark.parametrize("value", JINJA)
def test_jinja_syntax_in_values_is_data_never_a_template(value: str, tmp_path: Path) -> None:
    doc = yaml.safe_load(secret_doc(description=value, username=value, grant_type=value))
    doc["webhooks"][0]["headers"] = {"X-Tenant": value}
    doc["webhooks"][0]["description"] = value
    path = write(tmp_path, yaml.safe_dump(doc, allow_unicode=True))
    assert check(path)[1] == 0
    started = time.perf_counter()
    desired = resolve_desired(path, mapping_lookup({"cellosign-iac:crmPassword": (value, True),
                                                    f"cellosign-iac:{FINGERPRINT_KEY}": ("k" * 64, True)}), "t")
    rendered = yaml.safe_load(render(desired.model(redacted=False), redacted=False))
    assert time.perf_counter() - started < TIME_BOUND_S
    secret, hook = rendered["secrets"][0], rendered["webhooks"][0]
    assert secret["description"] == value and secret["form"]["User name"] == value
    assert secret["form"]["Password"] == value
    assert hook["headers"] == {"X-Tenant": value} and hook["description"] == value


def test_secret_values_with_hostile_text_never_show_in_messages(tmp_path: Path) -> None:
    hostile = "CANARY-\x1b[2J{{7*7}}\r\n'\"<script>"
    doc = yaml.safe_load(secret_doc())
    doc["secrets"][0]["password"] = hostile  # a literal secret: refused, never echoed
    problems, code, _, _ = check(write(tmp_path, yaml.safe_dump(doc, allow_unicode=True)))
    assert code == 1 and problems[0].path == "secrets[0].password"
    assert all("CANARY" not in f"{p.message} {p.expected}" for p in problems)


def test_peak_memory_of_validate_process_is_bounded() -> None:
    # The process running these tests: nothing above has grown it without bound.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 < 2048
