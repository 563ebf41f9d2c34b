"""Claims on the paper's protocol, read from a run's manifest: a setting (batch size, LoRA
rank, ...), the number of folds, the number of models per strategy (§4)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from harness import stats as st
from harness.claimkinds.base import (
    Claim,
    Context,
    Inconclusive,
    KindParams,
    Method,
    NoParams,
    NotRun,
    Verdict,
    register,
    same_value,
)
from harness.claimkinds.cells import METHOD_WORDS, config_label, results_of
from harness.registry import METHODS
from harness.results import ResultsSet, canonical_model


def _lookup(settings: dict, key: str):
    """settings['a.b'] or settings['a']['b'] or settings['a_b']; KeyError if none."""
    if key in settings:
        return settings[key]
    node: Any = settings
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            break
        node = node[part]
    else:
        return node
    flat = key.replace(".", "_")
    if flat in settings:
        return settings[flat]
    raise KeyError(key)


def _protocol_run(rs: ResultsSet) -> None:
    """Protocol statements describe runs of the protocol: a smoke tier or synthetic data is
    "not run", never "passed" (their settings are the tier's, not the paper's experiment)."""
    tier, data_kind = rs.manifest.get("tier"), rs.manifest.get("data")
    if tier == "smoke" or data_kind == "synthetic":
        raise NotRun(
            f"a statement about the paper's protocol; results set '{rs.name}' is a "
            f"{tier or 'unknown'}-tier run on {data_kind or 'unknown'} data; judged on runs of "
            "the full protocol (`nox -s full_gpu`)"
        )


class ProtocolSetting(KindParams):
    """A setting of the run manifest (`setting`, dotted, or one of `aliases`) for the
    configurations of `methods`."""

    setting: str = Field(min_length=1)
    aliases: list[str] = []
    methods: list[Method] = Field(list(METHODS), min_length=1)


@register("protocol_setting", ProtocolSetting, needs="run")
def protocol_setting(claim: Claim, p: ProtocolSetting, ctx: Context) -> Verdict:
    """A protocol setting (LoRA rank, batch size, ...) as recorded in the run manifest."""
    rs = results_of(ctx)
    _protocol_run(rs)
    methods = p.methods
    keys = [p.setting, *p.aliases]
    entries = {
        k: v
        for k, v in (rs.manifest.get("configs") or {}).items()
        if k.partition("|")[2] in methods and isinstance(v, dict) and v.get("settings")
    }
    # a set merged from several (`claims --add`) has no single tier: each entry records its own
    tiers = {k: (v["settings"].get("tier"), v["settings"].get("data")) for k, v in entries.items()}
    trial = {k: t for k, t in tiers.items() if t[0] == "smoke" or t[1] == "synthetic"}
    entries = {k: v for k, v in entries.items() if k not in trial}
    if trial and not entries:
        tier, data_kind = next(iter(trial.values()))
        raise NotRun(
            f"a statement about the paper's protocol; the run settings of results set "
            f"'{rs.name}' are those of a {tier or 'unknown'}-tier run on {data_kind or 'unknown'} "
            f"data ({', '.join(trial)}); judged on runs of the full protocol (`nox -s full_gpu`)"
        )
    if not entries:
        raise NotRun(
            f"needs a run manifest: results set '{rs.name}' records no run settings for "
            f"{'/'.join(METHOD_WORDS[m] for m in methods)} (manifest.json configs[...].settings)"
        )
    seen, wrong, unknown, overridden = {}, [], [], {}
    for name, entry in entries.items():
        changed = entry["settings"].get("overrides") or {}
        # a tier (smoke) that departs from the protocol on purpose, under any name of the setting
        hit = next((n for k in keys for n in (k, k.rpartition(".")[2]) if n in changed), None)
        if hit is not None:
            overridden[name] = changed[hit]
            continue
        for key in keys:
            try:
                value = _lookup(entry["settings"], key)
                break
            except KeyError:
                continue
        else:
            unknown.append(name)
            continue
        seen[name] = value
        if not same_value(value, claim.expected):
            wrong.append(f"{name}: {value!r}")
    if not seen and overridden:
        values = ", ".join(f"{k}: {v!r}" for k, v in overridden.items())
        raise NotRun(
            f"the {rs.manifest.get('tier', 'run')} tier sets {p.setting} on purpose ({values}); "
            "judged on runs of the full protocol"
        )
    if not seen:
        raise NotRun(f"the run manifest does not record '{p.setting}'")
    preset = rs.manifest.get("preset", "unknown")
    observed = sorted({repr(v) for v in seen.values()})
    text = f"{len(seen)} configuration(s) of preset '{preset}'"
    if unknown:
        text += f"; not recorded for {', '.join(unknown)}"
    if overridden:
        text += f"; set on purpose by the tier for {', '.join(overridden)}"
    if wrong:
        return Verdict(st.FAILED, ", ".join(observed), f"differs in {', '.join(wrong)} ({text})")
    return Verdict(st.PASSED, ", ".join(observed), f"as stated in {text}")


@register("fold_count", needs="results", expected=int, inventory=True)
def fold_count(claim: Claim, p: NoParams, ctx: Context) -> Verdict:
    """Every configuration was cross-validated with the stated number of folds."""
    rs = results_of(ctx)
    _protocol_run(rs)
    want = int(claim.expected)
    counts = {}
    for model, method in rs.configurations:
        folds = set()
        for ds in rs.datasets:
            folds |= set(rs.folds(model, method, ds))
        counts[config_label(model, method)] = folds
    too_many = [f"{k}: {sorted(v)}" for k, v in counts.items() if max(v) > want]
    short = [f"{k}: {len(v)}" for k, v in counts.items() if len(v) < want]
    sizes = sorted({len(v) for v in counts.values()})
    observed = "/".join(map(str, sizes)) + " folds"
    if too_many:
        return Verdict(st.FAILED, observed, f"folds beyond {want}: {'; '.join(too_many)}")
    if short:
        raise Inconclusive(f"partial run, fewer than {want} folds: {'; '.join(short)}")
    return Verdict(st.PASSED, observed, f"all {len(counts)} configurations have folds 1-{want}")


class ConfigCount(KindParams):
    """How many distinct models the results evaluate with any of `methods`."""

    methods: list[Method] = Field(min_length=1)


@register("config_count", ConfigCount, needs="results", expected=int, inventory=True)
def config_count(claim: Claim, p: ConfigCount, ctx: Context) -> Verdict:
    """How many distinct models the paper's own results evaluate with the given strategies."""
    rs = results_of(ctx)
    if rs.manifest.get("tier") != "paper":
        raise NotRun(
            "a statement about the paper's own experiment; judged on the authors' "
            f"results set ('paper') only, not on '{rs.name}'"
        )
    methods = p.methods
    models = sorted({m for m, meth in rs.configurations if meth in methods})
    want = int(claim.expected)
    observed = len(models)
    strategies = " or ".join(METHOD_WORDS[m] for m in methods)
    text = f"{observed} model(s) with {strategies}: {', '.join(models)}"
    if observed == want:
        return Verdict(st.PASSED, observed, text)
    pending = [
        k
        for k, v in (rs.manifest.get("configs") or {}).items()
        if k.partition("|")[2] in methods and canonical_model(k.partition("|")[0]) not in models
    ]
    if observed < want and pending:
        raise NotRun(f"{text}; not run: {', '.join(pending)}")
    return Verdict(st.FAILED, observed, text)
