"""Which judge decides at the gate, and its verdict with the numbers behind it.

`training.judge`: labels = the frozen evaluation set (nDCG@10 on a qrels split or golden file), clicks =
the held-out sessions' clicks (services/trainer/click_judge.py), auto = labels when the corpus declares
a qrels split or golden file, else clicks. Where labels decide, the click judge's verdict is recorded
beside theirs whenever it can be given, so the two judges' agreement is measured on every run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from services.common.config import Settings
from services.common.errors import FeedrankError
from services.trainer.click_judge import METRIC, ClickJudge
from services.trainer.corpus_data import CorpusData, parse_split
from services.trainer.evaluation import FUSED, Evaluator


@dataclass
class Verdict:
    judge: str  # "labels" | "clicks"
    metric: str  # what `gain` is a difference of
    gain: float
    p_value: float
    eval_id: str
    numbers: dict[str, float]
    beside: dict[str, Any] = field(default_factory=dict)  # the click judge's verdict where labels decided


def declared_judge(settings: Settings, corpus_id: str) -> str:
    """labels or clicks, resolving `auto` by whether the corpus declares labels."""
    training = settings.training
    if training.judge != "auto":
        return training.judge
    if training.eval_golden:
        return "labels"
    split, _ = parse_split(training.eval_split, "training.eval_split")
    data = CorpusData(settings, corpus_id)
    try:
        return "labels" if split in data.splits() else "clicks"
    finally:
        data.close()


class Judges:
    def __init__(self, settings: Settings, evaluator: Evaluator, clicks: ClickJudge):
        self.settings = settings
        self.evaluator = evaluator
        self.clicks = clicks

    def verdict(self, corpus_id: str, challenger: str, champion: str) -> Verdict:
        """challenger vs champion (a version id, or "fused") by the corpus's judge."""
        if declared_judge(self.settings, corpus_id) == "clicks":
            return self._by_clicks(corpus_id, challenger, champion)
        result = self.evaluator.evaluate(corpus_id, challenger=challenger, champion=champion)
        m = result["metrics"]
        verdict = Verdict("labels", "nDCG@10", result["ndcg_gain"], result["p_value"], result["eval_id"], {
            "ndcg_gain": result["ndcg_gain"], "p_value": result["p_value"], "queries": float(result["queries"]),
            "challenger_ndcg@10": m["challenger"]["ndcg@10"], "champion_ndcg@10": m["champion"]["ndcg@10"],
            "fused_ndcg@10": m[FUSED]["ndcg@10"],
        })
        verdict.beside = self._beside(corpus_id, challenger, champion, verdict)
        return verdict

    def _by_clicks(self, corpus_id: str, challenger: str, champion: str) -> Verdict:
        result = self.clicks.evaluate(corpus_id, challenger, champion)
        m = result["metrics"]
        return Verdict("clicks", f"IPS-DCG@10 of clicks (clip {result['propensity_clip']:g})", result["gain"],
                       result["p_value"], result["eval_id"], {
                           "ips_gain": result["gain"], "p_value": result["p_value"],
                           "sessions": float(result["sessions"]), "searches": float(result["searches"]),
                           "clicks": float(result["clicks"]), "judged_queries": float(result["judged_queries"]),
                           "kept_from_mining": float(result["kept_from_mining"]),
                           "learned_dropped": float(result["learned_dropped"]),
                           f"challenger_{METRIC}": m["challenger"][METRIC],
                           f"champion_{METRIC}": m["champion"][METRIC], f"fused_{METRIC}": m[FUSED][METRIC],
                       })

    def _beside(self, corpus_id: str, challenger: str, champion: str, labels: Verdict) -> dict[str, Any]:
        """The click judge's verdict next to the labelled one, and whether they agree on the sign."""
        try:
            clicks = self._by_clicks(corpus_id, challenger, champion)
        except FeedrankError as err:
            return {"judge": "clicks", "available": False, "reason": str(err)}
        significant = labels.p_value < self.settings.training.gate.max_p
        return {
            "judge": "clicks", "available": True, "eval_id": clicks.eval_id, "gain": clicks.gain,
            "p_value": clicks.p_value, "numbers": clicks.numbers,
            "labelled_significant": significant,
            # Agreement counts where the labelled difference is significant: there the sign is known.
            "same_sign": (clicks.gain > 0) == (labels.gain > 0) if labels.gain != 0 else clicks.gain == 0,
        }


def agreement(decisions: Iterable[dict[str, Any]], corpus_id: str | None = None) -> dict[str, int]:
    """Over the gate decisions that labels made (of one corpus, or all): how many challengers were judged,
    how many also had the click judge's verdict, how many of those had a significant labelled difference
    (where the sign is known), and how many of those the click judge called with the same sign."""
    judged = [d for d in decisions if d.get("judge") == "labels" and corpus_id in (None, d.get("corpus_id"))]
    beside = [d["beside"] for d in judged if (d.get("beside") or {}).get("available")]
    significant = [b for b in beside if b["labelled_significant"]]
    return {"challengers": len(judged), "with_click_verdict": len(beside), "labelled_significant": len(significant),
            "agree_on_sign": sum(1 for b in significant if b["same_sign"])}


def describe_agreement(a: dict[str, int]) -> str:
    return (f"click judge vs labels: {a['agree_on_sign']} of {a['labelled_significant']} significant labelled "
            f"differences agree on sign ({a['challengers']} challengers judged by labels, {a['with_click_verdict']} "
            "with a click verdict beside)")
