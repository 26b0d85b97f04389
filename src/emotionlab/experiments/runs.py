"""One run of an experiment: train it, or reuse it when finished, or resume it when interrupted.

The ablation and cross-validation are many ordinary training runs; each goes through ``run_or_reuse``, so a
killed experiment costs only the run in progress and a re-run gives the same table. A run folder is reused
only for the settings it was trained with (``check_same_settings``): a recipe changed under the same name is
refused, not silently scored with the old model.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from emotionlab.config import RunConfig, load_config, to_dict
from emotionlab.errors import EmotionlabError

log = logging.getLogger("emotionlab")

# Settings that change where or how fast a run trains, not what it learns: they may differ on a re-run.
_NOT_COMPARED = {
    "out",
    "data.num_workers",
    "train.accelerator",
    "train.devices",
    "train.strategy",
    "train.num_nodes",
}


def _flat(values: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _comparable(config: RunConfig) -> dict:
    """``config`` as flat ``{dotted key: value}``, dataset paths absolute (as a run folder's config.yaml holds them)."""
    flat = _flat(to_dict(config))
    for key in ("data.root", "data.manifest"):
        if flat.get(key):
            flat[key] = str(Path(flat[key]).resolve())
    return {key: value for key, value in flat.items() if key not in _NOT_COMPARED}


def _changed_start(config: RunConfig) -> list[str]:
    """``["train.init_from 'X' (its weights changed since)"]`` when the run (finished or interrupted) started from
    other weights than the file ``--init-from`` names now (same path, new contents: a re-shipped model), else ``[]``."""
    if not config.train.init_from:
        return []
    from emotionlab.models.io import read_metadata
    from emotionlab.training.recipes.finetune import resolve_model_source
    from emotionlab.training.train import MODEL_NAME, STARTED_FROM_NAME

    model, started = Path(config.out) / MODEL_NAME, Path(config.out) / STARTED_FROM_NAME
    if model.is_file():  # finished: its model file says what it was fine-tuned from
        trained_from = (read_metadata(model).get("finetuned_from") or {}).get("weights_sha256")
    elif started.is_file():  # interrupted: what it started from, recorded before its first epoch
        trained_from = json.loads(started.read_text()).get("weights_sha256")
    else:
        return []
    try:
        source = resolve_model_source(config.train.init_from)
    except EmotionlabError:
        return []  # a missing start model is training's one-line error, not this check's
    if trained_from and read_metadata(source).get("weights_sha256") != trained_from:
        return [f"train.init_from {config.train.init_from!r} (its weights changed since)"]
    return []


def check_same_settings(config: RunConfig) -> None:
    """Refuse, in one line, to reuse or resume the run folder ``config.out`` if it was made with other settings."""
    from emotionlab.training.train import CONFIG_NAME

    saved_path = Path(config.out) / CONFIG_NAME
    if not saved_path.is_file():
        return
    saved, wanted = _comparable(load_config(saved_path)), _comparable(config)
    if saved.get("data.root") is None or wanted.get("data.root") is None:
        saved.pop("data.root", None), wanted.pop("data.root", None)  # $EMOTIONLAB_DATA decides: not compared
    changed = [
        f"{key} {saved.get(key)!r} -> {wanted.get(key)!r}"
        for key in sorted(set(saved) | set(wanted))
        if saved.get(key) != wanted.get(key)
    ] + _changed_start(config)
    if changed:
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        raise EmotionlabError(
            f"{config.out}: holds a run trained with other settings ({', '.join(changed[:3])}{more}); give the "
            "recipe another name or --out (or remove that folder to retrain it)"
        )


def run_or_reuse(config: RunConfig) -> tuple[Path, dict]:
    """Train one run (or reuse / resume it); returns its model path and a summary."""
    from emotionlab.training.callbacks import read_history
    from emotionlab.training.train import train

    run_dir = Path(config.out)
    model_path = run_dir / "model.safetensors"
    started = time.perf_counter()
    check_same_settings(config)
    if model_path.is_file():
        log.info("experiment: reusing %s", model_path)
    else:
        resume = (run_dir / "checkpoints" / "last.ckpt").is_file()
        model_path = train(config, resume=resume, progress=False).model_path
    history = read_history(run_dir / "metrics.csv")
    best = min(history, key=lambda row: row.get("val_loss", float("inf"))) if history else {}
    return model_path, {
        "run_dir": str(run_dir),
        "epochs_run": len(history),
        "best_epoch": best.get("epoch"),
        "best_val_loss": best.get("val_loss"),
        "val_acc_at_best": best.get("val_acc"),
        "train_seconds": round(sum(row.get("seconds", 0.0) for row in history), 1),
        "wall_seconds_this_call": round(time.perf_counter() - started, 1),
    }
