"""Reading a stack's config outside a Pulumi program (CLI commands).

Values come decrypted from the Automation API, with their secret flag, and
feed the same Resolver the program uses, so the CLI and `pulumi up` agree.
"""

from __future__ import annotations

import os
import secrets
import subprocess
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
    # Through stdin: the Automation API's set_config puts the value on the command line,
    # where any user of the machine could read it in the process list.
    ws = stack.workspace
    assert isinstance(ws, auto.LocalWorkspace)
    env = {**os.environ, **ws.env_vars, **({"PULUMI_HOME": ws.pulumi_home} if ws.pulumi_home else {})}
    subprocess.run(
        [ws.pulumi_command.command, "config", "set", "--secret", "--stack", stack.name, full],
        input=secrets.token_hex(32), text=True, cwd=ws.work_dir, env=env, check=True, capture_output=True, timeout=120,
    )
    return True
