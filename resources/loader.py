"""Safe loading of a declarations file, keeping where every value was written.

The file is read as YAML 1.2 *core schema* data (``true``/``false`` are the only
booleans: ``yes``, ``no``, ``on`` and ``off`` stay text, as in
check-jsonschema and editors) from PyYAML's event stream, so nothing is ever
constructed that we did not ask for. Refused outright, each with the line and
column where it happens:

- duplicate mapping keys (PyYAML would silently keep the last one): both lines;
- anchors (``&a``), aliases (``*a``) and merge keys (``<<``): a few lines of
  aliases can expand to gigabytes ("billion laughs");
- keys that are not text (``1:``, ``null:``, ``[a]:``), tags other than the
  plain core ones, ``.nan``/``.inf``, more than one YAML document;
- tabs used for indentation;
- nesting deeper than :data:`MAX_DEPTH` levels;
- YAML syntax errors.

Refused before parsing (raised as :class:`UnreadableFileError`): files that
cannot be read, files over :data:`MAX_BYTES`, and bytes that are not UTF-8
(the message names the byte offset and line).

Lines and columns are 1-based. ``Loaded.positions`` maps the path of every
value (a tuple of keys and list indexes, ``()`` for the whole document) to
where the value starts; ``Loaded.key_positions`` maps the path of every mapping
entry to where its key is written.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

try:  # libyaml parses about ten times faster; the pure-Python parser gives the same events
    from yaml._yaml import CParser as _Parser  # type: ignore[import-not-found,import-untyped,unused-ignore]
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Parser  # type: ignore[assignment]

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 32

Path_ = tuple[str | int, ...]
Position = tuple[int, int]


class DeclarationFileError(Exception):
    """A declarations file that cannot be used at all; ``str()`` is ``FILE:LINE:COL: message``."""

    def __init__(self, file: str, line: int | None, column: int | None, message: str) -> None:
        self.file = file
        self.line = line
        self.column = column
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.message}"


class UnreadableFileError(DeclarationFileError):
    """The bytes could not be turned into YAML text: missing, not a file, too large, not UTF-8."""


@dataclass
class Loaded:
    data: Any
    positions: dict[Path_, Position]
    file: str
    key_positions: dict[Path_, Position] = field(default_factory=dict)


def load_declarations(path: str | Path) -> Loaded:
    """Read and parse a declarations file; raise DeclarationFileError on anything unsafe."""
    file = str(path)
    p = Path(path)
    try:
        if not p.is_file():
            reason = "is a directory" if p.is_dir() else "does not exist" if not p.exists() else "is not a regular file"
            raise UnreadableFileError(file, None, None, f"cannot read the declarations file: it {reason}")
        with p.open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UnreadableFileError(file, None, None, f"cannot read the declarations file: {reason}") from None
    return load_declarations_text(raw, file)


def load_declarations_text(text: str | bytes, file: str) -> Loaded:
    """Parse declarations from text (or raw bytes, which must be UTF-8)."""
    if isinstance(text, bytes):
        _check_size(len(text), file)
        text = _decode(text, file)
    else:
        _check_size(len(text.encode("utf-8", "surrogatepass")), file)
    if text.startswith("\ufeff"):
        text = text[1:]
    return _Builder(text, file).build()


def _check_size(size: int, file: str) -> None:
    if size > MAX_BYTES:
        raise UnreadableFileError(
            file, None, None, f"file is larger than {MAX_BYTES // 1024} KiB ({MAX_BYTES} bytes); refusing to parse it"
        )


def _decode(raw: bytes, file: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = exc.start
        line = raw.count(b"\n", 0, offset) + 1
        column = offset - (raw.rfind(b"\n", 0, offset) + 1) + 1
        raise UnreadableFileError(
            file,
            line,
            column,
            f"file is not valid UTF-8: byte 0x{raw[offset]:02x} at byte offset {offset} (line {line}); "
            "save it as UTF-8",
        ) from None


# --------------------------------------------------------------------------- scalars (YAML 1.2 core schema)

_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?)$")
_SPECIAL_FLOAT = re.compile(r"^(?:[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")

_CORE = "tag:yaml.org,2002:"
_SCALAR_TAGS = {f"{_CORE}{t}" for t in ("str", "int", "float", "bool", "null")}
_COLLECTION_TAGS = {f"{_CORE}map", f"{_CORE}seq"}


def _int(value: str) -> int:
    if value.startswith("0o"):
        return int(value[2:], 8)
    if value.startswith("0x"):
        return int(value[2:], 16)
    return int(value, 10)


class _Builder:
    def __init__(self, text: str, file: str) -> None:
        self.text = text
        self.file = file
        self.positions: dict[Path_, Position] = {}
        self.key_positions: dict[Path_, Position] = {}
        self.scalar_lines: list[tuple[int, int]] = []  # 0-based [start, end) continuation lines of scalars

    def fail(self, mark: Any, message: str) -> DeclarationFileError:
        if mark is None:
            return DeclarationFileError(self.file, None, None, message)
        return DeclarationFileError(self.file, mark.line + 1, mark.column + 1, message)

    # ---------------------------------------------------------------- events
    def events(self) -> Iterator[Any]:
        parser = _Parser(self.text)
        try:
            while parser.check_event():
                yield parser.get_event()
        except yaml.MarkedYAMLError as exc:
            raise self._syntax_error(exc) from None
        except yaml.reader.ReaderError as exc:
            line = self.text.count("\n", 0, exc.position) + 1
            column = exc.position - (self.text.rfind("\n", 0, exc.position) + 1) + 1
            char = self.text[exc.position] if exc.position < len(self.text) else ""
            raise DeclarationFileError(
                self.file, line, column, f"character U+{ord(char):04X} is not allowed in YAML" if char else exc.reason
            ) from None
        finally:
            dispose = getattr(parser, "dispose", None)
            if dispose is not None:
                dispose()

    def _syntax_error(self, exc: yaml.MarkedYAMLError) -> DeclarationFileError:
        mark = exc.problem_mark or exc.context_mark
        if mark is not None:
            lines = self.text.split("\n")
            line_text = lines[mark.line] if mark.line < len(lines) else ""
            indent = line_text[: len(line_text) - len(line_text.lstrip(" \t"))]
            if "\t" in indent or line_text[mark.column : mark.column + 1] == "\t":
                col = line_text.index("\t") + 1 if "\t" in line_text else mark.column + 1
                return DeclarationFileError(
                    self.file, mark.line + 1, col, "tab character used for indentation; YAML indents with spaces only"
                )
        problem = exc.problem or "invalid YAML"
        message = f"YAML syntax error: {problem}"
        if exc.context and exc.context_mark is not None and mark is not exc.context_mark:
            message += f" ({exc.context} started at line {exc.context_mark.line + 1})"
        return self.fail(mark, message)

    # ---------------------------------------------------------------- building
    def build(self) -> Loaded:
        root: Any = None
        # stack entries: [container, path, pending key or None, {key: line}]
        stack: list[list[Any]] = []
        documents = 0
        for event in self.events():
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise self.fail(event.start_mark, "only one YAML document is allowed per file (found a second)")
                continue
            if isinstance(event, (yaml.StreamStartEvent, yaml.StreamEndEvent, yaml.DocumentEndEvent)):
                continue
            if isinstance(event, yaml.AliasEvent):
                raise self.fail(
                    event.start_mark, f"YAML aliases (*{event.anchor}) are not allowed: write the value out in full"
                )
            if isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                stack.pop()
                continue
            anchor = getattr(event, "anchor", None)
            if anchor is not None:
                raise self.fail(event.start_mark, f"YAML anchors (&{anchor}) are not allowed: write values out in full")

            # A node: a key of the mapping on top of the stack, or a value.
            parent = stack[-1] if stack else None
            if parent is not None and isinstance(parent[0], dict) and parent[2] is None:
                self._key(event, parent)
                continue
            if parent is None:
                path: Path_ = ()
            elif isinstance(parent[0], list):
                path = parent[1] + (len(parent[0]),)
            else:
                path = parent[1] + (parent[2],)
            self.positions[path] = (event.start_mark.line + 1, event.start_mark.column + 1)

            value: Any
            if isinstance(event, yaml.ScalarEvent):
                value = self._scalar(event)
            else:
                if len(stack) >= MAX_DEPTH:
                    raise self.fail(event.start_mark, f"nesting is deeper than {MAX_DEPTH} levels")
                self._check_tag(event, _COLLECTION_TAGS)
                value = {} if isinstance(event, yaml.MappingStartEvent) else []
            if parent is None:
                root = value
            elif isinstance(parent[0], list):
                parent[0].append(value)
            else:
                parent[0][parent[2]] = value
                parent[2] = None
            if not isinstance(event, yaml.ScalarEvent):
                stack.append([value, path, None, {}])

        self._check_tabs()
        return Loaded(data=root, positions=self.positions, file=self.file, key_positions=self.key_positions)

    def _key(self, event: Any, parent: list[Any]) -> None:
        mark = event.start_mark
        if not isinstance(event, yaml.ScalarEvent):
            raise self.fail(mark, "mapping keys must be plain text, not a list or mapping")
        if event.value == "<<" and event.implicit[0]:
            raise self.fail(mark, "YAML merge keys (<<) are not allowed: write the fields out in full")
        key = self._scalar(event)
        if not isinstance(key, str):
            raise self.fail(
                mark, f"mapping key {event.value!r} is read as {_kind(key)}, not text: quote it ('\"{event.value}\"')"
            )
        seen: dict[str, int] = parent[3]
        if key in seen:
            raise self.fail(
                mark,
                f"duplicate key '{key}': first at line {seen[key]}, again at line {mark.line + 1} "
                "(only one may be given)",
            )
        seen[key] = mark.line + 1
        parent[2] = key
        self.key_positions[parent[1] + (key,)] = (mark.line + 1, mark.column + 1)

    def _check_tag(self, event: Any, allowed: set[str]) -> None:
        tag = event.tag
        if tag is None or tag == "!" or tag in allowed:
            return
        raise self.fail(event.start_mark, f"YAML tag '{tag}' is not supported here: remove it")

    def _scalar(self, event: Any) -> Any:
        start, end = event.start_mark, event.end_mark
        if start.line != end.line:  # text continues on the lines after the first one
            self.scalar_lines.append((start.line + 1, end.line + (1 if end.column > 0 else 0)))
        self._check_tag(event, _SCALAR_TAGS)
        value: str = event.value
        tag = event.tag
        if tag is None or tag == "!":
            if not event.implicit[0] or tag == "!":  # quoted or block scalar, or '!' (non-specific): text
                return value
            tag = self._resolve(value)
        if tag == f"{_CORE}str":
            return value
        try:
            if tag == f"{_CORE}null":
                if not _NULL.match(value):
                    raise ValueError
                return None
            if tag == f"{_CORE}bool":
                if not _BOOL.match(value):
                    raise ValueError
                return value.lower() == "true"
            if tag == f"{_CORE}int":
                return _int(value)
            if _SPECIAL_FLOAT.match(value):
                raise self.fail(event.start_mark, f"{value} is not a usable number: write a finite number")
            number = float(value)
            if not math.isfinite(number):
                raise self.fail(event.start_mark, f"{value} is not a usable number: write a finite number")
            return number
        except ValueError:
            raise self.fail(event.start_mark, f"{value!r} is not a valid {tag.rsplit(':', 1)[-1]}") from None

    @staticmethod
    def _resolve(value: str) -> str:
        if _NULL.match(value):
            return f"{_CORE}null"
        if _BOOL.match(value):
            return f"{_CORE}bool"
        if _INT.match(value):
            return f"{_CORE}int"
        if _FLOAT.match(value) or _SPECIAL_FLOAT.match(value):
            return f"{_CORE}float"
        return f"{_CORE}str"

    def _check_tabs(self) -> None:
        """Tabs in the indentation of a line outside a multi-line scalar's text."""
        inside: set[int] = set()
        for start, end in self.scalar_lines:
            inside.update(range(start, end))
        for number, line in enumerate(self.text.split("\n")):
            stripped = line.lstrip(" \t")
            indent = line[: len(line) - len(stripped)]
            if "\t" in indent and stripped and not stripped.startswith("#") and number not in inside:
                raise DeclarationFileError(
                    self.file,
                    number + 1,
                    indent.index("\t") + 1,
                    "tab character used for indentation; YAML indents with spaces only",
                )


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return type(value).__name__
