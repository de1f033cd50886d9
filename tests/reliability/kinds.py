"""Which tests make up each fault kind of the reliability report.

The suite's own tests (tests/reliability/) and the existing checks it builds on
(loader, token test, shared endpoint cases, render, schemas, the PostgreSQL
lock test) are grouped by fault kind; the first pattern that matches a test id
decides. Tests of those files that match no pattern are not part of the report.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

R = "tests/reliability/"
FAULTS = f"{R}test_reliability_faults.py::"
ENDPOINTS = f"{R}test_reliability_endpoints.py::"
DECLS = f"{R}test_reliability_declarations.py::"
PROPS = f"{R}test_reliability_properties.py::"
TOKENTEST = "tests/test_tokentest.py::"

KINDS: list[tuple[str, list[str]]] = [
    ("partial failure: 3 of 20 token endpoints fail", [f"{FAULTS}test_partial_failure*"]),
    ("interruption: SIGKILL while token tests are in flight, then recover", [
        f"{FAULTS}test_sigkill*", f"{FAULTS}test_recover*"]),
    ("interruption: writer killed mid-write (never a half-written file)", [
        f"{FAULTS}test_review_copy_is_never_half_written*", "tests/test_render.py::test_write_atomically*"]),
    ("concurrency: two ups on one stack (backend lock)", [
        f"{FAULTS}test_second_up*", "tests/test_postgres_backend.py::test_two_runs_on_one_stack*"]),
    ("hostile token endpoint: trickle, endless body, reset, redirect elsewhere", [
        f"{ENDPOINTS}test_token_endpoint*", f"{TOKENTEST}test_redirect*", f"{TOKENTEST}test_large_body*",
        f"{TOKENTEST}test_trickling*", f"{TOKENTEST}test_hanging*", f"{TOKENTEST}test_connection_closed*",
        f"{TOKENTEST}test_credentials_in_url*", f"{TOKENTEST}test_body_at_the_limit*"]),
    ("hostile webhook target: trickle, endless body, reset, redirect elsewhere", [f"{ENDPOINTS}test_webhook*"]),
    ("token endpoint answers (shared cases)", ["tests/test_token_cases.py::*"]),
    ("hostile YAML: aliases, duplicate/merge/odd keys, tags, size, nesting, encoding, tabs", [
        f"{DECLS}test_hostile_yaml*", f"{DECLS}test_pyyaml_alone*", f"{DECLS}test_huge_file*",
        "tests/test_loader.py::*"]),
    ("hostile values: Jinja, control characters, newlines, look-alike Unicode", [
        f"{DECLS}*", "tests/test_render.py::test_template_syntax_in_values*",
        "tests/test_render.py::test_values_round_trip*", "tests/test_render.py::test_output_has_only_visible*",
        "tests/test_render.py::test_template_sandboxed*"]),
    ("secrets echoed back (endpoints, validation messages)", [
        f"{TOKENTEST}test_secret_echoed*", f"{TOKENTEST}test_form_encoded_success*",
        f"{TOKENTEST}test_nested_access_token*", f"{TOKENTEST}test_plain_text_error_snippet*",
        "tests/test_schemas.py::test_no_problem_text_contains_a_secret*",
        "tests/test_schemas.py::test_a_secret_field_value_is_never_shown*",
        "tests/test_schemas.py::test_resolved_secret_must_be_non_empty_text_and_is_never_shown*",
        "tests/test_schemas.py::test_userinfo_in_url_is_not_echoed*"]),
    ("property: every valid declaration renders a valid configuration", [
        f"{PROPS}test_property_every_valid*", "tests/test_render.py::test_property*"]),
    ("property: every invalid declaration gets an error naming a field", [f"{PROPS}*"]),
]


def kind_of(nodeid: str) -> str | None:
    for kind, patterns in KINDS:
        if any(fnmatchcase(nodeid, pattern) for pattern in patterns):
            return kind
    return None


def files() -> list[str]:
    """Every test file a pattern names (existing or not: the caller keeps those that exist)."""
    seen: dict[str, None] = {}
    for _kind, patterns in KINDS:
        for pattern in patterns:
            seen.setdefault(pattern.split("::", 1)[0])
    return list(seen)
