"""Online experiments on the Trainer gRPC API, over a real `python -m services.trainer` process."""

from __future__ import annotations

import grpc
import pytest

from services.common.config import Settings
from services.proto.feedrank.v1 import trainer_pb2, trainer_pb2_grpc
from services.registry.store import FileRegistry
from tests.trainer.conftest import build_corpus, training_env

TOKEN = "s3cret"
AUTH = [("authorization", f"Bearer {TOKEN}")]
FIELDS = {"kind": "cross-encoder", "base_model": "base", "max_length": 128, "activation": "sigmoid"}


def publish(registry: FileRegistry, folder) -> str:
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"weights")
    (folder / "tokenizer.json").write_text("{}")
    return registry.publish(folder, FIELDS).version_id


def rpc_error(call, request, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call(request, timeout=30, **kwargs)
    return err.value


def test_start_status_stop_and_bad_input(data_dir, tmp_path, trainer_process):
    build_corpus(data_dir)
    registry = FileRegistry(Settings(data_dir=str(data_dir)).registry_path)
    champion, challenger = publish(registry, tmp_path / "a"), publish(registry, tmp_path / "b")
    registry.set_alias("champion", champion, "test")
    trainer = trainer_process(**training_env(data_dir), FEEDRANK_ENDPOINTS__ADMIN_TOKEN=TOKEN)
    stub = trainer_pb2_grpc.TrainerStub(grpc.insecure_channel(trainer.target))
    start = trainer_pb2.StartExperimentRequest

    err = rpc_error(stub.GetExperiment, trainer_pb2.GetExperimentRequest(corpus_id="tiny"))
    assert err.code() == grpc.StatusCode.NOT_FOUND and "corpus_id" in err.details()
    assert rpc_error(stub.StartExperiment, start(corpus_id="tiny")).code() == grpc.StatusCode.UNAUTHENTICATED
    err = rpc_error(stub.StartExperiment, start(corpus_id="nope"), metadata=AUTH)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "corpus_id" in err.details()
    err = rpc_error(stub.StartExperiment, start(corpus_id="tiny"), metadata=AUTH)  # no challenger alias yet
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "challenger_version" in err.details()
    registry.set_alias("challenger", challenger, "test")
    for share in (1.5, -0.2):
        err = rpc_error(stub.StartExperiment, start(corpus_id="tiny", share=share), metadata=AUTH)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "share" in err.details()

    started = stub.StartExperiment(start(corpus_id="tiny", share=0.25, query_budget=500), timeout=30, metadata=AUTH)
    assert (started.champion_version, started.challenger_version, started.share, started.query_budget,
            started.state) == (champion, challenger, 0.25, 500, "running")
    err = rpc_error(stub.StartExperiment, start(corpus_id="tiny"), metadata=AUTH)
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "corpus_id" in err.details()
    assert started.experiment_id in err.details()

    default_share = stub.GetExperiment(trainer_pb2.GetExperimentRequest(corpus_id="tiny"), timeout=30)
    assert default_share.experiment_id == started.experiment_id and default_share.alpha == 0.05

    stopped = stub.StopExperiment(trainer_pb2.StopExperimentRequest(corpus_id="tiny", reason="challenger broken"),
                                  timeout=30, metadata=AUTH)
    assert stopped.state == "stopped" and stopped.reason == "challenger broken" and stopped.ended_ms > 0
    err = rpc_error(stub.StopExperiment, trainer_pb2.StopExperimentRequest(corpus_id="tiny"), metadata=AUTH)
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "corpus_id" in err.details()
    # The default share comes from the settings when the request leaves it unset.
    again = stub.StartExperiment(start(corpus_id="tiny"), timeout=30, metadata=AUTH)
    assert again.share == 0.5 and again.query_budget == 20000
    # A version named at the start becomes the corpus's challenger alias: the retriever asks for that alias.
    stub.StopExperiment(trainer_pb2.StopExperimentRequest(corpus_id="tiny"), timeout=30, metadata=AUTH)
    third = publish(registry, tmp_path / "c")
    named = stub.StartExperiment(start(corpus_id="tiny", challenger_version=third), timeout=30, metadata=AUTH)
    assert named.challenger_version == third and registry.aliases("tiny")["challenger"] == third
    assert registry.resolve("challenger") == challenger  # the global scope is left alone


def test_the_cli_starts_reports_and_stops(data_dir, tmp_path, trainer_process, monkeypatch):
    from typer.testing import CliRunner

    from services.cli import app
    from services.common.config import get_settings

    build_corpus(data_dir)
    registry = FileRegistry(Settings(data_dir=str(data_dir)).registry_path)
    registry.set_alias("challenger", publish(registry, tmp_path / "b"), "test")
    trainer = trainer_process(**training_env(data_dir), FEEDRANK_ENDPOINTS__ADMIN_TOKEN=TOKEN)
    monkeypatch.setenv("FEEDRANK_ENDPOINTS__ADMIN_TOKEN", TOKEN)
    get_settings.cache_clear()
    try:
        def cli(*args):
            return CliRunner().invoke(app, ["experiment", *args, "--corpus-id", "tiny", "--target", trainer.target],
                                      terminal_width=200)

        bad = cli("start", "--share", "2")
        assert bad.exit_code == 2 and "share" in bad.output
        started = cli("start", "--share", "0.4", "--budget", "300")
        assert started.exit_code == 0 and "running" in started.output and "share 0.4" in started.output
        status = cli("status")
        assert status.exit_code == 0 and "(fused order)" in status.output and "p = 1" in status.output
        stopped = cli("stop", "--reason", "enough")
        assert stopped.exit_code == 0 and "stopped" in stopped.output and "enough" in stopped.output
    finally:
        get_settings.cache_clear()
