"""A GPU acceptance check that needs only the checkout: `python -m harness.gpucheck --out DIR`
(or `nox -s gpu_check`), in under 8 minutes on one GPU, wherever torch, timm and peft exist.

1. The plan rehearsed on CUDA (test_benchmark/test_full_rehearsal.py with
   AMIBR_REHEARSAL_DEVICE=cuda) under the paper, reference-code and fast presets, three pytest
   processes at once.
2. Training and prediction images/s, peak GPU memory and the estimated hours of five folds of
   EfficientNetV2-M end to end, ViT-L end to end and a ViT-g/14 LoRA (H-Optimus-0's
   architecture), random weights, batch 8, in fp32 and bf16, with one job alone on the GPU and
   with four processes sharing it (what `launch --jobs-per-gpu 4` would do).
3. DIR/gpucheck.json and DIR/gpucheck.md, rewritten after every step (a killed check keeps what
   it measured).

Each step runs in its own try: a failure (out of memory, a broken kernel) is recorded with its
reason and the check goes on; the exit code is 1 when any step failed, 0 otherwise, 2 without a
CUDA device (or on a bad option). `--device cpu --tiny` runs the same plumbing on the CPU with
smoke-size models in seconds (tests); numbers from it mean nothing.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from harness import paths

FULL_CONFIGS = ("efficientnetv2-m:end_to_end", "vit-l16:end_to_end", "h-optimus-0:lora")
TINY_CONFIGS = ("smoke-resnet:end_to_end", "smoke-vit:lora")
PRESETS = ("paper", "reference-code", "fast")
POOL, TESTS = 2894, 826 + 746 + 2107  # PROTOCOL.md: training pool, the three test sets
REHEARSAL = "test_benchmark/test_full_rehearsal.py"
BUDGET_S = 450.0  # of the 8 minutes; a measurement starts only while its guess still fits
REHEARSAL_S = 180.0  # the three rehearsals, at once
STEP_GUESS_S = {"measure": 30.0, "shared": 60.0}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _environment(device: str) -> dict[str, Any]:
    import torch

    env: dict[str, Any] = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": device,
        "python": sys.version.split()[0],
    }
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(0)
        env |= {"gpu": props.name, "gpu_memory_gib": round(props.total_memory / 2**30, 1)}
    else:
        env["cpu_threads"] = torch.get_num_threads()
    return env


# --- steps -------------------------------------------------------------------------------------------


def rehearse(
    presets: list[str], device: str, out: Path, timeout_s: float, test_file: str = REHEARSAL
) -> list[dict]:
    """The plan with shrunken models on `device`, one pytest subprocess per preset, all at once
    (tiny models leave the device mostly idle; each rehearsal has its own caches and weights)."""
    env = dict(os.environ, AMIBR_REHEARSAL_DEVICE=device)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(paths.REPO_ROOT), env.get("PYTHONPATH")]))
    t0, procs = time.perf_counter(), {}
    for preset in presets:
        cmd = [sys.executable, "-m", "pytest", str(paths.REPO_ROOT / test_file), "-q",
               "--benchmark-disable", "-p", "no:cacheprovider",
               f"--junitxml={out / f'rehearsal-{preset}.xml'}"]  # fmt: skip
        procs[preset] = subprocess.Popen(
            cmd, cwd=paths.REPO_ROOT, env=env | {"AMIBR_PRESET": preset},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    entries = []
    for preset, proc in procs.items():
        try:
            text = proc.communicate(timeout=max(1.0, timeout_s - (time.perf_counter() - t0)))[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            text = proc.communicate()[0] + f"\ntimed out after {timeout_s:.0f} s"
        tail = (text or "").strip().splitlines()[-15:]
        entries.append(
            {
                "preset": preset,
                "status": "passed" if proc.returncode == 0 else "failed",
                "returncode": proc.returncode,
                "seconds": round(time.perf_counter() - t0, 1),
                "summary": tail[-1] if tail else "",
                "tail": "\n".join(tail),
            }
        )
    return entries


def _hours(row: dict[str, Any]) -> dict[str, float]:
    from harness.throughput import config_hours

    return {str(e): round(config_hours(row, POOL, TESTS, e), 2) for e in (20, 100)}


def measure_one(config: str, precision: str, device: str, steps: int, batch: int) -> dict:
    """One job alone: harness.throughput.measure in this process, memory released after."""
    from harness import throughput
    from harness.config import parse_config

    key, method = parse_config(config)
    import torch

    dev = torch.device(device)
    try:
        return throughput.measure(key, method, device=dev, batch=batch, steps=steps,
                                  precision=precision)  # fmt: skip
    finally:
        throughput._release(dev)


def measure_shared(
    config: str, precision: str, device: str, steps: int, batch: int, jobs: int, out: Path,
    timeout_s: float,
) -> list[dict]:  # fmt: skip
    """`jobs` worker processes measuring at once on one device; they start timing together."""
    tag = f"{config.replace(':', '_')}-{precision}-{jobs}"
    work = out / f"workers-{tag}"
    work.mkdir(parents=True, exist_ok=True)
    for stale in work.iterdir():
        stale.unlink()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(paths.REPO_ROOT), env.get("PYTHONPATH")]))
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "harness.gpucheck",
                "--worker",
                str(work / f"{i}.json"),
                "--configs",
                config,
                "--precisions",
                precision,
                "--device",
                device,
                "--steps",
                str(steps),
                "--batch",
                str(batch),
                "--barrier",
                str(work),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for i in range(jobs)
    ]
    deadline = time.monotonic() + timeout_s
    try:
        while len(list(work.glob("ready-*"))) < jobs and all(p.poll() is None for p in procs):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{jobs} workers not ready after {timeout_s:.0f} s")
            time.sleep(0.1)
        (work / "go").touch()
        logs = [p.communicate(timeout=max(1.0, deadline - time.monotonic()))[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    rows = []
    for i, (p, log) in enumerate(zip(procs, logs, strict=True)):
        result = work / f"{i}.json"
        if p.returncode != 0 or not result.is_file():
            lines = [ln for ln in (log or "").splitlines() if ln.strip()]
            raise RuntimeError(f"worker {i} exited {p.returncode}: {lines[-1] if lines else ''}")
        rows.append(json.loads(result.read_text()))
    return rows


def _worker(args) -> int:
    """One process of a shared measurement: wait at the barrier, measure, write JSON."""
    import torch

    if args.device.startswith("cuda"):
        torch.zeros(1, device=args.device)  # CUDA context before the barrier
    barrier = Path(args.barrier)
    (barrier / f"ready-{Path(args.worker).stem}").touch()
    deadline = time.monotonic() + 600
    while not (barrier / "go").exists():
        if time.monotonic() > deadline:
            raise TimeoutError("no go signal")
        time.sleep(0.02)
    row = measure_one(args.configs[0], args.precisions[0], args.device, args.steps, args.batch)
    paths.atomic_write(args.worker, json.dumps(row))
    return 0


def summarise(config: str, precision: str, jobs: int, rows: list[dict]) -> dict[str, Any]:
    """Per-job rates and their sum over the processes sharing the device."""
    train = [r["train_images_per_s"] for r in rows]
    out: dict[str, Any] = {
        "config": config,
        "precision": precision,
        "jobs": jobs,
        "status": "ok",
        "per_job": rows,
        "infer_images_per_s_total": round(sum(r["infer_images_per_s"] for r in rows), 2),
        "train_images_per_s_total": None if None in train else round(sum(train), 2),
        "peak_gpu_gib_per_job": max((r.get("peak_gpu_gib") or 0) for r in rows) or None,
        "hours_5_folds_per_job": _hours(min(rows, key=lambda r: r["infer_images_per_s"])),
    }
    return out


# --- report --------------------------------------------------------------------------------------------


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    where = env.get("gpu", f"CPU ({env.get('cpu_threads')} threads)")
    lines = [
        "# GPU check",
        "",
        f"{report['created']}, {where}, torch {env['torch']} (CUDA {env['cuda']}); "
        f"{report['seconds']:.0f} s; " + ("TINY (plumbing only; numbers mean nothing)"
                                          if report["tiny"] else "random weights, batch 8"),
        "",
        "## Rehearsal of the plan on this device",
        "",
        "| preset | status | seconds | pytest |",
        "|---|---|---|---|",
    ]  # fmt: skip
    for r in report["rehearsals"]:
        lines.append(
            f"| {r['preset']} | {r['status']} | {r.get('seconds', '-')} "
            f"| {r.get('summary') or r.get('reason', '')} |"
        )
    lines += [
        "",
        "## Throughput",
        "",
        "Hours: five folds of one job at 20 and 100 epochs on the real data's sizes "
        f"({POOL} pool, {TESTS} test images); with several jobs, each job's own rate.",
        "",
        "| configuration | precision | jobs | train img/s per job (total) "
        "| predict img/s total | peak GiB per job | 5 folds, hours | status |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in report["measurements"]:
        if m["status"] != "ok":
            lines.append(f"| {m['config']} | {m['precision']} | {m['jobs']} | | | | "
                         f"| {m['status']}: {m.get('reason', '')} |")  # fmt: skip
            continue
        per = [r["train_images_per_s"] for r in m["per_job"]]
        train = (
            "embeds once"
            if None in per
            else f"{min(per):.1f} ({m['train_images_per_s_total']:.1f})"
        )
        h = m["hours_5_folds_per_job"]
        lines.append(
            f"| {m['config']} | {m['precision']} | {m['jobs']} | {train} "
            f"| {m['infer_images_per_s_total']:.1f} | {m['peak_gpu_gib_per_job'] or '-'} "
            f"| {h['20']} to {h['100']} | ok |"
        )
    lines += [
        "",
        "Choosing `launch --jobs-per-gpu K`: K jobs fit when K x peak GiB per job stays below "
        "the GPU's memory (leave ~10 %); sharing pays when the total img/s with 4 jobs beats "
        "the single job's.",
    ]
    return "\n".join(lines) + "\n"


def _write(report: dict[str, Any], out: Path) -> None:
    paths.atomic_write(out / "gpucheck.json", json.dumps(report, indent=2) + "\n")
    paths.atomic_write(out / "gpucheck.md", markdown(report))


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harness.gpucheck", description=__doc__.split("\n")[0]
    )
    p.add_argument("--out", default=str(paths.REPO_ROOT / "runs" / "gpucheck"))
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (with --tiny)")
    p.add_argument("--tiny", action="store_true", help="smoke-size models: plumbing only")
    p.add_argument("--configs", type=_csv, help="configurations, comma-separated")
    p.add_argument("--precisions", type=_csv, default=["fp32", "bf16"])
    p.add_argument("--jobs", type=lambda t: [int(x) for x in _csv(t)], default=None,
                   help="processes sharing the device, e.g. 1,4 (default; 1,2 with --tiny)")  # fmt: skip
    p.add_argument("--steps", type=int, help="timed training steps (default 5; 1 with --tiny)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--budget-s", type=float, default=BUDGET_S, help="stop starting steps after")
    p.add_argument("--skip-rehearsal", action="store_true")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--barrier", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.configs = args.configs or list(TINY_CONFIGS if args.tiny else FULL_CONFIGS)
    args.steps = args.steps or (1 if args.tiny else 5)
    args.jobs = args.jobs or ([1, 2] if args.tiny else [1, 4])
    if args.worker:
        return _worker(args)
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            "gpucheck: needs a CUDA device (torch.cuda.is_available() is False here); "
            "`--device cpu --tiny` checks only the plumbing",
            file=sys.stderr,
        )
        return 2
    if not args.device.startswith("cuda") and not args.tiny:
        print("gpucheck: --device cpu runs only with --tiny (plumbing check)", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()

    def left() -> float:
        return args.budget_s - (time.monotonic() - t0)

    report: dict[str, Any] = {
        "created": _now(),
        "tiny": args.tiny,
        "budget_s": args.budget_s,
        "seconds": 0.0,
        "environment": _environment(args.device),
        "rehearsals": [],
        "measurements": [],
    }
    failed = False
    why = ""
    if args.tiny or args.skip_rehearsal:
        why = f"--tiny / --skip-rehearsal (the CPU suite runs {REHEARSAL})"
    elif importlib.util.find_spec("pytest") is None:
        why = "pytest is not installed here"
    if why:
        rehearsals = [{"preset": p, "status": "skipped", "reason": why} for p in PRESETS]
    else:
        try:
            rehearsals = rehearse(list(PRESETS), args.device, out, timeout_s=REHEARSAL_S)
        except Exception as exc:  # noqa: BLE001 - recorded, the check goes on
            reason = f"{type(exc).__name__}: {exc}"
            rehearsals = [{"preset": p, "status": "error", "reason": reason} for p in PRESETS]
    for entry in rehearsals:
        failed |= entry["status"] in ("failed", "error")
        report["rehearsals"].append(entry)
        print(f"rehearsal {entry['preset']}: {entry['status']}", file=sys.stderr)
    report["seconds"] = round(time.monotonic() - t0, 1)
    _write(report, out)
    for jobs in args.jobs:  # every configuration alone first, then shared
        for config in args.configs:
            for precision in args.precisions:
                entry = {"config": config, "precision": precision, "jobs": jobs}
                guess = STEP_GUESS_S["measure" if jobs == 1 else "shared"]
                if not args.tiny and left() < guess:
                    entry |= {"status": "skipped", "reason": "time budget spent"}
                else:
                    try:
                        if jobs == 1:
                            rows = [measure_one(config, precision, args.device, args.steps,
                                                args.batch)]  # fmt: skip
                        else:
                            rows = measure_shared(config, precision, args.device, args.steps,
                                                  args.batch, jobs, out, max(60.0, left() + 120))  # fmt: skip
                        entry = summarise(config, precision, jobs, rows)
                    except Exception as exc:  # noqa: BLE001 - recorded, the check goes on
                        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
                        entry |= {"status": "failed", "reason": last}
                        failed = True
                report["measurements"].append(entry)
                report["seconds"] = round(time.monotonic() - t0, 1)
                _write(report, out)
                print(f"{config} {precision} x{jobs}: {entry['status']}", file=sys.stderr)
    print(f"gpucheck: {out / 'gpucheck.md'} ({report['seconds']:.0f} s)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
