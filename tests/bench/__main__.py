"""``python -m tests.bench [--quick] [--json PATH]``: run every benchmark, print the table, write JSON."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resources.engine import PROJECT_ROOT

from .engine_bench import EngineBench
from .measure import load_average
from .report import engine_json, markdown, validate_json
from .validate_bench import ValidateBench


@dataclass(frozen=True)
class Preset:
    sizes: tuple[int, ...]
    repeats: int
    files: int
    validate_repeats: int


FULL = Preset(sizes=(10, 50, 200), repeats=3, files=1000, validate_repeats=5)
QUICK = Preset(sizes=(10,), repeats=2, files=100, validate_repeats=3)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="N=10 only and 100 files (under two minutes)")
    parser.add_argument("--json", type=Path, default=PROJECT_ROOT / ".pulumi" / "bench.json",
                        help="where to write every sample (default: .pulumi/bench.json)")
    parser.add_argument("--sizes", type=lambda s: tuple(int(x) for x in s.split(",")), default=None,
                        help="numbers of secrets, e.g. 10,50,200")
    parser.add_argument("--repeats", type=int, default=None, help="engine runs per size (medians are reported)")
    parser.add_argument("--files", type=int, default=None, help="declaration files for the validate benchmark")
    parser.add_argument("--validate-repeats", type=int, default=None)
    parser.add_argument("--only", choices=("engine", "validate"), default=None, help="run one benchmark only")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    preset = QUICK if args.quick else FULL
    sizes: tuple[int, ...] = args.sizes or preset.sizes
    repeats: int = args.repeats or preset.repeats
    files: int = args.files or preset.files
    validate_repeats: int = args.validate_repeats or preset.validate_repeats

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    started = time.monotonic()
    load_before = load_average()
    machine: dict[str, Any] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                               "platform": platform.platform(),
                               "load_average_before": [round(x, 2) for x in load_before]}
    engine = None
    validate = None
    if args.only in (None, "engine"):
        log(f"engine: N = {', '.join(map(str, sizes))}, {repeats} run(s) each, fresh stacks")
        engine = EngineBench(sizes=sizes, repeats=repeats, latency_sizes=sizes, log=log)
        engine.run()
    if args.only in (None, "validate"):
        log(f"validate: {files} files, {validate_repeats} run(s) of each tool")
        validate = ValidateBench(files=files, repeats=validate_repeats, log=log)
        validate.run()
    machine["load_average_after"] = [round(x, 2) for x in load_average()]
    machine["duration_s"] = round(time.monotonic() - started, 1)

    data = {"machine": machine, "engine": engine_json(engine) if engine else None,
            "validate": validate_json(validate) if validate else None}
    print(markdown(data))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
