"""The training loop shared by end-to-end fine-tuning, linear probing and LoRA (docs/PROTOCOL.md
'Optimisation'): weighted sampler, Adam, plateau scheduler, early stopping, best checkpoint.

Label encoding follows the authors' scripts: Atypical -> 0, Normal -> 1, one logit trained with
BCEWithLogits, so sigmoid(logit) is P(Normal); the decision threshold is 0.5."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from harness import paths, stats
from harness.config import Hyper

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
) -> FitResult:
    """Train with the protocol: weighted sampler, Adam, plateau scheduler, early stopping and
    best checkpoint on validation balanced accuracy (strict improvement).

    `forward(model, inputs, train)` maps a batch of raw inputs to logits (transform inside)."""
    for what, labels in (("training", train_labels), ("validation", val_labels)):
        if len(np.unique(labels)) < 2:
            raise ValueError(f"the {what} split lacks a class ({len(labels)} images)")
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
    optimiser = torch.optim.Adam(groups, lr=hp.lr, weight_decay=hp.weight_decay)
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
    waited, steps = 0, 0
    for epoch in range(1, hp.max_epochs + 1):
        model.train()
        order = torch.tensor(list(sampler))
        total, seen = 0.0, 0
        for start in range(0, len(order), hp.batch_size):
            idx = order[start : start + hp.batch_size]
            out = forward(model, train_inputs[idx], True)
            where = f"training step {steps + 1}, epoch {epoch}"
            check_finite(out, "logits", where, divergence_hint(hp))
            loss = loss_fn(out, y_train[idx].to(device))
            value = float(loss.detach())
            if not math.isfinite(value):
                raise NonFiniteError("loss", f"{value} at {where}", hint=divergence_hint(hp))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += value * len(idx)
            seen += len(idx)
            steps += 1
            if stop_after_steps is not None and steps >= stop_after_steps:
                best.history.append({"epoch": epoch, "loss": total / seen})
                best.best_state = _trainable_state(model)
                best.epochs_run = epoch
                return best
        prob = predict(model, forward, val_inputs, hint=divergence_hint(hp))
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
        if progress is not None:
            progress(epoch, best.history[-1])
        if waited >= hp.early_stopping:
            break
    return best


@torch.no_grad()
def predict(
    model: nn.Module, forward, inputs: torch.Tensor, batch: int = 64, *, hint: str | None = None
) -> np.ndarray:
    """sigmoid(logit) = P(Normal) for every input, in order, model in eval mode; float32 (N,).

    Raises NonFiniteError when a logit is NaN or infinite (sigmoid would hide an infinity)."""
    model.eval()
    out = []
    for i in range(0, len(inputs), batch):
        logits = forward(model, inputs[i : i + batch], False).float()
        check_finite(logits, "logits", f"prediction, images {i}-{i + len(logits) - 1}", hint)
        out.append(torch.sigmoid(logits).cpu())
    return torch.cat(out).numpy() if out else np.zeros(0)
