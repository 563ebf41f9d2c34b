"""`amibr-bench launch`: the plan as one job per (configuration, fold), through submitit.

Each job trains its fold into the same hash-keyed store as `amibr-bench run`
(`runner.run_config(cfg, task, store, [fold])`), so launches, runs and relaunches share finished
folds: those are skipped at submission, and run_config skips any a concurrent launch finished in
the meantime. Executors:

- ``local``: subprocesses on this machine; `--parallel N` runs N at once, placed on the visible
  GPUs through CUDA_VISIBLE_DEVICES, at most `--jobs-per-gpu K` on one GPU (`place`).
- ``slurm``: a Slurm job array (`--partition --time --gpus-per-node --cpus-per-task --mem
  --account`, `--slurm-extra KEY=VALUE` -> sbatch), at most `--parallel` tasks at once.
- ``debug``: submitit's DebugExecutor, in this process, one job after the other (tests).

Jobs are submitit Checkpointables: on pre-emption or a time limit submitit requeues them, and the
fold resumes from the checkpoint `trainer.fit` wrote at the end of its last epoch. A linear
probe's folds after its first wait for that one (a second job array, `afterany` on Slurm), so
the backbone embeds each image once into the shared embedding cache instead of once per fold.

When the jobs end, the store's results set is exported (harness.export) and each failed job is
reported with its log files and the reason (the last line of its exception). `--dry-run`
submits nothing and needs neither a GPU nor Slurm: it lists the jobs with their expected
GPU-hours, peak GPU memory and disk (harness.cost) and the executor settings it would use.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from submitit.helpers import Checkpointable

from harness import cost, data, models, paths
from harness.config import (
    PRESET_NOTES,
    PRESET_PRECISION,
    RunConfig,
    config_name,
    parse_config,
    parse_folds,
)
from harness.plan import PAPER_PLAN, missing_for, not_run_reason
from harness.precision import comparison_md, store_comparison
from harness.store import Store

EXECUTORS = ("local", "slurm", "debug")
LOCAL_TIMEOUT_MIN = 60 * 24 * 7  # local jobs: no time limit worth the name
POLL_S = {"local": 0.5, "slurm": 30.0}

# --- one job -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobSettings:
    """What every job of a launch shares (plain values: jobs are pickled by submitit)."""

    store: str
    data_root: str
    data: str  # real | synthetic
    weights_dir: str | None
    device: str  # auto | cpu | cuda[:N]
    checkpoint_interval_s: float = 0.0


_TASKS: dict[tuple, Any] = {}  # decoded data per process (the debug executor runs jobs in-process)


def _task(settings: JobSettings, cfg: RunConfig):
    from harness.taskdata import load_task

    key = (settings.data_root, settings.data, cfg.subset, cfg.seed, cfg.folds_source)
    if key not in _TASKS:
        _TASKS.clear()
        _TASKS[key] = load_task(
            Path(settings.data_root),
            settings.data,
            dict(cfg.subset),
            seed=cfg.seed,
            folds_source=cfg.folds_source,
        )
    return _TASKS[key]


def job_device(flag: str, tier: str):
    """The device a job trains on; the full tier refuses to fall back to the CPU unasked."""
    from harness.runner import resolve_device

    device = resolve_device(flag)
    if tier == "full" and device.type != "cuda" and flag in (None, "auto"):
        raise paths.MissingInputError(
            "the full tier needs a GPU and no CUDA device is available to this job "
            "(pass --device cpu to train on the CPU anyway, or --tier smoke)"
        )
    return device


class FoldJob(Checkpointable):
    """One (configuration, fold) as a submitit job. Requeued after pre-emption or a time limit
    (Checkpointable resubmits the same call); the fold then resumes from its last epoch's
    checkpoint in the store. Returns {config, fold, hash, trained, seconds, resumed_from_epoch,
    slide_overlaps, notes}."""

    def __init__(
        self, cfg: RunConfig, fold: int, settings: JobSettings, fail_after_epoch: int | None = None
    ) -> None:
        self.cfg, self.fold, self.settings = cfg, fold, settings
        self.fail_after_epoch = fail_after_epoch  # tests: a job killed mid-fold

    def __call__(self) -> dict[str, Any]:
        from rich.console import Console

        from harness.runner import run_config

        cfg, s = self.cfg, self.settings
        console = Console(stderr=True, soft_wrap=True)
        device = job_device(s.device, cfg.tier)
        console.print(
            f"{config_name(cfg.model, cfg.method)} fold {self.fold}: {cfg.label} hash {cfg.hash} "
            f"on {device} (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')})",
            markup=False,
            highlight=False,
        )
        store = Store(s.store)
        if store.is_done(cfg.hash, self.fold):  # finished meanwhile (another launch, a run)
            return {"config": config_name(cfg.model, cfg.method), "fold": self.fold,
                    "hash": cfg.hash, "trained": False, "seconds": 0.0,
                    "resumed_from_epoch": 0, "slide_overlaps": None, "notes": None}  # fmt: skip
        task = _task(s, cfg)
        report = run_config(
            cfg,
            task,
            store,
            [self.fold],
            device=device,
            weights_dir=s.weights_dir,
            console=console,
            fail_after_epoch=self.fail_after_epoch,
            checkpoint_interval_s=s.checkpoint_interval_s,
        )
        info = store.load_fold(cfg.hash, self.fold)[2]
        return {
            "config": config_name(cfg.model, cfg.method),
            "fold": self.fold,
            "hash": cfg.hash,
            "trained": self.fold in report.folds_done,
            "seconds": round(report.seconds, 1),
            "resumed_from_epoch": info.get("resumed_from_epoch", 0),
            "slide_overlaps": len(task.slide_overlaps),
            "notes": list(task.notes),
        }


# --- the jobs of a launch ------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    cfg: RunConfig
    fold: int
    wave: int = 1  # 2: a linear probe's later fold, after its configuration's first job ended

    @property
    def name(self) -> str:
        return f"{config_name(self.cfg.model, self.cfg.method)} fold {self.fold}"


def make_config(key: str, method: str, args) -> RunConfig:
    """The RunConfig `amibr-bench run` would train for these options (same hash, same store)."""
    from harness import splits
    from harness.smoke import smoke_settings

    extra = smoke_settings(method, args.data) if args.tier == "smoke" else {}
    precision = getattr(args, "precision", None)
    source = getattr(args, "folds_source", None) or splits.AUTHORS
    folds = splits.fold_assignment(args.data_root_path, source)  # the hash covers the folds
    return RunConfig(
        key, method, args.preset, args.tier, args.data, precision=precision,
        folds_source=folds.source, folds_sha256=folds.sha256, **extra,
    )  # fmt: skip


def plan_jobs(
    configs: Sequence[RunConfig], folds: Sequence[int], store: Store
) -> tuple[list[Job], list[Job]]:
    """(jobs to submit, jobs already finished in the store). A linear probe's first unfinished
    fold is wave 1, its others wave 2 (they reuse the embeddings the first one cached)."""
    todo, done = [], []
    for cfg in configs:
        first = True
        for fold in folds:
            if store.is_done(cfg.hash, fold):
                done.append(Job(cfg, fold))
                continue
            wave = 2 if cfg.method == "linear_probe" and not first else 1
            todo.append(Job(cfg, fold, wave))
            first = False
    todo.sort(key=lambda j: j.wave)  # stable: configuration order within a wave
    return todo, done


def _configs(args) -> tuple[list[RunConfig], dict[str, str]]:
    """The chosen configurations (or the plan's), and those that lack something here
    (configuration -> reason). A real launch leaves those out of the plan, and refuses a chosen
    one without weights (InputError); a dry run keeps them all (the jobs may run elsewhere)."""
    chosen = [parse_config(c) for c in args.config] if args.config else None
    weights_dir = getattr(args, "weights_dir", None)
    out, lacking = [], {}
    for key, method in chosen or PAPER_PLAN:
        cfg = make_config(key, method, args)
        lacks = [] if cfg.spec.random_init else missing_for(key, weights_dir, cuda=True)
        if lacks:
            lacking[config_name(key, method)] = not_run_reason(lacks)
            if chosen and not args.dry_run:
                models.find_weights(key, weights_dir)  # WeightsMissing: one clear line, exit 2
            if not args.dry_run:
                continue
        out.append(cfg)
    return out, lacking


# --- local executor: placement on the visible GPUs ----------------------------------------------


def visible_gpus() -> list[str]:
    """The GPUs this launch may place jobs on: $CUDA_VISIBLE_DEVICES's entries, else every CUDA
    device torch sees (none on a machine without CUDA)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def place(load: Sequence[int], per_gpu: int) -> int | None:
    """The GPU for the next job: the least loaded one (lowest index on ties) among those running
    fewer than `per_gpu` jobs; None when every GPU is full. `load[i]`: jobs running on GPU i."""
    free = [i for i, n in enumerate(load) if n < per_gpu]
    return min(free, key=lambda i: (load[i], i)) if free else None


def local_capacity(n_gpus: int, per_gpu: int, parallel: int | None) -> int:
    """Jobs at once: --parallel, else every GPU slot (GPUs x K), else 1 on a CPU-only machine;
    InputError when --parallel asks for more slots than the GPUs have."""
    if n_gpus == 0:
        return parallel or 1
    slots = n_gpus * per_gpu
    if parallel is not None and parallel > slots:
        raise paths.InputError(
            f"--parallel {parallel} exceeds {n_gpus} visible GPU(s) x --jobs-per-gpu {per_gpu}; "
            f"raise --jobs-per-gpu (see README: choosing K) or lower --parallel"
        )
    return parallel or slots


# --- slurm settings --------------------------------------------------------------------------------


def parse_time(text: str) -> int:
    """Slurm's --time formats (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS) -> minutes."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", str(text).strip())
    if not m:
        raise paths.InputError(f"--time must read like 90, 12:00:00 or 2-00:00:00, not {text!r}")
    days, a, b, c = (int(g) if g else 0 for g in m.groups())
    if m.group(1) is not None:  # D-HH[:MM[:SS]]
        minutes = days * 1440 + a * 60 + b + (c > 0)
    elif m.group(4) is not None:  # HH:MM:SS
        minutes = a * 60 + b + (c > 0)
    else:  # MM[:SS]
        minutes = a + (b > 0)
    if minutes <= 0:
        raise paths.InputError(f"--time must be positive, not {text!r}")
    return minutes


def parse_mem(text: str) -> float:
    """--mem like 64G, 64GB, 64000M, 1T or 64 (GB) -> GB."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)B?", str(text).strip(), re.IGNORECASE)
    if not m:
        raise paths.InputError(f"--mem must read like 64G or 64000M, not {text!r}")
    scale = {"K": 1 / 1024**2, "M": 1 / 1024, "G": 1, "T": 1024, "": 1}[m.group(2).upper()]
    return float(m.group(1)) * scale


def parse_extra(items: Sequence[str] | None) -> dict[str, str]:
    """--slurm-extra KEY=VALUE (repeatable) -> submitit's slurm_additional_parameters."""
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise paths.InputError(f"--slurm-extra must read KEY=VALUE, not {item!r}")
        out[key.strip().lstrip("-")] = value.strip()
    return out


def slurm_parameters(args, n_jobs: int) -> dict[str, Any]:
    """submitit.SlurmExecutor parameters (sbatch names) from the launch options."""
    params: dict[str, Any] = {
        "job_name": "amibr-bench",
        "time": parse_time(args.time or "24:00:00"),
        "gpus_per_node": args.gpus_per_node,
        "nodes": 1,
        "ntasks_per_node": 1,
        "signal_delay_s": 120,  # the last epoch's checkpoint is on disk; leave time to requeue
    }
    if args.partition:
        params["partition"] = args.partition
    if args.cpus_per_task:
        params["cpus_per_task"] = args.cpus_per_task
    if args.mem:
        params["mem"] = parse_mem(args.mem)
    if args.account:
        params["account"] = args.account
    if args.parallel:
        params["array_parallelism"] = args.parallel
    extra = parse_extra(args.slurm_extra)
    if extra:
        params["additional_parameters"] = extra
    return params


def sbatch_preview(params: dict[str, Any], folder: Path, n_jobs: int) -> str:
    """The sbatch header submitit would write for an array of `n_jobs` (no Slurm needed)."""
    from submitit.slurm import slurm

    converted = dict(params)
    if "mem" in converted:
        converted["mem"] = slurm._convert_mem(converted["mem"])
    command = f"{sys.executable} -u -m submitit.core._submit {folder}"
    return slurm._make_sbatch_string(
        command=command, folder=folder, map_count=n_jobs if n_jobs > 1 else None, **converted
    )


# --- running the jobs ------------------------------------------------------------------------------


@dataclass
class Outcome:
    job: Job
    result: dict[str, Any] | None = None
    reason: str = ""  # the exception's last line when the job failed
    logs: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.result is not None


def failure_reason(exc: BaseException) -> str:
    """The line that says why a job failed: the last line of the job's traceback (submitit
    wraps it between dashed rules), of a plain exception's message, or submitit's first line
    when the job left no result (killed, out of memory, cancelled)."""
    text = str(exc)
    blocks = re.split(r"\n-{20,}\n", text)
    if len(blocks) >= 3:  # FailedJobError: message, traceback, where the logs are
        lines = [ln.strip() for ln in blocks[1].splitlines() if ln.strip()]
        return lines[-1] if lines else text.splitlines()[0]
    from submitit.core.utils import UncompletedJobError

    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if isinstance(exc, UncompletedJobError):
        return " ".join(lines[:2]) if lines else type(exc).__name__
    return f"{type(exc).__name__}: {lines[-1] if lines else ''}".rstrip(": ")


def _outcome(job: Job, sj) -> Outcome:
    logs = [str(sj.paths.stderr), str(sj.paths.stdout)]
    exc = sj.exception()  # the debug executor runs the job here
    if exc is not None:
        return Outcome(job, None, failure_reason(exc), logs)
    return Outcome(job, sj.result(), "", logs)


def _report(console, out: Outcome) -> None:
    if out.ok:
        r = out.result or {}
        how = "trained" if r.get("trained") else "finished by another run"
        if r.get("resumed_from_epoch"):
            how += f", resumed after epoch {r['resumed_from_epoch']}"
        console.print(f"  done   {out.job.name} ({how}, {r.get('seconds', 0):.0f} s)")
    else:
        console.print(f"  FAILED {out.job.name}: {out.reason}", markup=False, highlight=False)
        console.print(f"         log: {out.logs[0]}", markup=False, highlight=False)


def run_debug(jobs: Sequence[Job], settings: JobSettings, logs: Path, console, **hooks) -> list:
    """submitit's DebugExecutor: every job in this process, in order (waves respected)."""
    import submitit

    executor = submitit.DebugExecutor(folder=logs)
    calls = [FoldJob(j.cfg, j.fold, settings, **hooks) for j in jobs]
    submitted = executor.submit_array(calls)
    outcomes = []
    for job, sj in zip(jobs, submitted, strict=True):
        outcomes.append(_outcome(job, sj))
        outcomes[-1].logs = ["(debug executor: this process's own output)"]
        _report(console, outcomes[-1])
    return outcomes


def _local_parameters(gpu: str | None, timeout_min: int) -> dict[str, Any]:
    if gpu is None:
        return {"timeout_min": timeout_min, "gpus_per_node": 0, "visible_gpus": (), "setup": []}
    if gpu.isdigit():
        return {"timeout_min": timeout_min, "gpus_per_node": 1, "visible_gpus": (int(gpu),),
                "setup": []}  # fmt: skip
    # a UUID or MIG name: submitit takes integers, so the job's shell sets it
    return {"timeout_min": timeout_min, "gpus_per_node": 0, "visible_gpus": (),
            "setup": [f"export CUDA_VISIBLE_DEVICES={gpu}"]}  # fmt: skip


def run_local(
    jobs: Sequence[Job],
    settings: JobSettings,
    logs: Path,
    console,
    *,
    gpus: Sequence[str],
    per_gpu: int,
    parallel: int,
    timeout_min: int = LOCAL_TIMEOUT_MIN,
    **hooks,
) -> list[Outcome]:
    """Subprocesses through submitit's LocalExecutor, `parallel` at once, each placed on a GPU
    (`place`) through CUDA_VISIBLE_DEVICES; a wave-2 job starts once its configuration's wave-1
    job ended. Interrupting the launch cancels the running jobs (their folds resume later)."""
    import submitit

    executor = submitit.LocalExecutor(folder=logs)
    pending, running, outcomes = list(jobs), {}, []
    load = [0] * len(gpus)
    ended = {j.cfg.hash for j in jobs} - {j.cfg.hash for j in jobs if j.wave == 1}
    try:
        while pending or running:
            for job in list(pending):
                if len(running) >= parallel:
                    break
                if job.wave == 2 and job.cfg.hash not in ended:
                    continue
                slot = place(load, per_gpu) if gpus else None
                if gpus and slot is None:
                    break
                executor.update_parameters(
                    **_local_parameters(None if slot is None else gpus[slot], timeout_min)
                )
                sj = executor.submit(FoldJob(job.cfg, job.fold, settings, **hooks))
                where = f"GPU {gpus[slot]}" if slot is not None else "CPU"
                console.print(f"  start  {job.name} on {where} (job {sj.job_id})")
                running[job] = (sj, slot)
                pending.remove(job)
                if slot is not None:
                    load[slot] += 1
            time.sleep(POLL_S["local"])
            for job, (sj, slot) in list(running.items()):
                if not sj.done():
                    continue
                del running[job]
                if slot is not None:
                    load[slot] -= 1
                if job.wave == 1:
                    ended.add(job.cfg.hash)
                outcomes.append(_outcome(job, sj))
                _report(console, outcomes[-1])
    except BaseException:
        for sj, _ in running.values():
            sj.cancel()
        raise
    return outcomes


def run_slurm(
    jobs: Sequence[Job],
    settings: JobSettings,
    logs: Path,
    console,
    params: dict[str, Any],
    *,
    wait: bool = True,
) -> list[Outcome]:
    """A Slurm job array per wave (wave 2 `afterany` wave 1); waits for every job unless told
    not to (then the outcomes are empty: relaunch later to export)."""
    import submitit

    try:
        executor = submitit.SlurmExecutor(folder=logs)
    except RuntimeError as exc:
        raise paths.MissingInputError(
            f"--executor slurm: {exc} (run from a Slurm login node, or --dry-run)"
        ) from exc
    executor.update_parameters(**params)
    submitted = []
    first_array = None
    for wave in (1, 2):
        chunk = [j for j in jobs if j.wave == wave]
        if not chunk:
            continue
        if wave == 2 and first_array is not None:
            extra = dict(params.get("additional_parameters", {}))
            extra["dependency"] = f"afterany:{first_array}"
            executor.update_parameters(additional_parameters=extra)
        sjs = executor.submit_array([FoldJob(j.cfg, j.fold, settings) for j in chunk])
        first_array = first_array or sjs[0].job_id.split("_")[0]
        console.print(
            f"  wave {wave}: {len(sjs)} job(s) submitted, array {sjs[0].job_id.split('_')[0]}"
        )
        submitted += list(zip(chunk, sjs, strict=True))
    console.print(f"  logs: {logs}")
    if not wait:
        return []
    outcomes, left = [], dict(submitted)
    while left:
        time.sleep(POLL_S["slurm"])
        for job, sj in list(left.items()):
            if sj.done():
                del left[job]
                outcomes.append(_outcome(job, sj))
                _report(console, outcomes[-1])
    return outcomes


# --- dry run ---------------------------------------------------------------------------------------


def dry_run(
    configs: Sequence[RunConfig],
    jobs: Sequence[Job],
    args,
    console,
    *,
    logs: Path,
    throughput_file: Path,
) -> None:
    """Print every job, per configuration and in total the expected GPU-hours, peak GPU memory
    and disk, and the executor settings; submits nothing."""
    from rich.table import Table

    precision = {c.precision for c in configs}
    tflops = {p: args.assume_tflops or cost.ASSUMED_TFLOPS[p] for p in precision}
    recorded = cost.load_throughput(throughput_file)
    facts = cost.model_facts([c.model for c in configs])
    index = {c.hash: 0 for c in configs}
    per_job = []
    for job in jobs:
        c = job.cfg
        per_job.append(
            cost.job_cost(c, index[c.hash], facts[c.model], recorded, tflops[c.precision],
                          str(throughput_file))
        )  # fmt: skip
        index[c.hash] += 1
    listing = Table(title=f"{len(jobs)} job(s), one per (configuration, fold)")
    for col in ("#", "job", "wave", "precision", "GPU-h", "peak GPU GiB", "source"):
        listing.add_column(col)
    for i, (job, jc) in enumerate(zip(jobs, per_job, strict=True), 1):
        listing.add_row(str(i), job.name, str(job.wave), job.cfg.precision,
                        f"{jc.gpu_hours:.2f}", f"{jc.peak_gib:.1f}", jc.source)  # fmt: skip
    console.print(listing)
    table = Table(title="per configuration")
    for col in ("configuration", "jobs", "GPU-h", "peak GPU GiB", "disk kept",
                "checkpoint while training", "source"):  # fmt: skip
        table.add_column(col)
    total_h, total_disk, ckpts = 0.0, 0, []
    for cfg in configs:
        mine = [jc for job, jc in zip(jobs, per_job, strict=True) if job.cfg.hash == cfg.hash]
        if not mine:
            continue
        hours = sum(jc.gpu_hours for jc in mine)
        disk = sum(jc.final_bytes for jc in mine)
        total_h, total_disk = total_h + hours, total_disk + disk
        ckpts += [jc.checkpoint_bytes for jc in mine]
        table.add_row(
            config_name(cfg.model, cfg.method),
            str(len(mine)),
            f"{hours:.2f}",
            f"{max(jc.peak_gib for jc in mine):.1f}",
            cost.human_bytes(disk),
            cost.human_bytes(mine[0].checkpoint_bytes),
            ", ".join(sorted({jc.source for jc in mine})),
        )
    console.print(table)
    caches = cost.cache_bytes([c for c in configs if any(j.cfg.hash == c.hash for j in jobs)])
    at_once = args.parallel or (1 if args.executor != "slurm" else len(jobs))
    transient = sum(sorted(ckpts, reverse=True)[:at_once])
    console.print(
        f"total: {len(jobs)} job(s), {total_h:.1f} GPU-hours, results kept "
        f"{cost.human_bytes(total_disk)}, caches {cost.human_bytes(sum(caches.values()))} "
        f"({', '.join(f'{k} {cost.human_bytes(v)}' for k, v in caches.items())}), checkpoints "
        f"of running folds up to {cost.human_bytes(transient)} ({at_once} at once)",
        markup=False,
        highlight=False,
    )
    sources = {jc.source for jc in per_job}
    assumed = ", ".join(f"{p} {t:g} TFLOP/s" for p, t in sorted(tflops.items()))
    console.print(
        f"assumed: {cost.EPOCHS} epochs per fold (the protocol's maximum; early stopping ends "
        f"most folds sooner: an upper bound), {cost.POOL_IMAGES} training-pool images (4/5 "
        f"trained, 1/5 validated each epoch), {cost.TESTS} test images; "
        + (
            f"estimate: FLOPs per image counted on the meta device at a sustained {assumed} "
            "(--assume-tflops), training = 3 (end to end) or 2 (LoRA) forward passes; memory = "
            "float32 weights, gradients and Adam moments of trained tensors + batch activations"
            if "estimate" in sources
            else ""
        )
        + (
            f"; recorded: {throughput_file}"
            if any(s.startswith("recorded") for s in sources)
            else f"; no recorded throughput at {throughput_file}"
        ),  # fmt: skip
        markup=False,
        highlight=False,
    )
    _print_settings(args, jobs, console, logs)


def _print_settings(args, jobs: Sequence[Job], console, logs: Path) -> None:
    waves = sorted({j.wave for j in jobs})
    if args.executor == "slurm":
        params = slurm_parameters(args, len(jobs))
        console.print(f"submitit.SlurmExecutor(folder={logs}).update_parameters(**{params})")
        for wave in waves:
            n = sum(j.wave == wave for j in jobs)
            dep = " (with dependency afterany:<wave-1 array>)" if wave == 2 else ""
            console.print(f"sbatch for wave {wave}, {n} job(s){dep}:", markup=False)
            try:
                console.print(sbatch_preview(params, logs, n), markup=False, highlight=False)
            except Exception as exc:  # noqa: BLE001 - a preview only; submitit's internals may move
                console.print(f"(no sbatch preview: {type(exc).__name__}: {exc})", markup=False)
    elif args.executor == "local":
        gpus = [] if str(args.device).startswith("cpu") else visible_gpus()
        at_once = local_capacity(len(gpus), args.jobs_per_gpu, args.parallel)
        where = (
            f"on GPUs {', '.join(gpus)} (CUDA_VISIBLE_DEVICES), at most {args.jobs_per_gpu} per GPU"
            if gpus
            else "on the CPU"
        )
        console.print(
            f"submitit.LocalExecutor(folder={logs}): {at_once} job(s) at once {where}; "
            f"timeout_min={LOCAL_TIMEOUT_MIN}",
            markup=False,
        )
    else:
        console.print(f"submitit.DebugExecutor(folder={logs}): one job after the other, here")


# --- the command -----------------------------------------------------------------------------------


def _export(store: Store, configs: Sequence[RunConfig], args, outcomes) -> None:
    from harness.runner import export_store

    finished = [c for c in configs if store.done_folds(c.hash)]
    done = [o.result for o in outcomes if o.ok and o.result.get("notes") is not None]
    if done:
        overlaps, notes = done[0]["slide_overlaps"], done[0]["notes"]
    elif configs:
        task = _task(_settings(args, store.root), configs[0])
        overlaps, notes = len(task.slide_overlaps), task.notes
    else:
        return
    export_store(
        store, finished, tier=args.tier, preset=args.preset, data=args.data,
        weights_dir=getattr(args, "weights_dir", None), slide_overlaps=overlaps, notes=notes,
    )  # fmt: skip


def _settings(args, store_dir: Path) -> JobSettings:
    weights = paths.weights_dir(getattr(args, "weights_dir", None))
    return JobSettings(
        store=str(store_dir.resolve()),
        data_root=str(args.data_root_path),
        data=args.data,
        weights_dir=str(weights) if weights else None,
        device=str(getattr(args, "device", "auto") or "auto"),
        checkpoint_interval_s=60.0 * float(getattr(args, "checkpoint_interval", 0) or 0),
    )


def cli_launch(args) -> int:
    """`amibr-bench launch`: submit the plan's (or the chosen) unfinished folds, wait, export.
    Exit 0 when every job finished, 1 when any failed, 2 on bad input."""
    from rich.console import Console

    console = Console(stderr=True, soft_wrap=True)  # log lines stay whole in files
    if args.executor not in EXECUTORS:
        raise paths.InputError(f"--executor must be one of {', '.join(EXECUTORS)}")
    if args.jobs_per_gpu < 1 or (args.parallel is not None and args.parallel < 1):
        raise paths.InputError("--parallel and --jobs-per-gpu must be at least 1")
    if args.executor == "slurm" and args.jobs_per_gpu != 1:
        raise paths.InputError(
            "--jobs-per-gpu applies to the local executor: on Slurm, allocate a node and run "
            "`amibr-bench launch --executor local --jobs-per-gpu K` inside it (README: launch)"
        )
    folds = parse_folds(args.folds)
    root = paths.data_root(getattr(args, "data_root", None))
    args.data_root_path = root
    args.data = "synthetic" if data.is_synthetic(root) else "real"
    if args.executor == "slurm":  # validate the Slurm options before anything else
        slurm_parameters(args, 0)
    configs, skipped = _configs(args)
    store_dir = Path(args.store) if args.store else paths.REPO_ROOT / "runs" / args.tier
    store = Store(store_dir)
    jobs, done = plan_jobs(configs, folds, store)
    logs = Path(args.logs) if args.logs else store_dir / "launch-logs"
    precision = getattr(args, "precision", None) or PRESET_PRECISION[args.preset]
    console.print(
        f"[bold]launch[/]: {args.tier} tier, preset {args.preset}, precision {precision}, "
        f"{args.data} data -> {store_dir}\n{len(jobs)} job(s) to run, {len(done)} fold(s) already "
        f"finished; executor {args.executor}\npreset {args.preset}: {PRESET_NOTES[args.preset]}"
    )
    for name, why in skipped.items():
        what = "weights not found here" if args.dry_run else "not run"
        console.print(f"  {what}: {name} ({why})", markup=False)
    throughput_file = Path(args.throughput) if args.throughput else store_dir / "throughput.json"
    if args.dry_run:
        dry_run(configs, jobs, args, console, logs=logs, throughput_file=throughput_file)
        return 0
    settings = _settings(args, store_dir)
    if args.executor == "local" and jobs:
        cpu = str(settings.device).startswith("cpu")
        gpus = [] if cpu else visible_gpus()
        if settings.device.startswith("cuda:"):  # one named GPU: place every job there
            index = settings.device.split(":")[1]
            if not index.isdigit() or int(index) >= len(gpus):
                raise paths.MissingInputError(f"--device {settings.device}: no such GPU here")
            gpus = [gpus[int(index)]]
        if gpus and settings.device.startswith("cuda"):  # each job sees only its GPU: cuda:0
            settings = replace(settings, device="cuda")
        if args.tier == "full" and not gpus and not cpu:
            raise paths.MissingInputError(
                "the full tier needs a GPU and no CUDA device is visible here "
                "(pass --device cpu to train on the CPU anyway, or --tier smoke)"
            )
        outcomes = run_local(
            jobs, settings, logs, console, gpus=gpus, per_gpu=args.jobs_per_gpu,
            parallel=local_capacity(len(gpus), args.jobs_per_gpu, args.parallel),
            timeout_min=parse_time(args.time) if args.time else LOCAL_TIMEOUT_MIN,
        )  # fmt: skip
    elif args.executor == "slurm" and jobs:
        outcomes = run_slurm(
            jobs, settings, logs, console, slurm_parameters(args, len(jobs)), wait=not args.no_wait
        )
        if args.no_wait:
            console.print("submitted; relaunch the same command later to export the results set")
            return 0
    elif jobs:
        outcomes = run_debug(jobs, settings, logs, console)
    else:
        outcomes = []
    _export(store, configs, args, outcomes)
    comparison = comparison_md(store_comparison(store))
    if comparison:
        paths.atomic_write(store_dir / "precision_comparison.md", comparison)
        console.print(comparison, markup=False, highlight=False)
    failed = [o for o in outcomes if not o.ok]
    console.print(
        f"{len(outcomes) - len(failed)} job(s) finished, {len(failed)} failed; "
        f"results set written to {store_dir}"
    )
    for o in failed:
        console.print(f"failed: {o.job.name}: {o.reason}\n  log: {o.logs[0]}", markup=False)
    return 1 if failed else 0
