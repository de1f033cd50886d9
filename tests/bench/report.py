"""Medians, ratios, targets: the JSON document and the markdown table."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from .engine_bench import LATENCY_S, OPERATIONS, EngineBench
from .measure import median
from .validate_bench import TOOLS, ValidateBench

TARGET_FLOOR_RATIO = 1.25  # `up` creating N secrets, at the largest N, against the floor
TARGET_LATENCY_RATIO = 1.5  # the same with 100 ms latency, against without
TARGET_VALIDATE_RATIO = 1.0  # validate against check-jsonschema


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def _med(values: list[float]) -> float | None:
    return round(median(values), 3) if values else None


def engine_json(bench: EngineBench) -> dict[str, Any]:
    samples = [
        {"kind": m.kind, "n": m.n, "operation": m.operation, "repeat": m.repeat, "token_tests": m.token_tests,
         **asdict(m.sample)}
        for m in bench.results
    ]

    def pick(kind: str, n: int, op: str, key: str) -> list[float]:
        return [s[key] for s in samples
                if s["kind"] == kind and s["n"] == n and s["operation"] == op and s[key] is not None]

    summary: list[dict[str, Any]] = []
    for n in bench.sizes:
        for op in OPERATIONS:
            floor_wall, wall = _med(pick("noop", n, op, "wall_s")), _med(pick("secret", n, op, "wall_s"))
            floor_cpu, cpu = _med(pick("noop", n, op, "cpu_s")), _med(pick("secret", n, op, "cpu_s"))
            summary.append({"n": n, "operation": op, "floor_wall_s": floor_wall, "secrets_wall_s": wall,
                            "wall_ratio": _ratio(wall, floor_wall), "floor_cpu_s": floor_cpu, "secrets_cpu_s": cpu,
                            "cpu_ratio": _ratio(cpu, floor_cpu)})
    latency: list[dict[str, Any]] = []
    for n in bench.latency_sizes:
        without, with_latency = _med(pick("secret", n, "create", "wall_s")), _med(
            pick("secret+latency", n, "create", "wall_s"))
        latency.append({"n": n, "without_s": without, "with_latency_s": with_latency,
                        "ratio": _ratio(with_latency, without), "added_s": round(with_latency - without, 3)
                        if with_latency is not None and without is not None else None,
                        "serial_latency_s": round(n * LATENCY_S, 3)})
    memory: list[dict[str, Any]] = []
    largest = max(bench.sizes)
    for op in OPERATIONS:
        peaks = {kind: pick(kind, largest, op, "provider_peak_kib") for kind in ("noop", "secret")}
        memory.append({"n": largest, "operation": op,
                       **{f"{kind}_peak_mib": round(max(v) / 1024, 1) if v else None for kind, v in peaks.items()}})
    return {"sizes": list(bench.sizes), "repeats": bench.repeats, "latency_s": LATENCY_S,
            "summary": summary, "latency": latency, "provider_memory": memory, "samples": samples}


def validate_json(bench: ValidateBench) -> dict[str, Any]:
    tools: dict[str, dict[str, Any]] = {}
    for tool in TOOLS:
        runs = bench.samples[tool]
        tools[tool] = {"wall_s": _med([s.wall_s for s in runs]), "cpu_s": _med([s.cpu_s for s in runs]),
                       "runs": [asdict(s) for s in runs], "reported": bench.reported.get(tool)}
    ours, theirs = tools[TOOLS[0]], tools[TOOLS[1]]
    return {"files": bench.files, "declarations": bench.declarations, "files_with_a_mistake": bench.with_mistakes,
            "repeats": bench.repeats, "tools": tools, "wall_ratio": _ratio(ours["wall_s"], theirs["wall_s"]),
            "cpu_ratio": _ratio(ours["cpu_s"], theirs["cpu_s"])}


def _f(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return "–" if value is None else f"{value:.{digits}f}{suffix}"


def targets(data: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    engine, validate = data.get("engine"), data.get("validate")
    if engine:
        largest = max(engine["sizes"])
        create = next(r for r in engine["summary"] if r["n"] == largest and r["operation"] == "create")
        ratio = create["wall_ratio"]
        rows.append((f"(1) `up` creating N={largest} ≤ {TARGET_FLOOR_RATIO} × floor", f"{_f(ratio)} ×",
                     "yes" if ratio is not None and ratio <= TARGET_FLOOR_RATIO else "**no**"))
        lat = next(r for r in engine["latency"] if r["n"] == largest)
        rows.append((f"(2) N={largest} with {int(engine['latency_s'] * 1000)} ms latency ≤ "
                     f"{TARGET_LATENCY_RATIO} × without", f"{_f(lat['ratio'])} ×",
                     "yes" if lat["ratio"] is not None and lat["ratio"] <= TARGET_LATENCY_RATIO else "**no**"))
    if validate:
        ratio = validate["wall_ratio"]
        rows.append(("(3) validate no slower than check-jsonschema", f"{_f(ratio)} ×",
                     "yes" if ratio is not None and ratio <= TARGET_VALIDATE_RATIO else "**no**"))
    if engine:
        largest = max(engine["sizes"])
        peak = max((r["secret_peak_mib"] or 0) for r in engine["provider_memory"])
        floor = max((r["noop_peak_mib"] or 0) for r in engine["provider_memory"])
        rows.append((f"(4) provider peak memory at N={largest}", f"{peak:.0f} MiB (floor {floor:.0f} MiB)",
                     "reported"))
    return rows


def markdown(data: dict[str, Any]) -> str:
    out: list[str] = []
    machine = data["machine"]
    engine, validate = data.get("engine"), data.get("validate")
    out.append(f"Machine: {machine['cpus']} CPUs, Python {machine['python']}; load average before "
               f"{' / '.join(map(str, machine['load_average_before']))}, after "
               f"{' / '.join(map(str, machine['load_average_after']))}; run took {machine['duration_s']:.0f} s.")
    if engine:
        out += ["", f"**`pulumi up` of N secrets against N no-op dynamic resources (the floor)**: medians of "
                    f"{engine['repeats']} runs on fresh stacks; CPU = this process (inline program) + pulumi CLI "
                    "+ provider process.", "",
                "| N | operation | floor wall s | secrets wall s | × floor | floor CPU s | secrets CPU s | × floor |",
                "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in engine["summary"]:
            out.append(f"| {r['n']} | {r['operation']} | {_f(r['floor_wall_s'])} | {_f(r['secrets_wall_s'])} | "
                       f"{_f(r['wall_ratio'])} | {_f(r['floor_cpu_s'])} | {_f(r['secrets_cpu_s'])} | "
                       f"{_f(r['cpu_ratio'])} |")
        ms = int(engine["latency_s"] * 1000)
        out += ["", f"**{ms} ms latency at the token server** (`up` creating N secrets, medians):", "",
                f"| N | without s | with {ms} ms s | × without | added s | N × {ms} ms s |",
                "| ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in engine["latency"]:
            out.append(f"| {r['n']} | {_f(r['without_s'])} | {_f(r['with_latency_s'])} | {_f(r['ratio'])} | "
                       f"{_f(r['added_s'])} | {_f(r['serial_latency_s'], 1)} |")
        out += ["", "**Peak memory of the provider process** (VmHWM of `python -m pulumi.dynamic`, largest of "
                    "the runs):", "", "| N | operation | floor MiB | secrets MiB |", "| ---: | --- | ---: | ---: |"]
        for r in engine["provider_memory"]:
            out.append(f"| {r['n']} | {r['operation']} | {_f(r['noop_peak_mib'], 0)} | "
                       f"{_f(r['secret_peak_mib'], 0)} |")
    if validate:
        out += ["", f"**`cellosign-iac validate` against check-jsonschema**: {validate['files']} files, "
                    f"{validate['declarations']} secrets, {validate['files_with_a_mistake']} files with a mistake; "
                    f"one process each over the same files, medians of {validate['repeats']} runs.", "",
                "| tool | wall s | CPU s | reported |", "| --- | ---: | ---: | --- |"]
        for tool, r in validate["tools"].items():
            out.append(f"| {tool} | {_f(r['wall_s'])} | {_f(r['cpu_s'])} | {r['reported']} |")
        out.append(f"| ratio | {_f(validate['wall_ratio'])} × | {_f(validate['cpu_ratio'])} × | |")
    rows = targets(data)
    if rows:
        out += ["", "| target | figure | met |", "| --- | --- | --- |"]
        out += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(out)
