"""The configuration an administrator enters in Cellosign, rendered per stack as YAML.

``render`` turns a :class:`ConfigModel` into a YAML document through a Jinja
template (``templates/cellosign-config.yaml.j2``, or ``cellosign-config.yaml.j2``
in a folder of the user's: the ``template_dir`` argument or the
``CELLOSIGN_TEMPLATES`` environment variable). Two variants exist:

* the **full** document (``redacted=False``): what the administrator types into
  the Cellosign form, secret values included; never meant for review;
* the **redacted** document (``redacted=True``) of ``redacted(model, key)``: every
  secret value replaced by a keyed fingerprint (HMAC-SHA256), so a pull request
  shows *that* a secret changed, never what it is.

Safety properties:

* Every value (and every key) written by a template is a YAML double-quoted
  scalar made by the ``yaml`` filter. The Environment's ``finalize`` applies the
  same escaping to any expression a template forgot to filter, so no template
  can emit raw data. Values are data: ``{{``/``{%`` inside them are written
  literally (Jinja never renders its output again).
* Undefined names fail (StrictUndefined); templates run in Jinja's immutable
  sandbox.
* The rendered text is parsed (PyYAML safe loader, duplicate keys refused) and
  validated against ``schemas/cellosign-config.schema.json`` before it is
  returned. Every failure is a :class:`RenderError` naming the template file and
  the problem; no message ever quotes a secret value.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import tempfile
import threading
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import jinja2
import yaml
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from .conventions import CONVENTIONS
from .errors import CellosignError

try:  # libyaml parses the rendered document several times faster: the same events, the same safe constructors
    from yaml import CSafeLoader as _SafeLoaderBase
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _SafeLoaderBase  # type: ignore[assignment]

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TEMPLATE_DIR = ROOT / "templates"
TEMPLATE_NAME = "cellosign-config.yaml.j2"
TEMPLATE_ENV_VAR = "CELLOSIGN_TEMPLATES"
SCHEMA_PATH = ROOT / "schemas" / "cellosign-config.schema.json"
DOCUMENT_VERSION = 1

FINGERPRINT_PREFIX = "hmac-sha256:"
FINGERPRINT_HEX_CHARS = 16
MAX_HEADER_NAME_CHARS = 100  # escaped, at most 1002 characters: PyYAML refuses implicit keys over 1024
MAX_REPORTED_PROBLEMS = 5


class RenderError(CellosignError):
    """The configuration could not be rendered, or the rendered document is not valid."""


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class SecretEntry:
    name: str
    convention: str  # "general" | "msgraph"
    url: str
    grant_type: str
    scopes: tuple[str, ...]
    identity: str  # username or client_id
    secret: str  # the password/client_secret in the full document; the fingerprint in the redacted one
    description: str | None = None


@dataclass(frozen=True)
class WebhookEntry:
    name: str
    url: str
    events: tuple[str, ...]
    secret: str  # name of the secret it authenticates with
    headers: tuple[tuple[str, str], ...] = ()  # extra headers, sorted by name
    description: str | None = None


@dataclass(frozen=True)
class ConfigModel:
    stack: str
    secrets: tuple[SecretEntry, ...]
    webhooks: tuple[WebhookEntry, ...]


# --------------------------------------------------------------------------- fingerprints


def fingerprint(key: bytes, value: str) -> str:
    """``hmac-sha256:`` + the first 16 hex digits of HMAC-SHA256(key, value as UTF-8).

    Stable for the same key and value, so a review sees *whether* a secret changed.
    Without the key nobody can test guesses against it; keep the key out of the
    repository (a per-stack key also hides whether two stacks share a value).
    """
    if not isinstance(key, bytes | bytearray) or not key:
        raise ValueError("the fingerprint key must be non-empty bytes")
    digest = hmac.new(bytes(key), value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
    return FINGERPRINT_PREFIX + digest[:FINGERPRINT_HEX_CHARS]


def redacted(model: ConfigModel, key: bytes) -> ConfigModel:
    """The same model with every secret value replaced by its keyed fingerprint."""
    return dataclasses.replace(
        model,
        secrets=tuple(dataclasses.replace(s, secret=fingerprint(key, s.secret)) for s in model.secrets),
    )


# --------------------------------------------------------------------------- YAML escaping

# Characters written as escapes even where YAML would accept them raw: controls,
# format characters (bidi overrides, zero-width joiners, BOM: invisible in a diff),
# surrogates, private use, unassigned, line/paragraph separators and every space
# other than U+0020 (NBSP and friends look like a space in a review).
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"})
_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\0": "\\0"}


class YamlText(str):
    """Text that is already valid YAML (a quoted scalar, a number, true/false/null, a flow collection)."""

    __slots__ = ()


def _quote(text: str) -> str:
    """A YAML double-quoted scalar that PyYAML (and any YAML 1.1/1.2 parser) reads back as exactly ``text``."""
    out = ['"']
    for ch in text:
        short = _SHORT_ESCAPES.get(ch)
        if short is not None:
            out.append(short)
            continue
        code = ord(ch)
        if ch == " " or (code > 0x20 and code < 0x7F):
            out.append(ch)
        elif code < 0x7F or unicodedata.category(ch) in _ESCAPED_CATEGORIES or code in (0xFFFE, 0xFFFF):
            if code <= 0xFF:
                out.append(f"\\x{code:02x}")
            elif code <= 0xFFFF:
                out.append(f"\\u{code:04x}")
            else:
                out.append(f"\\U{code:08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def yaml_value(value: Any) -> YamlText:
    """The ``yaml`` filter: any data value as YAML text that parses back to exactly that value."""
    if isinstance(value, YamlText):
        return value
    if isinstance(value, jinja2.Undefined):
        value._fail_with_undefined_error()  # StrictUndefined: raises UndefinedError
    if value is None:
        return YamlText("null")
    if isinstance(value, bool):
        return YamlText("true" if value else "false")
    if isinstance(value, int):
        return YamlText(str(value))
    if isinstance(value, str):
        return YamlText(_quote(value))
    if isinstance(value, Mapping):
        items = ", ".join(f"{yaml_value(k)}: {yaml_value(v)}" for k, v in value.items())
        return YamlText("{" + items + "}")
    if isinstance(value, list | tuple):
        return YamlText("[" + ", ".join(yaml_value(v) for v in value) + "]")
    raise TypeError(f"the yaml filter cannot write a value of type {type(value).__name__}")


def _finalize(value: Any) -> Any:
    """Every ``{{ expression }}`` output: already-escaped text passes, anything else is escaped."""
    return value if isinstance(value, YamlText) else yaml_value(value)


# --------------------------------------------------------------------------- Jinja environments (cached)

_env_lock = threading.Lock()
_environments: dict[str, jinja2.Environment] = {}


def template_directory(template_dir: Path | None = None) -> Path:
    """The folder the template is read from: the argument, else $CELLOSIGN_TEMPLATES, else templates/."""
    if template_dir is not None:
        return Path(template_dir)
    from_env = os.environ.get(TEMPLATE_ENV_VAR, "").strip()
    return Path(from_env) if from_env else DEFAULT_TEMPLATE_DIR


def environment(template_dir: Path | None = None) -> jinja2.Environment:
    """The Jinja Environment of a template folder: built once per folder per process, thread-safe."""
    directory = template_directory(template_dir).resolve()
    cache_key = str(directory)
    with _env_lock:
        env = _environments.get(cache_key)
        if env is None:
            env = ImmutableSandboxedEnvironment(
                loader=jinja2.FileSystemLoader(cache_key, encoding="utf-8"),
                undefined=jinja2.StrictUndefined,
                autoescape=False,
                finalize=_finalize,
                trim_blocks=True,
                lstrip_blocks=True,
                keep_trailing_newline=True,
            )
            env.filters["yaml"] = yaml_value
            _environments[cache_key] = env
        return env


# --------------------------------------------------------------------------- schema (compiled once)

_schema_lock = threading.Lock()
_schema_validator: Draft202012Validator | None = None


def _validator() -> Draft202012Validator:
    global _schema_validator
    with _schema_lock:
        if _schema_validator is None:
            schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
            Draft202012Validator.check_schema(schema)
            _schema_validator = Draft202012Validator(schema)
        return _schema_validator


# --------------------------------------------------------------------------- template context


def _check_model(model: ConfigModel) -> list[str]:
    """Problems of the model that would make the document ambiguous (messages never quote secrets)."""
    problems: list[str] = []
    seen: set[str] = set()
    for s in model.secrets:
        if s.convention not in CONVENTIONS:
            problems.append(
                f"secret {s.name!r}: unknown convention {s.convention!r} (expected {' or '.join(CONVENTIONS)})"
            )
        if s.name in seen:
            problems.append(f"secret {s.name!r} is declared twice")
        seen.add(s.name)
    webhook_names: set[str] = set()
    for w in model.webhooks:
        if w.name in webhook_names:
            problems.append(f"webhook {w.name!r} is declared twice")
        webhook_names.add(w.name)
        if w.secret not in seen:
            problems.append(f"webhook {w.name!r}: uses secret {w.secret!r}, which is not declared for this stack")
        if len(set(w.events)) != len(w.events):
            problems.append(f"webhook {w.name!r}: an event is listed twice")
        header_names: set[str] = set()
        for header, _value in w.headers:
            if not header or len(header) > MAX_HEADER_NAME_CHARS:
                problems.append(f"webhook {w.name!r}: a header name must have 1 to {MAX_HEADER_NAME_CHARS} characters")
            if header in header_names:
                problems.append(f"webhook {w.name!r}: header {header!r} is listed twice")
            header_names.add(header)
    return problems


def _secret_view(s: SecretEntry) -> dict[str, Any]:
    c = CONVENTIONS[s.convention]
    scope = c.scope_value(s.scopes)
    return {
        "name": s.name,
        "convention": s.convention,
        "description": s.description,
        "type_label": c.type_label,
        "url": s.url,
        "grant_type": s.grant_type,
        "scopes": list(s.scopes),
        "scope": scope,
        "identity_label": c.identity_label,
        "identity": s.identity,
        "secret_label": c.secret_label,
        "secret": s.secret,
        # The Cellosign form, field by field, in the form's order.
        "form": [
            ("Type", c.type_label),
            ("url", s.url),
            ("Grant type", s.grant_type),
            ("Scope", scope),
            (c.identity_label, s.identity),
            (c.secret_label, s.secret),
        ],
    }


def _webhook_view(w: WebhookEntry) -> dict[str, Any]:
    return {
        "name": w.name,
        "description": w.description,
        "url": w.url,
        "events": sorted(w.events),
        "secret": w.secret,
        "headers": sorted(w.headers),
    }


def template_context(model: ConfigModel, *, redacted: bool) -> dict[str, Any]:
    """What a template sees: entries sorted by name, each secret's Cellosign form precomputed."""
    return {
        "version": DOCUMENT_VERSION,
        "stack": model.stack,
        "redacted": redacted,
        "secrets": [_secret_view(s) for s in sorted(model.secrets, key=lambda s: s.name)],
        "webhooks": [_webhook_view(w) for w in sorted(model.webhooks, key=lambda w: w.name)],
    }


# --------------------------------------------------------------------------- errors without secrets


class _Scrubber:
    """Removes every secret value (raw, repr-, JSON- and YAML-escaped) from a message."""

    def __init__(self, values: Iterable[str]) -> None:
        variants: set[str] = set()
        for v in values:
            if v:
                variants.update({v, repr(v)[1:-1], json.dumps(v)[1:-1], _quote(v)[1:-1]})
        self._variants = sorted((v for v in variants if v), key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for v in self._variants:
            text = text.replace(v, "<secret>")
        return text


def _template_line(tb: TracebackType | None, filename: str) -> int | None:
    """The template line of the innermost frame that runs the template (Jinja rewrites tracebacks)."""
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


class _UniqueKeyLoader(_SafeLoaderBase):
    """yaml.safe_load, except that a mapping with the same key twice is an error."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    keys: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, list | dict):
            continue  # unhashable: the constructor reports it
        if key in keys:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} in a mapping", key_node.start_mark
            )
        keys.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _json_path(parts: Iterable[Any]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "the document"


def _schema_title(error: ValidationError) -> str | None:
    schema = error.schema
    if isinstance(schema, Mapping):
        if isinstance(schema.get("title"), str):
            return str(schema["title"])
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            target = _validator().schema.get("$defs", {}).get(ref[len("#/$defs/") :], {})
            if isinstance(target, Mapping) and isinstance(target.get("title"), str):
                return str(target["title"])
    return None


def _describe(error: ValidationError) -> str:
    """A schema problem in words, built from the schema and the path only: never the instance's value."""
    where = _json_path(error.absolute_path)
    kind = error.validator
    instance = error.instance
    if kind == "required" and isinstance(instance, Mapping):
        missing = [k for k in error.validator_value if k not in instance]
        return f"{where}: missing {', '.join(repr(k) for k in missing)}"
    if kind == "additionalProperties" and isinstance(instance, Mapping):
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(str(k) for k in instance if k not in allowed)
        return f"{where}: unexpected key(s) {', '.join(repr(k) for k in extra)}"
    title = _schema_title(error)
    expected = f"expected {title}" if title else f"fails the schema keyword {kind!r}"
    return f"{where}: {expected}"


# --------------------------------------------------------------------------- render


def render(model: ConfigModel, *, redacted: bool, template_dir: Path | None = None) -> str:
    """The YAML document for ``model``'s stack, parsed and schema-checked; raises RenderError.

    ``redacted=True`` expects a model from :func:`redacted` (the schema refuses a
    secret value that is not a fingerprint); ``redacted=False`` refuses one that is.
    """
    directory = template_directory(template_dir)
    template_file = directory / TEMPLATE_NAME
    scrub = _Scrubber(s.secret for s in model.secrets)

    problems = _check_model(model)
    if problems:
        raise RenderError(scrub(f"{template_file}: the configuration cannot be rendered:\n  " + "\n  ".join(problems)))
    context = template_context(model, redacted=redacted)

    env = environment(directory)
    try:
        template = env.get_template(TEMPLATE_NAME)
    except jinja2.TemplateNotFound:
        raise RenderError(f"{template_file}: template not found (expected {TEMPLATE_NAME} in {directory})") from None
    except jinja2.TemplateSyntaxError as exc:
        raise RenderError(scrub(f"{template_file}:{exc.lineno}: template syntax error: {exc.message}")) from None
    except OSError as exc:
        raise RenderError(f"{template_file}: cannot read the template ({exc.strerror or type(exc).__name__})") from None

    filename = template.filename or str(template_file)
    try:
        text = template.render(context)
    except Exception as exc:  # a user's template may fail in any way: report it, never its data
        line = _template_line(exc.__traceback__, filename)
        where = f"{filename}:{line}" if line else filename
        kind = "undefined name" if isinstance(exc, jinja2.UndefinedError) else type(exc).__name__
        raise RenderError(scrub(f"{where}: template failed ({kind}): {exc}")) from None

    try:
        document = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise RenderError(
            scrub(f"{filename}: the template produced text that is not valid YAML{where}: {problem}")
        ) from None

    errors = sorted(_validator().iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        described = list(dict.fromkeys(_describe(e) for e in errors))  # one line per problem, in order
        lines = described[:MAX_REPORTED_PROBLEMS]
        if len(described) > MAX_REPORTED_PROBLEMS:
            lines.append(f"... and {len(described) - MAX_REPORTED_PROBLEMS} more")
        raise RenderError(
            scrub(f"{filename}: the rendered document does not match {SCHEMA_PATH.name}:\n  " + "\n  ".join(lines))
        )
    return text


# --------------------------------------------------------------------------- writing


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` so that readers see the old file or the new one, never half.

    A temporary file in the same folder is written, flushed and fsynced, then
    renamed over ``path`` (os.replace); the folder is fsynced afterwards where the
    platform allows it. A new file is created with mode 0600 (the full document
    holds secrets); an existing file keeps its mode.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            try:
                os.fchmod(fh.fileno(), os.stat(path).st_mode & 0o7777)
            except FileNotFoundError:
                pass
            fh.write(text.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
