"""Safe loading of declarations files: positions, and everything refused."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from resources.loader import (
    MAX_BYTES,
    MAX_DEPTH,
    DeclarationFileError,
    UnreadableFileError,
    load_declarations,
    load_declarations_text,
)

ROOT = Path(__file__).resolve().parent.parent
UNUSABLE = sorted((Path(__file__).resolve().parent / "data" / "unusable").glob("*.yaml"))


def error_of(text: str | bytes) -> DeclarationFileError:
    with pytest.raises(DeclarationFileError) as info:
        load_declarations_text(text, "d.yaml")
    return info.value


def test_example_loads_with_the_position_of_every_value_and_key() -> None:
    loaded = load_declarations(ROOT / "cellosign.yaml")
    lines = (ROOT / "cellosign.yaml").read_text(encoding="utf-8").splitlines()
    assert loaded.file == str(ROOT / "cellosign.yaml")
    assert loaded.data["version"] == 1
    assert [s["name"] for s in loaded.data["secrets"]] == ["crm-api", "graph-mail"]
    line, column = loaded.positions[("secrets", 1, "client_id")]
    assert lines[line - 1][column - 1 :] == "{config: graphClientId}"
    line, column = loaded.key_positions[("secrets", 1, "client_id")]
    assert lines[line - 1][column - 1 :].startswith("client_id:")
    line, column = loaded.positions[("secrets", 0, "scope", 1)]
    assert lines[line - 1][column - 1 :].startswith("write]")
    line, column = loaded.positions[("secrets", 1)]
    assert lines[line - 1].strip() == "- name: graph-mail" and lines[line - 1][column - 1 :] == "name: graph-mail"


def test_columns_count_characters_not_bytes() -> None:
    loaded = load_declarations_text("ä: [é, 'ü']\n", "u.yaml")
    assert loaded.positions[("ä", 1)] == (1, 8)


def test_declaration_file_error_reads_file_line_column_message() -> None:
    err = DeclarationFileError("c.yaml", 3, 7, "boom")
    assert str(err) == "c.yaml:3:7: boom"
    assert (err.file, err.line, err.column, err.message) == ("c.yaml", 3, 7, "boom")
    assert str(DeclarationFileError("c.yaml", None, None, "gone")) == "c.yaml: gone"


@pytest.mark.parametrize("path", UNUSABLE, ids=lambda p: p.stem)
def test_unusable_file_is_refused_at_the_line_its_header_names(path: Path) -> None:
    header = re.match(rb"# expect-error: (\d+): (.+)\n", path.read_bytes())
    assert header, f"{path.name}: header missing"
    with pytest.raises(DeclarationFileError) as info:
        load_declarations(path)
    assert info.value.line == int(header.group(1))
    assert header.group(2).decode() in info.value.message
    assert str(info.value).startswith(f"{path}:{int(header.group(1))}:")


def test_duplicate_keys_name_both_lines() -> None:
    err = error_of("version: 1\nsecrets: []\nversion: 2\n")
    assert (err.line, err.column) == (3, 1)
    assert "duplicate key 'version'" in err.message and "line 1" in err.message and "line 3" in err.message


def test_duplicate_keys_in_nested_mappings_are_found_too() -> None:
    err = error_of("secrets:\n  - name: a\n    url: x\n    name: b\n")
    assert err.line == 4 and "first at line 2" in err.message


def test_same_key_in_different_mappings_is_fine() -> None:
    loaded = load_declarations_text("a: {name: 1}\nb: {name: 2}\n", "d.yaml")
    assert loaded.data == {"a": {"name": 1}, "b": {"name": 2}}


def test_alias_bomb_is_refused_quickly() -> None:
    levels = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    levels += [f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]" for p, c in zip("abcdefghi", "bcdefghij", strict=True)]
    start = time.perf_counter()
    err = error_of("\n".join(levels) + "\n")
    assert time.perf_counter() - start < 0.5
    assert "anchors" in err.message and err.line == 1


def test_alias_is_refused_even_without_an_anchor_in_the_file_order() -> None:
    err = error_of("a: 1\nb: *x\n")
    assert err.line == 2


@pytest.mark.parametrize(
    "text,line,words",
    [
        ("<<: {a: 1}\n", 1, "merge keys"),
        ("1: a\n", 1, "read as a number"),
        ("true: a\n", 1, "read as a boolean"),
        ("null: a\n", 1, "read as null"),
        ("? [a, b]\n: c\n", 1, "plain text"),
        ("a: !!binary aGVsbG8=\n", 1, "tag"),
        ("a: !!set {x}\n", 1, "tag"),
        ("a: !custom x\n", 1, "tag"),
        ("a: .nan\n", 1, "finite number"),
        ("a: -.inf\n", 1, "finite number"),
        ("a: 1\n---\nb: 2\n", 2, "one YAML document"),
        ("a: [1, 2\n", 2, "YAML syntax error"),
        ("a: 'unterminated\n", 2, "YAML syntax error"),
        ("a: 1\x07\n", 1, "U+0007"),
    ],
)
def test_refused_yaml(text: str, line: int, words: str) -> None:
    err = error_of(text)
    assert words in err.message and err.line == line, str(err)


def test_syntax_error_has_line_and_column() -> None:
    err = error_of("version: 1\nsecrets:\n  - name: a\n    convention: general: x\n")
    assert (err.line, err.column) == (4, 24)
    assert err.message.startswith("YAML syntax error")


@pytest.mark.parametrize(
    "text,line",
    [
        ("a:\n\tb: 1\n", 2),
        ("a:\n  b: 1\n \tc: 2\n", 3),
        ("a:\n  - x\n\t- y\n", 3),
    ],
)
def test_tabs_used_for_indentation_are_named(text: str, line: int) -> None:
    err = error_of(text)
    assert err.line == line and "tab" in err.message and "indentation" in err.message


def test_tabs_inside_text_are_fine() -> None:
    loaded = load_declarations_text('a: |\n  x\n  \ty\nb: "c\td"\n', "d.yaml")
    assert loaded.data == {"a": "x\n\ty\n", "b": "c\td"}


def test_nesting_depth_is_limited() -> None:
    ok = "a: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n"
    assert load_declarations_text(ok, "d.yaml").data["a"] is not None
    err = error_of("a: " + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "\n")
    assert f"deeper than {MAX_DEPTH}" in err.message and err.line == 1
    block = "a:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, MAX_DEPTH + 2))
    assert f"deeper than {MAX_DEPTH}" in error_of(block).message


def test_not_utf8_names_the_byte_offset_and_line() -> None:
    err = error_of(b"version: 1\nsecrets: [caf\xe9]\n")
    assert isinstance(err, UnreadableFileError)
    assert (err.line, err.column) == (2, 14)
    assert "not valid UTF-8" in err.message and "offset 24" in err.message and "0xe9" in err.message


def test_utf8_bom_is_accepted() -> None:
    assert load_declarations_text("\ufeffversion: 1\n".encode(), "d.yaml").data == {"version": 1}


@pytest.mark.parametrize("as_bytes", [True, False])
def test_files_over_one_mib_are_refused(as_bytes: bool) -> None:
    text = "# " + "x" * MAX_BYTES + "\nversion: 1\n"
    err = error_of(text.encode() if as_bytes else text)
    assert isinstance(err, UnreadableFileError) and "larger than 1024 KiB" in err.message


def test_large_file_on_disk_is_refused_without_parsing(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"a: [" + b"1, " * MAX_BYTES + b"1]\n")
    with pytest.raises(UnreadableFileError):
        load_declarations(path)
    exact = tmp_path / "exact.yaml"
    exact.write_bytes(b"a: 1\n" + b"#" * (MAX_BYTES - 6) + b"\n")
    assert load_declarations(exact).data == {"a": 1}


def test_missing_file_and_directory_are_unreadable(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFileError, match="does not exist"):
        load_declarations(tmp_path / "nope.yaml")
    with pytest.raises(UnreadableFileError, match="is a directory"):
        load_declarations(tmp_path)


def test_yaml_1_2_core_scalars() -> None:
    loaded = load_declarations_text(
        "a: yes\nb: no\nc: on\nd: True\ne: 0o17\nf: 0x1F\ng: 1e3\nh: ~\ni: 2024-01-01\nj: '1'\nk: 017\nl: -.5\n",
        "d.yaml",
    )
    assert loaded.data == {
        "a": "yes",
        "b": "no",
        "c": "on",
        "d": True,
        "e": 15,
        "f": 31,
        "g": 1000.0,
        "h": None,
        "i": "2024-01-01",
        "j": "1",
        "k": 17,
        "l": -0.5,
    }


def test_empty_document_loads_as_nothing() -> None:
    loaded = load_declarations_text("# only a comment\n", "d.yaml")
    assert loaded.data is None and loaded.positions == {}
