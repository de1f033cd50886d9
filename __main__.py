"""Entry point for `pulumi up` run by a full Pulumi installation (with the
pulumi-language-python host). The project's own commands run the same program
inline through the Automation API: see resources/engine.py."""

from resources.program import program_for

program_for()()
