"""What an experiment's end does: the version's history, the promotion on a win (when allowed), the event."""

from __future__ import annotations

from services.common.config import InterleavingSettings, LoopSettings, Settings
from services.registry.store import FileRegistry
from services.trainer.gate import Gate
from services.trainer.online.credit import Outcome
from services.trainer.online.experiments import ExperimentBook
from services.trainer.online.verdicts import Verdicts
from tests.trainer.test_experiment_api import publish


class Events:
    def __init__(self):
        self.sent = []

    def publish(self, experiment):
        self.sent.append((experiment.experiment_id, experiment.state))


def setup(tmp_path, auto_promote: bool):
    settings = Settings(data_dir=str(tmp_path / "data"), loop=LoopSettings(auto_promote_online=auto_promote))
    registry = FileRegistry(settings.registry_path)
    champion, challenger = publish(registry, tmp_path / "a"), publish(registry, tmp_path / "b")
    registry.update_aliases("c", {"champion": champion, "challenger": challenger}, "test")
    gate = Gate(settings, registry, None, None, None)
    events = Events()

    def promote(experiment, reason):
        return gate.promote_decided(experiment.corpus_id, experiment.challenger_version,
                                    experiment.champion_version, reason, judge="online")

    book = ExperimentBook(tmp_path / "e.json", InterleavingSettings(),
                          on_change=Verdicts(settings, registry, promote, events))
    return registry, book, events, champion, challenger


def test_a_win_promotes_when_auto_promote_is_on_and_the_history_keeps_the_numbers(tmp_path):
    registry, book, events, champion, challenger = setup(tmp_path, auto_promote=True)
    experiment = book.start("c", champion, challenger)
    done = book.record(experiment.experiment_id, [Outcome.CHALLENGER_WINS] * 300)
    assert done.state == "win"
    assert registry.aliases("c")["champion"] == challenger and registry.aliases("c")["previous"] == champion
    [note] = [r for r in registry.history("c") if r["alias"] is None]
    assert note["judge"] == "online" and note["to"] == challenger
    assert note["numbers"]["wins"] == done.wins and note["numbers"]["p_value"] == done.p_value
    [flip] = [r for r in registry.history("c") if r["alias"] == "champion" and r["to"] == challenger]
    assert flip["judge"] == "online" and f"{done.wins} wins" in flip["reason"]
    assert events.sent == [(experiment.experiment_id, "running"), (experiment.experiment_id, "win")]


def test_a_win_is_only_reported_when_auto_promote_is_off_and_a_loss_changes_no_alias(tmp_path):
    registry, book, events, champion, challenger = setup(tmp_path, auto_promote=False)
    won = book.record(book.start("c", champion, challenger).experiment_id, [Outcome.CHALLENGER_WINS] * 300)
    lost = book.record(book.start("c", champion, challenger).experiment_id, [Outcome.CHAMPION_WINS] * 300)
    assert (won.state, lost.state) == ("win", "loss")
    assert registry.aliases("c")["champion"] == champion
    notes = [r for r in registry.history("c") if r["alias"] is None]
    assert [n["numbers"]["state"] for n in notes] == ["win", "loss"]
    assert "loss" in notes[1]["reason"] and f"{lost.losses} losses" in notes[1]["reason"]


def test_a_stop_is_kept_in_the_history_with_its_reason(tmp_path):
    registry, book, events, champion, challenger = setup(tmp_path, auto_promote=True)
    book.start("c", champion, challenger)
    book.stop("c", "the challenger failed 20 interleaved searches in a row")
    [note] = [r for r in registry.history("c") if r["alias"] is None]
    assert "failed 20 interleaved searches" in note["reason"] and note["numbers"]["state"] == "stopped"
    assert registry.aliases("c")["champion"] == champion
