"""Reading a stack's config outside a Pulumi program (CLI commands).

Values come decrypted from the Automation API, with their secret flag, and
feed the same Resolver the program uses, so the CLI and `pulumi up` agree.
"""

from __future__ import annotations

from typing import Any

from pulumi import automation as auto

from .resolve import ConfigLookup, mapping_lookup


def stack_lookup(stack: auto.Stack) -> ConfigLookup:
    values: dict[str, tuple[Any, bool]] = {
        key: (item.value, bool(item.secret)) for key, item in stack.get_all_config().items()
    }
    return mapping_lookup(values)
