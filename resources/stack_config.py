"""Reading a stack's config outside a Pulumi program (CLI commands).

Values come decrypted from the Automation API, with their secret flag, and
feed the same Resolver the program uses, so the CLI and `pulumi up` agree.
"""

from __future__ import annotations

import secrets
from typing import Any

from pulumi import automation as auto

from .desired import FINGERPRINT_KEY
from .engine import PROJECT_NAME
from .resolve import ConfigLookup, mapping_lookup


def stack_lookup(stack: auto.Stack) -> ConfigLookup:
    values: dict[str, tuple[Any, bool]] = {
        key: (item.value, bool(item.secret)) for key, item in stack.get_all_config().items()
    }
    return mapping_lookup(values)



def ensure_fingerprint_key(stack: auto.Stack) -> bool:
    """Give the stack its own random key for review fingerprints (encrypted config), once.

    Returns True when the key was created now (Pulumi.<stack>.yaml changed: commit it).
    """
    full = f"{PROJECT_NAME}:{FINGERPRINT_KEY}"
    if full in stack.get_all_config():
        return False
    stack.set_config(full, auto.ConfigValue(secrets.token_hex(32), secret=True))
    return True
