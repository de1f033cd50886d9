"""The reliability suite: faults, interruptions and hostile input.

``.venv/bin/python -m tests.reliability`` runs it (with the existing checks it
builds on, see ``kinds.py``) and prints one table row per fault kind. The tests
here also run in the normal ``pytest`` run.
"""
