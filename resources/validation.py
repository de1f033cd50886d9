"""The one validator of declarations: used by ``validate``, the program and the provider's check.

Two layers, always run together:

1. the JSON Schemas in ``schemas/`` (the same files editors and check-jsonschema use),
   whose errors are translated into messages for people: what is wrong, where,
   and what would be valid;
2. rules JSON Schema cannot say or cannot say precisely: the URL rules (with a
   precise message per rule), unique names, webhook → secret references,
   header names differing only in case.

No message ever contains the value of a secret field (``password``,
``client_secret``), not even a literal one written by mistake; values under a
secret field and header values are never echoed, and literal secret values
found in the input are scrubbed from every message as a second guard.

Schemas are compiled once per process (thread-safe) and never fetched: every
``$ref`` resolves inside the local files.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
import sys
import threading
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema.exceptions
import referencing.exceptions
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from .conventions import CONVENTIONS, SECRET_FIELDS
from .loader import Loaded, Path_, Position

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
SCHEMA_BASE = "https://schemas.cellosign-iac.dev/v1/"
SCHEMA_FILES = ("common", "secret-general", "secret-msgraph", "webhook", "declarations")
EMBEDDED = SCHEMA_FILES[:-1]  # copied into declarations.schema.json's $defs

DECLARATIONS_REF = f"{SCHEMA_BASE}declarations.schema.json"
SECRET_REF = f"{SCHEMA_BASE}declarations.schema.json#/$defs/secret"
WEBHOOK_REF = f"{SCHEMA_BASE}webhook.schema.json"

GUID_EXAMPLE = "8e17edb9-0f05-46cc-8741-a937e351e631"
URL_EXPECTED = (
    "an https:// URL with a host, without user:password@ or #fragment "
    "(http:// only for 127.0.0.0/8, [::1] or localhost with allow_insecure_http: true)"
)
MAX_PROBLEMS = 100  # listed per file; more are summed up in one line

LITERAL_SECRET_MESSAGE = (
    "{field} must not be written in this file (found a literal value): store it encrypted with "
    "`pulumi config set --secret KEY` and write `{field}: {{config: KEY}}` "
    "(or read it from the environment with `{field}: {{env: NAME}}`)"
)


@dataclass(frozen=True)
class Problem:
    file: str | None
    line: int | None
    column: int | None
    path: str  # like "secrets[1].url"
    field: str  # the field concerned, "" for the document itself
    message: str
    expected: str | None


# --------------------------------------------------------------------------- schemas (compiled once)

_lock = threading.Lock()
_registry: Registry[Any] | None = None
_validators: dict[str, Draft202012Validator] = {}


def load_schema(name: str) -> dict[str, Any]:
    """One schema file of ``schemas/`` by its base name (``common``, ``webhook``, …)."""
    with (SCHEMA_DIR / f"{name}.schema.json").open(encoding="utf-8") as fh:
        schema: dict[str, Any] = json.load(fh)
    return schema


def _without_dialect(schema: Any) -> Any:
    """The schema without its "$schema" members (also those of embedded copies)."""
    if isinstance(schema, dict):
        return {k: _without_dialect(v) for k, v in schema.items() if k != "$schema"}
    if isinstance(schema, list):
        return [_without_dialect(v) for v in schema]
    return schema


def _get_registry() -> Registry[Any]:
    global _registry
    with _lock:
        if _registry is None:
            # Without "$schema" (the dialect is given here), a $ref keeps our validator class
            # (_Validator) instead of switching to jsonschema's stock one for that dialect.
            resources = [DRAFT202012.create_resource(_without_dialect(load_schema(n))) for n in SCHEMA_FILES]
            registry: Registry[Any] = Registry().with_resources((r.id() or "", r) for r in resources)
            _registry = registry.crawl()
        return _registry


def _ecma_anchors(pattern: str) -> str:
    """``pattern`` with every ``$`` anchor written ``\\Z``.

    In JSON Schema (ECMA-262) ``$`` matches only at the end of the text; in Python it
    also matches before a final newline, so ``name: "crm-api\\n"`` would pass
    ``^[a-z][a-z0-9-]{0,62}$``. Escapes and ``$`` inside ``[...]`` are left alone.
    """
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
        elif ch == "$":
            ch = "\\Z"
        out.append(ch)
        i += 1
    return "".join(out)


_patterns: dict[str, re.Pattern[str]] = {}


def _pattern_keyword(validator: Any, pattern: str, instance: Any, _schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string"):
        compiled = _patterns.get(pattern)
        if compiled is None:
            compiled = _patterns.setdefault(pattern, re.compile(_ecma_anchors(pattern)))
        if not compiled.search(instance):
            yield ValidationError(f"{instance!r} does not match {pattern!r}")


# Every $ref resolved once per process. jsonschema looks a $ref up again each time it
# meets one (URL join, registry lookup, JSON pointer walk): half of all validation
# time, paid for every secret by `validate`, the program and the provider's check.
# What a $ref points to depends only on the base URI it is written under (these
# schemas have no $dynamicRef), so (base URI, $ref) is the key; the registry is
# built once and never changes.
_resolved_refs: dict[tuple[str, str], Any] = {}


def _ref_keyword(validator: Any, ref: str, instance: Any, _schema: Any) -> Iterator[ValidationError]:
    resolver = validator._resolver
    key = (resolver._base_uri, ref)
    resolved = _resolved_refs.get(key)
    if resolved is None:
        try:
            resolved = resolver.lookup(ref)
        except referencing.exceptions.Unresolvable as err:
            raise jsonschema.exceptions._WrappedReferencingError(err) from err
        resolved = _resolved_refs.setdefault(key, resolved)
    yield from validator.descend(instance, resolved.contents, resolver=resolved.resolver)


_Validator = validators.extend(Draft202012Validator, {"pattern": _pattern_keyword, "$ref": _ref_keyword})


def _validator(ref: str) -> Draft202012Validator:
    registry = _get_registry()
    with _lock:
        validator = _validators.get(ref)
        if validator is None:
            validator = _Validator({"$ref": ref}, registry=registry)
            _validators[ref] = validator
        return validator


def _title(schema: Any) -> str | None:
    """The title of a schema, following $ref (all refs are relative to SCHEMA_BASE)."""
    for _ in range(10):
        if not isinstance(schema, Mapping):
            return None
        if isinstance(schema.get("title"), str):
            return str(schema["title"])
        ref = schema.get("$ref")
        if not isinstance(ref, str):
            return None
        schema = _get_registry().resolver(base_uri=SCHEMA_BASE).lookup(ref).contents
    return None


def bundled_declarations_schema() -> dict[str, Any]:
    """declarations.schema.json with the current sibling schemas embedded in its $defs."""
    schema = load_schema("declarations")
    for name in EMBEDDED:
        schema["$defs"][f"{name}.schema.json"] = load_schema(name)
    return schema


# --------------------------------------------------------------------------- URL rules


def url_problems(url: str, allow_insecure_http: bool | None) -> list[str]:
    """What is wrong with a literal url; allow_insecure_http None means "not known yet"."""
    if re.search(r"\s", url):
        return ["URL contains a space or a control character"]
    scheme_match = re.match(r"([A-Za-z][A-Za-z0-9+.-]*):", url)
    if not scheme_match:
        return ["not an absolute URL: expected https://HOST/PATH"]
    scheme = scheme_match.group(1)
    if scheme.lower() not in ("https", "http"):
        return [f"URL scheme '{scheme}' is not allowed: use https://"]
    if scheme != scheme.lower():
        return [f"write the URL scheme in lowercase ('{scheme.lower()}://')"]
    rest = url[len(scheme) + 1 :]
    if not rest.startswith("//"):
        return [f"expected '{scheme}://' followed by a host"]
    problems: list[str] = []
    authority = re.split(r"[/?#]", rest[2:], maxsplit=1)[0]
    if "#" in url:
        problems.append("URL must not have a fragment ('#…'): Cellosign POSTs to the URL without it")
    if "@" in authority:
        # Never echo the URL here: what is before '@' may be a password.
        problems.append(
            "URL must not contain a user name or password ('user:password@'): "
            "put credentials in the secret's own fields"
        )
        return problems
    if authority.startswith("["):
        host, _, port_part = authority[1:].partition("]")
        port_part = port_part[1:] if port_part.startswith(":") else port_part
        if not re.fullmatch(r"[0-9A-Fa-f:.]+", host) or _ip(host) is None:
            problems.append("the host in brackets is not a valid IPv6 address")
            return problems
        display_host = f"[{host}]"
    else:
        host, _, port_part = authority.partition(":")
        display_host = host
        if not host:
            problems.append("URL has no host")
            return problems
        if re.search(r"[\[\]]", host):
            problems.append("the host contains '[' or ']'")
            return problems
    if ":" in authority.split("]")[-1]:
        if not re.fullmatch(r"[0-9]{1,5}", port_part) or int(port_part) > 65535:
            problems.append("the port after ':' must be a number from 1 to 65535")
    if scheme == "http":
        if not _is_loopback(host, bracketed=authority.startswith("[")):
            problems.append(
                f"http:// is only allowed for a loopback host (127.0.0.0/8, [::1], localhost); "
                f"use https:// for '{display_host}'"
            )
        elif allow_insecure_http is False:
            problems.append("http:// needs allow_insecure_http: true (even for a loopback host); or use https://")
    return problems


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _is_loopback(host: str, *, bracketed: bool) -> bool:
    if bracketed:
        return host == "::1"
    if host == "localhost":
        return True
    ip = _ip(host)
    return isinstance(ip, ipaddress.IPv4Address) and ip in ipaddress.IPv4Network("127.0.0.0/8")


# --------------------------------------------------------------------------- problems before placement


@dataclass(frozen=True)
class _Raw:
    path: Path_
    field: str
    message: str
    expected: str | None
    at_key: bool = False  # point at the key rather than the value
    suggests: str | None = None  # an unknown field that is probably this known one
    from_url_schema: bool = False  # a schema error about a literal url (code rules say it better)


def _field_of(path: Path_) -> str:
    for part in reversed(path):
        if isinstance(part, str):
            return part
    return ""


def format_path(path: Path_, prefix: str = "") -> str:
    out = prefix
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out


def _redacted(path: Path_) -> bool:
    """Values at or under these paths are never shown (secrets, header values)."""
    if any(part in SECRET_FIELDS for part in path):
        return True
    return len(path) >= 2 and path[-2] == "headers"


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if value is None:
        return "nothing (null)"
    return "text"


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = value if len(value) <= 80 else value[:77] + "..."
        return repr(text)
    if isinstance(value, (int, float)):
        return str(value)
    return _kind(value)


def _shown(value: Any, path: Path_) -> str:
    return "the value" if _redacted(path) else _show(value)


def _got(value: Any, path: Path_) -> str:
    if _redacted(path) or isinstance(value, (dict, list)) or value is None:
        return _kind(value)
    return f"{_kind(value)} {_show(value)}"


_TYPE_WORDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "text",
    "boolean": "true or false",
    "number": "a number",
    "integer": "a whole number",
    "null": "null",
}


def _close(word: str, choices: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


# --------------------------------------------------------------------------- schema errors → _Raw


def _schema_raws(validator: Draft202012Validator, instance: Any, limit: int | None = None) -> list[_Raw]:
    out: list[_Raw] = []
    for error in validator.iter_errors(instance):
        out.extend(_translate(error, None))
        if limit is not None and len(out) > limit:
            break  # errors come lazily: a huge file full of mistakes costs no more than this
    return out


def _translate(e: ValidationError, title_hint: str | None) -> list[_Raw]:
    path: Path_ = tuple(e.absolute_path)
    schema = e.schema if isinstance(e.schema, Mapping) else {}
    title = _title(schema) or title_hint
    kw = e.validator
    instance = e.instance
    is_url = bool(path) and path[-1] == "url" and isinstance(instance, str)

    if "propertyNames" in e.relative_schema_path:
        return [_header_name(path, str(instance), kw)]

    if kw in ("anyOf", "oneOf"):
        branch = _pick_branch(e)
        if branch is not None:
            return [raw for sub in branch for raw in _translate(sub, title)]
        if _redacted(path) and path[-1] in SECRET_FIELDS and not isinstance(instance, dict):
            return [_Raw(path, str(path[-1]), LITERAL_SECRET_MESSAGE.format(field=path[-1]), title)]
        return [
            _Raw(
                path,
                _field_of(path),
                f"expected {title or 'a valid value'}, got {_got(instance, path)}",
                title,
                from_url_schema=is_url,
            )
        ]

    if kw == "required":
        raws = []
        properties = schema.get("properties", {})
        for name in e.validator_value:
            if isinstance(instance, dict) and name not in instance:
                raws.append(
                    _Raw(path + (name,), name, f"missing required field '{name}'", _title(properties.get(name)))
                )
        return raws

    if kw == "additionalProperties" and isinstance(instance, dict):
        known = list(schema.get("properties", {}))
        raws = []
        for name in instance:
            if name in known:
                continue
            message = f"unknown field '{name}'"
            guess = _close(name, known)
            owner = _other_convention_owner(name, schema)
            if owner is not None:
                message += f" for convention {schema.get('properties', {}).get('convention', {}).get('const')}"
                message += f": it belongs to convention {owner}"
            elif guess is not None:
                message += f" — did you mean '{guess}'?"
            expected = f"'{guess}'" if guess else "one of: " + ", ".join(known)
            raws.append(_Raw(path + (name,), name, message, expected, at_key=True, suggests=guess))
        return raws

    field = _field_of(path)
    if kw == "type":
        expected = title or " or ".join(_TYPE_WORDS.get(t, t) for t in _as_list(e.validator_value))
        if not path:
            expected = "a mapping with `version: 1` and `secrets:`"
        return [_Raw(path, field, f"expected {expected}, got {_got(instance, path)}", expected, from_url_schema=is_url)]
    if kw == "const":
        if path == ("version",):
            return [_Raw(path, field, f"version must be 1, got {_got(instance, path)}", "1")]
        return [_Raw(path, field, f"must be {json.dumps(e.validator_value)}, got {_got(instance, path)}", title)]
    if kw == "enum":
        choices = [str(c) for c in e.validator_value]
        if isinstance(instance, dict) and field == "convention":
            message = f"convention must be written literally ({' or '.join(choices)}), not read from the config"
        elif isinstance(instance, str):
            message = f"{_shown(instance, path)} is not one of: {', '.join(choices)}"
            guess = _close(instance, choices)
            if guess:
                message += f" — did you mean '{guess}'?"
        else:
            message = f"expected one of: {', '.join(choices)}, got {_got(instance, path)}"
        return [_Raw(path, field, message, title or " or ".join(choices))]
    if kw == "pattern":
        return [_pattern(path, field, instance, str(e.validator_value), title, is_url)]
    if kw == "minItems":
        return [_Raw(path, field, f"must not be an empty list: expected {title}", title)]
    if kw == "uniqueItems" and isinstance(instance, list):
        raws = []
        for index, item in enumerate(instance):
            if item in instance[:index]:
                raws.append(_Raw(path + (index,), field, f"{_shown(item, path)} is listed more than once", title))
        return raws
    if kw in ("exclusiveMinimum", "minimum"):
        bound = "above" if kw == "exclusiveMinimum" else "at least"
        return [_Raw(path, field, f"{_shown(instance, path)} is too small: must be {bound} {e.validator_value}", title)]
    if kw in ("maximum", "exclusiveMaximum"):
        bound = "at most" if kw == "maximum" else "below"
        return [_Raw(path, field, f"{_shown(instance, path)} is too large: must be {bound} {e.validator_value}", title)]
    detail = "is not valid" if _redacted(path) else e.message
    return [_Raw(path, field, f"{detail}: expected {title}" if title else detail, title, from_url_schema=is_url)]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _pick_branch(e: ValidationError) -> list[ValidationError] | None:
    """The anyOf/oneOf branch the author evidently meant, or None when it is not clear.

    A branch whose type does not fit the value is out (a literal vs a reference);
    of the rest, the one with the fewest problems at the value itself wins, a
    misspelt key that is close to one of a branch's fields counting for it.
    """
    branches: dict[Any, list[ValidationError]] = {}
    for sub in e.context or []:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    scored: list[tuple[tuple[int, int, int], list[ValidationError]]] = []
    for errors in branches.values():
        at_value = [s for s in errors if not s.relative_path]
        if any(s.validator == "type" for s in at_value):
            continue
        close = 0
        for s in at_value:
            if s.validator == "additionalProperties" and isinstance(s.instance, dict):
                known = list(s.schema.get("properties", {})) if isinstance(s.schema, Mapping) else []
                close += sum(1 for k in s.instance if k not in known and _close(k, known))
        scored.append(((len(at_value), -close, len(errors)), errors))
    if not scored:
        return None
    scored.sort(key=lambda item: item[0])
    if len(scored) > 1 and scored[0][0] == scored[1][0]:
        return None
    return scored[0][1]


def _other_convention_owner(name: str, schema: Mapping[str, Any]) -> str | None:
    own = schema.get("properties", {}).get("convention", {})
    if not isinstance(own, Mapping) or "const" not in own:
        return None
    for convention in CONVENTIONS.values():
        if convention.key != own["const"] and name in (convention.identity_field, convention.secret_field):
            return convention.key
    return None


def _pattern(path: Path_, field: str, instance: Any, pattern: str, title: str | None, is_url: bool) -> _Raw:
    shown = _shown(instance, path)
    if pattern in ("\\S", "[^,\\s]"):
        what = "a scope" if pattern != "\\S" else "text"
        return _Raw(path, field, f"must not be empty (expected {title or what})", title)
    if field == "client_id":
        return _Raw(path, field, f"{shown} is not a GUID (expected like {GUID_EXAMPLE})", title)
    if field in ("config", "env"):
        return _Raw(
            path,
            field,
            f"{shown} is not a valid {'config key' if field == 'config' else 'variable name'}: expected {title}",
            title,
        )
    if field in ("name", "secret"):
        return _Raw(path, field, f"{shown} is not a valid name: expected {title}", title)
    return _Raw(path, field, f"{shown} is not valid: expected {title}", title, from_url_schema=is_url)


def _header_name(path: Path_, name: str, kw: Any) -> _Raw:
    key_path = path + (name,)
    if kw == "not":
        message = (
            f"header '{name}' is reserved: Cellosign sends Authorization: Bearer <token> "
            "with the token obtained from the webhook's secret"
        )
    else:
        message = f"'{name}' is not a valid HTTP header name: use letters, digits and !#$%&'*+.^_`|~-"
    return _Raw(key_path, name, message, "an HTTP header name like X-Request-Source (not Authorization)", at_key=True)


# --------------------------------------------------------------------------- code rules


@dataclass
class _Ctx:
    file: str | None
    positions: Mapping[Path_, Position]
    key_positions: Mapping[Path_, Position]
    prefix: str = ""

    def position(self, path: Path_, at_key: bool = False) -> Position | None:
        if at_key and path in self.key_positions:
            return self.key_positions[path]
        for end in range(len(path), -1, -1):
            if path[:end] in self.positions:
                return self.positions[path[:end]]
        return None

    def line_of(self, path: Path_) -> str:
        pos = self.position(path)
        return f" (line {pos[0]})" if pos else ""


def _url_rules(obj: Mapping[str, Any], path: Path_) -> list[_Raw]:
    url = obj.get("url")
    if not isinstance(url, str):
        return []
    allow = obj.get("allow_insecure_http", False)
    known_allow = allow if isinstance(allow, bool) else None
    return [_Raw(path + ("url",), "url", m, URL_EXPECTED) for m in url_problems(url, known_allow)]


def _resolved_secret_rules(obj: Mapping[str, Any], path: Path_) -> list[_Raw]:
    raws = []
    for field in sorted(SECRET_FIELDS):
        if field in obj:
            value = obj[field]
            if not isinstance(value, str) or not value.strip():
                raws.append(
                    _Raw(
                        path + (field,),
                        field,
                        f"{field} is empty or not text: expected the secret value",
                        "a non-empty string",
                    )
                )
    return raws


def _webhook_rules(hook: Mapping[str, Any], path: Path_, secret_names: Collection[str] | None) -> list[_Raw]:
    raws = _url_rules(hook, path)
    secret = hook.get("secret")
    if secret_names is not None and isinstance(secret, str) and secret not in secret_names:
        message = f"webhook '{hook.get('name')}' uses secret '{secret}', which is not declared under secrets:"
        guess = _close(secret, secret_names)
        if guess:
            message += f" — did you mean '{guess}'?"
        else:
            message += " (deleting a secret that a webhook still uses is refused: change or remove the webhook too)"
        expected = "one of: " + ", ".join(sorted(secret_names)) if secret_names else "a secret declared under secrets:"
        raws.append(_Raw(path + ("secret",), "secret", message, expected))
    headers = hook.get("headers")
    if isinstance(headers, dict):
        seen: dict[str, str] = {}
        for name, value in headers.items():
            if isinstance(value, str) and any(ch in value for ch in _HEADER_VALUE_CONTROLS):
                raws.append(_Raw(path + ("headers", name), name,
                                 f"the value of header '{name}' contains a line break or a control character",
                                 "header text without line breaks or control characters"))
            folded = name.lower()
            if folded in seen:
                raws.append(
                    _Raw(
                        path + ("headers", name),
                        name,
                        f"header '{name}' is given twice (also as '{seen[folded]}'): header names ignore case",
                        "each header name once",
                        at_key=True,
                    )
                )
            else:
                seen[folded] = name
    return raws


def _unique_names(items: Sequence[Any], section: str, what: str, ctx: _Ctx) -> list[_Raw]:
    raws = []
    first: dict[str, int] = {}
    for index, item in enumerate(items):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str):
            continue
        if name in first:
            earlier = (section, first[name])
            raws.append(
                _Raw(
                    (section, index, "name"),
                    "name",
                    f"duplicate {what} name '{name}': already used by {format_path(earlier)}{ctx.line_of(earlier)}",
                    f"a {what} name not used before in this file",
                )
            )
        else:
            first[name] = index
    return raws


def _items(data: Any, section: str) -> list[Any]:
    value = data.get(section) if isinstance(data, dict) else None
    return value if isinstance(value, list) else []


def _document_rules(data: Any, ctx: _Ctx) -> list[_Raw]:
    if not isinstance(data, dict):
        return []
    secrets, webhooks = _items(data, "secrets"), _items(data, "webhooks")
    raws = _unique_names(secrets, "secrets", "secret", ctx) + _unique_names(webhooks, "webhooks", "webhook", ctx)
    for index, secret in enumerate(secrets):
        if isinstance(secret, dict):
            raws += _url_rules(secret, ("secrets", index))
    names = {s["name"] for s in secrets if isinstance(s, dict) and isinstance(s.get("name"), str)}
    for index, hook in enumerate(webhooks):
        if isinstance(hook, dict):
            raws += _webhook_rules(hook, ("webhooks", index), names)
    return raws


def _literal_secrets(objects: Iterable[Any]) -> list[str]:
    return [
        obj[field]
        for obj in objects
        if isinstance(obj, dict)
        for field in SECRET_FIELDS
        if isinstance(obj.get(field), str)
    ]


# --------------------------------------------------------------------------- assembling


_HEADER_VALUE_CONTROLS = frozenset(chr(c) for c in (*range(0x20), 0x7F)) - {"\t"}


def _visible(text: str) -> str:
    """Control and invisible characters as escapes: a message never moves the cursor or forges a line."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii")
                   for ch in text)


def _finish(ctx: _Ctx, schema_raws: list[_Raw], code_raws: list[_Raw], secrets: Iterable[str]) -> list[Problem]:
    code_paths = {raw.path for raw in code_raws}
    raws = [r for r in schema_raws if not (r.from_url_schema and r.path in code_paths)] + code_raws
    suggested = {(r.path[:-1], r.suggests) for r in raws if r.suggests}
    scrub = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    problems: list[Problem] = []
    seen: set[tuple[Path_, str]] = set()
    for raw in raws:
        if raw.message.startswith("missing required field") and (raw.path[:-1], raw.field) in suggested:
            continue  # "unknown field 'pasword' — did you mean 'password'?" says it already
        if (raw.path, raw.message) in seen:
            continue
        seen.add((raw.path, raw.message))
        message, expected = raw.message, raw.expected
        for secret in scrub:
            message = message.replace(secret, "***")
            expected = expected.replace(secret, "***") if expected else expected
        pos = ctx.position(raw.path, raw.at_key)
        problems.append(
            Problem(
                file=ctx.file,
                line=pos[0] if pos else None,
                column=pos[1] if pos else None,
                path=format_path(raw.path, ctx.prefix),
                field=raw.field,
                message=_visible(message),
                expected=_visible(expected) if expected else expected,
            )
        )
    problems.sort(key=lambda p: (p.line or 0, p.column or 0, p.path))
    return problems


def validate_document(loaded: Loaded) -> list[Problem]:
    """Every problem of a loaded declarations file, sorted by line."""
    ctx = _Ctx(loaded.file, loaded.positions, loaded.key_positions)
    data = loaded.data
    if data is None:
        return [
            Problem(
                loaded.file,
                1,
                1,
                "",
                "",
                "the file is empty: expected `version: 1` and `secrets:`",
                "version: 1 and secrets: [...]",
            )
        ]
    schema_raws = _schema_raws(_validator(DECLARATIONS_REF), data, limit=MAX_PROBLEMS)
    code_raws = _document_rules(data, ctx)[: MAX_PROBLEMS + 1]
    problems = _finish(ctx, schema_raws, code_raws, _literal_secrets(_items(data, "secrets")))
    if len(problems) > MAX_PROBLEMS or len(schema_raws) > MAX_PROBLEMS:
        problems = problems[:MAX_PROBLEMS] + [
            Problem(loaded.file, None, None, "", "",
                    f"more than {MAX_PROBLEMS} problems: only the first {MAX_PROBLEMS} are listed", None)
        ]
    return problems


RESOURCE_ONLY_KEYS = frozenset({"source", "secret_fingerprint", "tested_at", "token_expires_in",
                                "token_test_warnings"})


def _declaration_shape(props: Mapping[str, Any]) -> dict[str, Any]:
    """A Secret resource's inputs in the declaration's shape.

    Ignored: values None, Pulumi's own keys (``__provider``…), what the program adds
    (``source``: where the secret is declared; ``secret_fingerprint``), and the
    provider's outputs; ``connect_timeout``/``read_timeout`` become ``timeouts``.
    """
    out = {k: v for k, v in props.items()
           if v is not None and not k.startswith("__") and k not in RESOURCE_ONLY_KEYS}
    timeouts = {k: out.pop(f"{k}_timeout") for k in ("connect", "read") if f"{k}_timeout" in out}
    if timeouts:
        existing = out.get("timeouts")
        out["timeouts"] = {**(existing if isinstance(existing, dict) else {}), **timeouts}
    return out


def validate_secret(props: Mapping[str, Any], *, resolved: bool, path_prefix: str = "") -> list[Problem]:
    """Problems of one secret declaration.

    resolved=False: props as written in the file (references allowed, secret
    fields must be references). resolved=True: references replaced by values,
    the secret field holding the plaintext secret; a Secret resource's inputs
    are accepted too (see _declaration_shape). Messages never contain the secret.
    """
    ctx = _Ctx(None, {}, {}, path_prefix)
    data = dict(props)
    code_raws: list[_Raw] = []
    secrets: list[str] = []
    if resolved:
        data = _declaration_shape(data)
        code_raws += _resolved_secret_rules(data, ())
        for field in SECRET_FIELDS & data.keys():
            if isinstance(data[field], str):
                secrets.append(data[field])
            data[field] = {"config": "resolved"}  # the schema checks the rest of the shape
    else:
        secrets = _literal_secrets([data])
    code_raws += _url_rules(data, ())
    return _finish(ctx, _schema_raws(_validator(SECRET_REF), data), code_raws, secrets)


def validate_webhook(
    props: Mapping[str, Any],
    *,
    resolved: bool,
    path_prefix: str = "",
    secret_names: Collection[str] | None = None,
) -> list[Problem]:
    """Problems of one webhook declaration; secret_names (when given) are the declared secrets."""
    ctx = _Ctx(None, {}, {}, path_prefix)
    data = {k: v for k, v in props.items() if v is not None and not k.startswith("__")} if resolved else dict(props)
    code_raws = _webhook_rules(data, (), secret_names)
    return _finish(ctx, _schema_raws(_validator(WEBHOOK_REF), data), code_raws, ())


def _main(argv: Sequence[str]) -> int:
    if list(argv) != ["bundle-schemas"]:
        print("usage: python -m resources.validation bundle-schemas", file=sys.stderr)
        return 2
    target = SCHEMA_DIR / "declarations.schema.json"
    target.write_text(json.dumps(bundled_declarations_schema(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
