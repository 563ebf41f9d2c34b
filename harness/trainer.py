"""The training loop shared by end-to-end fine-tuning, linear probing and LoRA (docs/PROTOCOL.md
'Optimisation'): weighted sampler, Adam, plateau scheduler, early stopping, best checkpoint.

Label encoding follows the authors' scripts: Atypical -> 0, Normal -> 1, one logit trained with
BCEWithLogits, so sigmoid(logit) is P(Normal); the decision threshold is 0.5.

Resumption: given a checkpoint path, `fit` writes the whole loop state there at the end of each
epoch (trainable tensors, optimiser, scheduler, sampler generator, RNG states, early-stopping
counters, history, best state: tensors, dicts, lists and numbers only, readable with
`torch.load(weights_only=True)`) and, when the file exists, continues from it, so an interrupted
fold (pre-emption, time limit) ends exactly as an uninterrupted one would on the same device."""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from harness import paths, stats
from harness.config import Hyper, Speed
from harness.paths import InputError

CHECKPOINT_FORMAT = 1

# --- non-finite numbers ---------------------------------------------------------------------------


class NonFiniteError(paths.RunFailed):
    """Non-finite (NaN or infinite) embeddings, logits or loss: the fold stops, nothing of it is
    stored or cached. A numerical failure of the run, not bad input: the CLI prints the one line
    (model, fold, what, likely cause) and exits 2 (docs/ARCHITECTURE.md "Errors").

    `what` is "embeddings", "logits" or "loss"; `model`/`fold` are filled in by the runner
    (`locate`), which knows them; `hint` is the likely cause and what to try."""

    def __init__(
        self,
        what: str,
        detail: str = "",
        *,
        model: str | None = None,
        fold: int | str | None = None,
        hint: str | None = None,
    ) -> None:
        self.what, self.detail, self.model, self.fold, self.hint = what, detail, model, fold, hint
        super().__init__(self._message())

    def locate(
        self, *, model: str | None = None, fold: int | str | None = None, hint: str | None = None
    ) -> None:
        """Say where it happened, on the way out: an outer caller knows the model and fold better
        (given ones replace), an inner one the cause (a hint already set is kept)."""
        self.model = model or self.model
        self.fold = self.fold if fold is None else fold
        self.hint = self.hint or hint
        self.args = (self._message(),)

    def _message(self) -> str:
        fold = self.fold if self.fold is None or isinstance(self.fold, str) else f"fold {self.fold}"
        where = ", ".join(str(x) for x in (self.model, fold) if x is not None)
        text = f"non-finite {self.what}" + (f" ({self.detail})" if self.detail else "")
        cause = f"; likely cause: {self.hint}" if self.hint else ""
        return (f"{where}: " if where else "") + text + cause + "; nothing of it was stored"


def check_finite(values: torch.Tensor, what: str, detail: str, hint: str | None = None) -> None:
    """Raise NonFiniteError when any value is NaN or infinite (one device sync)."""
    if not bool(torch.isfinite(values).all()):
        bad = int((~torch.isfinite(values.detach())).sum())
        raise NonFiniteError(what, f"{bad} of {values.numel()} values, {detail}", hint=hint)


def divergence_hint(hp: Hyper) -> str:
    """The likely cause of non-finite logits or loss in training (no autocast there)."""
    return (
        f"a diverging optimisation (learning rate {hp.lr:g}) or non-finite inputs; "
        "try a lower learning rate, or check the weights and data"
    )


# --- the loop -----------------------------------------------------------------------------------


@dataclass
class FitResult:
    best_state: dict[str, torch.Tensor]
    best_epoch: int
    best_val_bacc: float
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from_epoch: int = 0  # the checkpoint's last finished epoch (0: started afresh)


# --- precision ------------------------------------------------------------------------------------


@contextlib.contextmanager
def precision_scope(speed: Speed | None) -> Iterator[None]:
    """TF32 switches for the duration of a run (process-wide flags, restored afterwards)."""
    if speed is None:
        yield
        return
    matmul, cudnn = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("high" if speed.tf32 else "highest")
    if speed.tf32:
        torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(matmul)
        torch.backends.cudnn.allow_tf32 = cudnn


def autocast(speed: Speed | None, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on the run's device when the precision asks for it (CPU included)."""
    dtype = speed.autocast_dtype if speed is not None else None
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


# --- checkpoints ----------------------------------------------------------------------------------


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """torch.save into a temporary file beside `path`, then rename: readers see a whole file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # a normal file's mode, as paths.atomic_write gives
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path, fingerprint: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint written by `fit` for the same training (InputError naming the file if not)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - an unreadable file in the store is bad input
        raise InputError(
            f"{path}: cannot read the training checkpoint ({type(exc).__name__}: {exc}); "
            "delete it to train the fold from its first epoch"
        ) from exc
    if not isinstance(state, dict) or state.get("fingerprint") != fingerprint:
        raise InputError(
            f"{path}: the checkpoint belongs to another training (format, hyperparameters, seed "
            "or split sizes differ); delete it to train the fold from its first epoch"
        )
    return state


def _rng_state(device: torch.device) -> dict[str, Any]:
    out: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        out["cuda"] = torch.cuda.get_rng_state(device)
    return out


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """What a checkpoint must hold: trained parameters and the persistent buffers (BatchNorm
    statistics); non-persistent ones (Swin's relative_position_index) are rebuilt by the model."""
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    return {
        n: t.detach().clone()
        for n, t in model.state_dict(keep_vars=True).items()
        if n not in frozen
    }


def _is_head(name: str) -> bool:
    return name.startswith(("head.", "base_model.model.head.", "weight", "bias"))


def class_weights(labels: np.ndarray) -> torch.Tensor:
    """Per-sample weight 1 / frequency of its class (the protocol's sampler)."""
    labels = np.asarray(labels).astype(int)
    counts = np.bincount(labels, minlength=2).astype(float)
    if (counts == 0).any():
        raise ValueError(f"the training split lacks a class (counts {counts.tolist()})")
    return torch.as_tensor(1.0 / counts[labels], dtype=torch.double)


def fit(
    model: nn.Module,
    forward: Callable[[nn.Module, torch.Tensor, bool], torch.Tensor],
    train_inputs: torch.Tensor,
    train_labels: np.ndarray,
    val_inputs: torch.Tensor,
    val_labels: np.ndarray,
    hp: Hyper,
    *,
    seed: int,
    device: torch.device,
    progress: Callable[[int, dict], None] | None = None,
    stop_after_steps: int | None = None,
    speed: Speed | None = None,
    checkpoint: Path | None = None,
    checkpoint_interval_s: float = 0.0,
    on_batch: Callable[[int, int, int], None] | None = None,
) -> FitResult:
    """Train with the protocol: weighted sampler, Adam, plateau scheduler, early stopping and
    best checkpoint on validation balanced accuracy (strict improvement).

    `forward(model, inputs, train)` maps a batch of raw inputs to logits (transform inside).
    `speed`: bf16 autocast, fused Adam (CUDA only), channels_last (config.Speed; TF32 is the
    caller's `precision_scope`). `checkpoint`: resume from / write the loop state there at the
    end of an epoch (at most every `checkpoint_interval_s` seconds; 0: every epoch); raises
    InputError when the file is unreadable or was written for another training.
    `progress(epoch, history_row)` after each epoch (after the checkpoint is written);
    `on_batch(epoch, batches_done, batches_per_epoch)` after each training step."""
    with precision_scope(speed):
        return _fit(
            model, forward, train_inputs, train_labels, val_inputs, val_labels, hp, seed=seed,
            device=device, progress=progress, stop_after_steps=stop_after_steps, speed=speed,
            checkpoint=checkpoint, checkpoint_interval_s=checkpoint_interval_s,
            on_batch=on_batch,
        )  # fmt: skip


def _fit(
    model, forward, train_inputs, train_labels, val_inputs, val_labels, hp: Hyper, *, seed: int,
    device: torch.device, progress, stop_after_steps, speed: Speed | None,
    checkpoint: Path | None, checkpoint_interval_s: float, on_batch,
) -> FitResult:  # fmt: skip
    for what, labels in (("training", train_labels), ("validation", val_labels)):
        if len(np.unique(labels)) < 2:
            raise ValueError(f"the {what} split lacks a class ({len(labels)} images)")
    if speed is not None and speed.channels_last:
        model.to(memory_format=torch.channels_last)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    sampler = torch.utils.data.WeightedRandomSampler(
        class_weights(train_labels),
        num_samples=len(train_labels),
        replacement=True,
        generator=generator,
    )
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if hp.head_lr is None:
        groups = [{"params": [p for _, p in named]}]
    else:  # random-init smoke backbones: big adapter steps would swamp the random weights
        groups = [
            {"params": [p for n, p in named if not _is_head(n)]},
            {"params": [p for n, p in named if _is_head(n)], "lr": hp.head_lr},
        ]
    groups = [g for g in groups if g["params"]]
    fused = bool(speed is not None and speed.fused_adam and device.type == "cuda")
    optimiser = torch.optim.Adam(
        groups, lr=hp.lr, weight_decay=hp.weight_decay, fused=fused or None
    )
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimiser,
        mode="max",
        factor=hp.plateau_factor,
        patience=hp.plateau_patience,
        min_lr=hp.min_lr,
    )
    loss_fn = nn.BCEWithLogitsLoss()
    y_train = torch.as_tensor(np.asarray(train_labels), dtype=torch.float32)
    best = FitResult(_trainable_state(model), 0, -math.inf, 0)
    waited, steps, start = 0, 0, 1
    fingerprint = {
        "format": CHECKPOINT_FORMAT,
        "seed": seed,
        "hyper": asdict(hp),
        "train_n": len(train_labels),
        "val_n": len(val_labels),
        "trainable": sorted(best.best_state),
    }
    if checkpoint is not None and Path(checkpoint).is_file():
        ck = load_checkpoint(Path(checkpoint), fingerprint)
        model.load_state_dict(ck["model"], strict=False)
        optimiser.load_state_dict(ck["optimiser"])
        scheduler.load_state_dict(ck["scheduler"])
        generator.set_state(ck["sampler_generator"])
        _set_rng_state(ck["rng"], device)
        waited, steps = ck["waited"], ck["steps"]
        best = FitResult(
            ck["best_state"], ck["best_epoch"], ck["best_val_bacc"], ck["epoch"], ck["history"]
        )
        best.resumed_from_epoch, start = ck["epoch"], ck["epoch"] + 1
        if waited >= hp.early_stopping:  # it had stopped; only the fold's results were missing
            start = hp.max_epochs + 1
    last_write = time.monotonic()
    n_batches = math.ceil(len(train_labels) / hp.batch_size)
    for epoch in range(start, hp.max_epochs + 1):
        model.train()
        order = torch.tensor(list(sampler))
        total, seen = 0.0, 0
        for start_i in range(0, len(order), hp.batch_size):
            idx = order[start_i : start_i + hp.batch_size]
            where = f"training step {steps + 1}, epoch {epoch}"
            with autocast(speed, device):
                out = forward(model, train_inputs[idx], True)
                check_finite(out, "logits", where, divergence_hint(hp))
                loss = loss_fn(out.float(), y_train[idx].to(device))
            value = float(loss.detach())
            if not math.isfinite(value):
                raise NonFiniteError("loss", f"{value} at {where}", hint=divergence_hint(hp))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += value * len(idx)
            seen += len(idx)
            steps += 1
            if on_batch is not None:
                on_batch(epoch, start_i // hp.batch_size + 1, n_batches)
            if stop_after_steps is not None and steps >= stop_after_steps:
                best.history.append({"epoch": epoch, "loss": total / seen})
                best.best_state = _trainable_state(model)
                best.epochs_run = epoch
                return best
        prob = predict(
            model, forward, val_inputs, speed=speed, device=device, hint=divergence_hint(hp)
        )
        val_bacc = stats.balanced_accuracy(np.asarray(val_labels) == 0, 1.0 - prob)
        scheduler.step(val_bacc)
        best.history.append(
            {
                "epoch": epoch,
                "loss": total / max(seen, 1),
                "val_bacc": val_bacc,
                "lr": optimiser.param_groups[0]["lr"],
            }
        )
        best.epochs_run = epoch
        if val_bacc > best.best_val_bacc:
            best.best_val_bacc, best.best_epoch = val_bacc, epoch
            best.best_state = _trainable_state(model)
            waited = 0
        else:
            waited += 1
        due = time.monotonic() - last_write >= checkpoint_interval_s
        last = waited >= hp.early_stopping or epoch == hp.max_epochs
        if checkpoint is not None and (due or last):
            save_checkpoint(
                {
                    "fingerprint": fingerprint,
                    "epoch": epoch,
                    "model": _trainable_state(model),
                    "optimiser": optimiser.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "sampler_generator": generator.get_state(),
                    "rng": _rng_state(device),
                    "waited": waited,
                    "steps": steps,
                    "history": best.history,
                    "best_state": best.best_state,
                    "best_epoch": best.best_epoch,
                    "best_val_bacc": best.best_val_bacc,
                },
                Path(checkpoint),
            )
            last_write = time.monotonic()
        if progress is not None:
            progress(epoch, best.history[-1])
        if waited >= hp.early_stopping:
            break
    return best


@torch.no_grad()
def predict(
    model: nn.Module,
    forward,
    inputs: torch.Tensor,
    batch: int = 64,
    *,
    speed: Speed | None = None,
    device: torch.device | None = None,
    hint: str | None = None,
) -> np.ndarray:
    """sigmoid(logit) = P(Normal) for every input, in order, model in eval mode (float32 array
    of len(inputs)); under bf16 autocast / TF32 when `speed` asks for it.

    Raises NonFiniteError when a logit is NaN or infinite (sigmoid would hide an infinity)."""
    model.eval()
    if device is None:
        device = next(model.parameters()).device
    out = []
    for i in range(0, len(inputs), batch):
        with precision_scope(speed), autocast(speed, device):
            logits = forward(model, inputs[i : i + batch], False).float()
        check_finite(logits, "logits", f"prediction, images {i}-{i + len(logits) - 1}", hint)
        out.append(torch.sigmoid(logits).cpu())
    return torch.cat(out).numpy() if out else np.zeros(0)
