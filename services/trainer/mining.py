"""Mining training triplets from the event log, golden questions, qrels and answer-selection sets.

Labels from the log (position bias is why not every unclicked result is a negative):
- positives: clicks with dwell >= `dwell_threshold_ms`, ratings >= `positive_min_rating`;
- negatives: ratings <= `negative_max_rating`, and results shown *above* the lowest clicked
  result that were not clicked (the cascade assumption: the user saw them and passed them by).
  Results below the last click, or in impressions without clicks, say nothing and are not used.
- optional inverse-propensity weights: the corpus's examination propensities measured from the
  retriever's randomised interventions (services/trainer/propensity.py); a click at a rarely-examined
  rank counts for more.
- sessions held out for the click judge (`training.judge_holdout_share`) are never mined, nor any session of
  a query first searched in one of them (services/trainer/click_log.py, `Holdout`).

Golden questions and qrels give positives; their negatives are the retriever's fused candidates
(both legs) minus the positives, minus any candidate scoring within `hard_negative_max_ratio` of
the positive (likely an unjudged relevant document), mixed with random corpus documents.

Output: one JSONL file per source and mining run, `$FEEDRANK_DATA_DIR/triplets/<corpus>/<source>-<run>.jsonl`,
created exclusively (never overwritten), plus `<run>.mining.json` describing the run. Queries of the
frozen evaluation set are skipped by every source.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from services.common.config import Settings, TrainingSettings
from services.common.errors import ErrorKind, FeedrankError, invalid
from services.events.store import EventStore, StoredEvent
from services.trainer import propensity as position_bias
from services.trainer.candidates import TRAINER_SESSION, CandidateSource
from services.trainer.click_log import Holdout, held_out
from services.trainer.corpus_data import (
    CorpusData,
    frozen_texts,
    load_golden,
    normalize_query,
    path_matches,
    train_queries,
)

log = logging.getLogger(__name__)

LOG_SOURCES = ("events", "golden", "qrels")


@dataclass
class Triplet:
    query: str
    positive_text: str
    positive_doc_id: str
    negative_texts: list[str]
    negative_doc_ids: list[str]
    source: str
    weight: float = 1.0


@dataclass
class Judgement:
    """What one impression's clicks and ratings say, before texts are attached."""

    query_id: str
    query: str
    positives: dict[str, float]  # doc_id -> weight
    negatives: list[str]  # ratings first, then skipped-above, in rank order


@dataclass
class MiningResult:
    mining_run_id: str
    corpus_id: str
    counts: dict[str, int]
    files: list[str]
    skipped: dict[str, int] = field(default_factory=dict)


def triplets_dir(settings: Settings, corpus_id: str) -> Path:
    return settings.data_path / "triplets" / corpus_id


def new_mining_id() -> str:
    return time.strftime("m%Y%m%d-%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


# -- the event log -----------------------------------------------------------------------------


def judge_log(
    impressions: list[StoredEvent], clicks: list[StoredEvent], ratings: list[StoredEvent],
    training: TrainingSettings, skip_queries: set[str], propensity: Callable[[int], float | None] | None = None,
) -> tuple[list[Judgement], dict[str, int]]:
    """Apply the labelling rules to events joined by query_id. Returns judgements and skip counts.

    `propensity(rank)`: the measured examination propensity, for inverse-propensity weights (None: unweighted)."""
    skipped: dict[str, int] = defaultdict(int)
    by_query_clicks: dict[str, list] = defaultdict(list)
    by_query_ratings: dict[str, list] = defaultdict(list)
    for c in clicks:
        by_query_clicks[c.query_id].append(c.event.click)
    for r in ratings:
        by_query_ratings[r.query_id].append(r.event.rating)
    users = [imp for imp in impressions if imp.session_id != TRAINER_SESSION]  # not the trainer's own searches
    holdout = Holdout.of(((i.timestamp_ms, i.query_id, i.session_id, i.event.impression.query) for i in users),
                         training.judge_holdout_share)
    out: list[Judgement] = []
    for imp in users:
        if not holdout.mined(imp.session_id, imp.event.impression.query):
            # A held-out session, or another session of a query the click judge judges.
            skipped["judge_holdout" if held_out(imp.session_id, holdout.share) else "judge_query"] += 1
            continue
        impression = imp.event.impression
        rank_of = {r.doc_id: r.rank for r in impression.results}
        # The feedback service refuses feedback on documents that were not shown; should any reach
        # the log anyway, it teaches nothing (it would let anyone promote any document).
        query_clicks = [c for c in by_query_clicks.get(imp.query_id, []) if c.doc_id in rank_of]
        query_ratings = [r for r in by_query_ratings.get(imp.query_id, []) if r.doc_id in rank_of]
        not_shown = len(by_query_clicks.get(imp.query_id, [])) + len(by_query_ratings.get(imp.query_id, [])) \
            - len(query_clicks) - len(query_ratings)
        if not_shown:
            skipped["not_shown"] += not_shown
        if not query_clicks and not query_ratings:
            skipped["no_interaction"] += 1
            continue
        if normalize_query(impression.query) in skip_queries:
            skipped["eval_query"] += 1
            continue
        positives: dict[str, float] = {}
        rated_negative: list[str] = []
        # The latest rating of a document wins (users change their minds); ratings are explicit
        # judgements, so they outrank what a click implies.
        latest: dict[str, int] = {}
        for rating in query_ratings:
            latest[rating.doc_id] = rating.rating
        for click in query_clicks:
            if click.dwell_ms >= training.mining.dwell_threshold_ms and click.doc_id not in latest:
                weight = 1.0
                if propensity is not None:  # the rank the impression showed it at, not the one the click claims
                    p = propensity(rank_of[click.doc_id]) or 0.0
                    weight = min(training.propensity_clip, 1.0 / p) if p > 0 else training.propensity_clip
                positives[click.doc_id] = max(positives.get(click.doc_id, 0.0), weight)
        for doc_id, value in latest.items():
            if value >= training.mining.positive_min_rating:
                positives[doc_id] = 1.0
            elif value <= training.mining.negative_max_rating:
                rated_negative.append(doc_id)
        clicked = {c.doc_id for c in query_clicks}
        lowest_click = max((c.rank or rank_of.get(c.doc_id, 0) for c in query_clicks), default=0)
        skipped_above = [
            r.doc_id for r in sorted(impression.results, key=lambda r: r.rank)
            if r.rank < lowest_click and r.doc_id not in clicked
            and latest.get(r.doc_id, 0) < training.mining.positive_min_rating
        ]
        negatives = [d for d in dict.fromkeys(rated_negative + skipped_above) if d not in positives]
        if not positives:
            skipped["no_positive"] += 1
            continue
        out.append(Judgement(imp.query_id, impression.query, positives, negatives))
    return out, dict(skipped)


# -- the miner ---------------------------------------------------------------------------------


class Miner:
    def __init__(self, settings: Settings, candidates: CandidateSource, events: EventStore | None = None):
        self.settings = settings
        self.training = settings.training
        self.candidates = candidates
        self.events = events

    def mine(
        self, corpus_id: str, sources: list[str], *, golden_path: str = "", qrels_split: str = "",
        limit_per_source: int = 0,
    ) -> MiningResult:
        sources = list(dict.fromkeys(sources or ["events"]))
        for s in sources:
            if s not in LOG_SOURCES and not self.answer_set_path(s).is_file():
                raise invalid("sources", f"unknown source {s!r}: use events, golden, qrels, or an answer set "
                                         f"under training.answer_sets_dir ({self.training.answer_sets_dir or 'unset'})")
        if "golden" in sources and not golden_path:
            raise invalid("golden_path", "the golden source needs a golden file")
        data = CorpusData(self.settings, corpus_id)
        try:
            skip = frozen_texts(self.settings, data)
            run_id = new_mining_id()
            rng = random.Random(f"{self.training.seed}:{run_id}")
            out_dir = triplets_dir(self.settings, corpus_id)
            out_dir.mkdir(parents=True, exist_ok=True)
            result = MiningResult(run_id, corpus_id, {}, [])
            for source in sources:
                if source == "events":
                    triplets, skipped = self._from_events(data, skip, rng)
                elif source == "golden":
                    triplets, skipped = self._from_golden(data, Path(golden_path), skip, rng)
                elif source == "qrels":
                    triplets, skipped = self._from_qrels(data, qrels_split, rng)
                else:
                    triplets, skipped = self._from_answer_set(source, skip, rng)
                if limit_per_source and len(triplets) > limit_per_source:
                    triplets = rng.sample(triplets, limit_per_source)
                result.counts[source] = len(triplets)
                result.skipped.update({f"{source}.{k}": v for k, v in skipped.items()})
                if triplets:
                    result.files.append(str(self._write(out_dir / f"{source}-{run_id}.jsonl", triplets)))
            manifest = {**asdict(result), "created_at": _now(), "golden_path": golden_path,
                        "qrels_split": qrels_split or self.training.train_split,
                        "settings": self.training.model_dump(mode="json")}
            self._write_json(out_dir / f"{run_id}.mining.json", manifest)
            log.info("mined", extra={"fields": {"corpus": corpus_id, "run": run_id, "counts": result.counts}})
            return result
        finally:
            data.close()

    # -- sources -------------------------------------------------------------------------------

    def _from_events(self, data: CorpusData, skip: set[str], rng: random.Random) -> tuple[list[Triplet], dict]:
        if self.events is None:
            raise FeedrankError(ErrorKind.FAILED_PRECONDITION, "no event store: the events source needs one")
        cid = data.corpus_id
        judgements, skipped = judge_log(
            list(self.events.impressions(cid)), list(self.events.clicks(cid)), list(self.events.ratings(cid)),
            self.training, skip, self._propensity(cid),
        )
        k = self.training.negatives_per_positive
        wanted = {d for j in judgements for d in (*j.positives, *j.negatives)}
        texts = data.texts(sorted(wanted))
        triplets = []
        for j in judgements:
            negatives = [d for d in j.negatives if d in texts][:k]
            exclude = set(j.positives) | set(negatives)
            negatives += data.random_ids(rng, k - len(negatives), exclude)
            neg_texts = data.texts(negatives)
            negatives = [d for d in negatives if d in neg_texts]
            for doc_id, weight in j.positives.items():
                if doc_id not in texts:
                    skipped["unknown_doc"] = skipped.get("unknown_doc", 0) + 1
                    continue
                triplets.append(Triplet(j.query, texts[doc_id], doc_id, [neg_texts[d] for d in negatives],
                                        negatives, "events", round(weight, 4)))
        return triplets, skipped

    def _propensity(self, corpus_id: str) -> Callable[[int], float | None] | None:
        """The corpus's propensities measured now, when mining weights by them and interventions measured any."""
        if not self.training.mining.propensity_weights:
            return None
        measured = position_bias.measure(self.settings, self.events, corpus_id)
        if not measured.measured():
            log.warning("training.mining.propensity_weights: corpus %s has no intervened searches yet; clicks "
                        "mined unweighted", corpus_id)
            return None
        return measured.at

    def _from_golden(self, data: CorpusData, path: Path, skip: set[str], rng: random.Random):
        questions = [g for g in load_golden(path) if g.corpus_id in ("", data.corpus_id)]
        skipped: dict[str, int] = defaultdict(int)
        items = []
        for g in questions:
            if normalize_query(g.query) in skip:
                skipped["eval_query"] += 1
                continue
            cands = self.candidates.candidates(data.corpus_id, g.query, self.training.mining.hard_negative_depth)
            positives = [c.doc_id for c in cands if any(path_matches(c.doc_id, p) for p in g.expect_paths)]
            if not positives:  # not retrieved: the file's first chunk (or the document) itself
                ids = data.doc_ids()
                positives = [next(d for d in ids if path_matches(d, p)) for p in g.expect_paths
                             if any(path_matches(d, p) for d in ids)]
            if not positives:
                skipped["no_positive"] += 1
                continue
            items.append((g.query, positives, cands, lambda d, g=g: any(path_matches(d, p) for p in g.expect_paths)))
        return self._with_hard_negatives(data, items, "golden", rng), dict(skipped)

    def _from_qrels(self, data: CorpusData, qrels_split: str, rng: random.Random):
        """qrels_split: the Mine request's split, else training.train_split (either may be 'split@share')."""
        queries = data.queries()
        qrels, skipped = train_queries(self.settings, data, qrels_split or self.training.train_split,
                                       "qrels_split" if qrels_split else "training.train_split")
        items = []
        for qid, rel in qrels.items():
            positives = sorted(d for d, g in rel.items() if g > 0)
            cands = self.candidates.candidates(data.corpus_id, queries[qid], self.training.mining.hard_negative_depth)
            # Documents judged non-relevant (grade 0) stay eligible: they are the surest hard negatives.
            items.append((queries[qid], positives, cands, set(positives).__contains__))
        return self._with_hard_negatives(data, items, "qrels", rng), skipped

    def _with_hard_negatives(self, data: CorpusData, items, source: str, rng: random.Random) -> list[Triplet]:
        """items: (query, positive ids, fused candidates, never_a_negative(doc_id))."""
        k = self.training.negatives_per_positive
        n_random = round(k * self.training.mining.random_negative_share)
        triplets: list[Triplet] = []
        for query, positives, cands, excluded in items:
            pos_scores = [c.score for c in cands if c.doc_id in positives]
            ceiling = max(pos_scores) * self.training.mining.hard_negative_max_ratio if pos_scores else None
            hard = [c.doc_id for c in cands if not excluded(c.doc_id) and c.doc_id not in positives
                    and (ceiling is None or c.score < ceiling)][: k - n_random]
            negatives = hard + data.random_ids(rng, k - len(hard), set(positives) | set(hard))
            texts = data.texts(list(positives) + negatives)
            negatives = [d for d in negatives if d in texts and not excluded(d)]
            for pos in positives:
                if pos in texts:
                    triplets.append(Triplet(query, texts[pos], pos, [texts[d] for d in negatives], negatives, source))
        return triplets

    def answer_set_path(self, name: str) -> Path:
        root = Path(self.training.answer_sets_dir) if self.training.answer_sets_dir else None
        if root is None or not name.replace("_", "").replace("-", "").isalnum():
            return Path("/nonexistent")
        return root / name / "rerank_train.jsonl"

    def _from_answer_set(self, name: str, skip: set[str], rng: random.Random):
        """A general answer-selection set (`{query, candidates: [{id, text, label}]}` per line)."""
        k = self.training.negatives_per_positive
        skipped: dict[str, int] = defaultdict(int)
        triplets = []
        with self.answer_set_path(name).open(encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                row = json.loads(line)
                if normalize_query(row["query"]) in skip:
                    skipped["eval_query"] += 1
                    continue
                # Some sets (trecqa) carry no candidate ids: the position in the list stands in.
                cands = [{**c, "id": str(c.get("id") or f"{row.get('qid', '')}#{i}")}
                         for i, c in enumerate(row["candidates"])]
                pos = [c for c in cands if c.get("label", 0) > 0]
                neg = [c for c in cands if c.get("label", 0) <= 0]
                if not pos or not neg:
                    skipped["no_pair"] += 1
                    continue
                for p in pos:
                    picked = rng.sample(neg, min(k, len(neg)))
                    triplets.append(Triplet(row["query"], p["text"], p["id"], [n["text"] for n in picked],
                                            [n["id"] for n in picked], name))
        return triplets, dict(skipped)

    # -- output --------------------------------------------------------------------------------

    @staticmethod
    def _write(path: Path, triplets: list[Triplet]) -> Path:
        # "x": a mining run never overwrites a file, whatever wrote it.
        with path.open("x", encoding="utf-8") as fh:
            for t in triplets:
                fh.write(json.dumps(asdict(t), ensure_ascii=False) + "\n")
        return path

    @staticmethod
    def _write_json(path: Path, data: dict) -> None:
        with path.open("x", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)


def load_triplets(paths: Iterable[Path]) -> list[Triplet]:
    out = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    if line.strip():
                        row = json.loads(line)
                        out.append(Triplet(**{k: row[k] for k in Triplet.__dataclass_fields__ if k in row}))
        except FileNotFoundError as err:
            raise invalid("triplet_files", f"no triplet file {path}") from err
        except (ValueError, TypeError) as err:
            raise invalid("triplet_files", f"{path} is not a triplet file: {err}") from err
    return out


def corpus_triplet_files(settings: Settings, corpus_id: str) -> list[Path]:
    """The corpus's training set: the newest file of each source. A mining run reads its whole source again
    (the entire event log, the whole split, the whole golden file), so an older file of that source would
    count its data twice. Each golden file and each qrels split is a source of its own."""
    newest: dict[str, Path] = {}
    for path in sorted(triplets_dir(settings, corpus_id).glob("*.jsonl"), key=lambda p: (p.stat().st_mtime, p.name)):
        newest[_source_read(path)] = path
    return sorted(newest.values())


def _source_read(triplet_file: Path) -> str:
    """What the mining run that wrote `<source>-<run: mYYYYmmdd-HHMMSS-hex>.jsonl` read, from its manifest:
    'golden:<file>', 'qrels:<split>' (a share of a split re-reads that split), or the source name."""
    source = triplet_file.stem.rsplit("-", 3)[0]
    if source not in ("golden", "qrels"):
        return source
    mining_run_id = triplet_file.stem[len(source) + 1:]
    try:
        manifest = json.loads((triplet_file.parent / f"{mining_run_id}.mining.json").read_text())
    except (OSError, ValueError):
        return f"{source}:{mining_run_id}"  # origin unknown: never let it replace another file
    if source == "golden":
        return f"golden:{Path(manifest.get('golden_path', '')).resolve()}"
    return f"qrels:{str(manifest.get('qrels_split', '')).partition('@')[0]}"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

