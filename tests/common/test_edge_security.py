"""The gRPC edge every service shares: where it binds, who may call what, TLS, and message sizes.

A small servicer of the real `feedrank.v1.Retriever` service answers with the role the edge proved
(Search puts it in `query_id`, the admin method UpdateConfig in `reranking.reranker_mode`), served by
the real `GrpcApp` on a free loopback port and called through the real client channels.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.auth import caller_role
from services.common.channels import open_aio_channel
from services.common.config import EndpointSettings, Settings
from services.common.credentials import admin_token_path, client_admin_token, ensure_token_file
from services.common.errors import ErrorKind, FeedrankError
from services.common.grpc_server import GrpcApp
from services.proto.feedrank.v1 import retriever_pb2, retriever_pb2_grpc, trainer_pb2, trainer_pb2_grpc
from services.trainer.server import ADMIN_METHODS, TrainerServicer
from tests.common.tls_certs import TestCA
from tests.conftest import REPO, free_port

SERVICE = retriever_pb2.DESCRIPTOR.services_by_name["Retriever"].full_name
TRAINER = trainer_pb2.DESCRIPTOR.services_by_name["Trainer"].full_name


class RoleEcho(retriever_pb2_grpc.RetrieverServicer):
    async def Search(self, request, context):
        return retriever_pb2.SearchResponse(query_id=caller_role())

    async def UpdateConfig(self, request, context):
        return retriever_pb2.RetrievalConfig(reranking=retriever_pb2.RerankingConfig(reranker_mode=caller_role()))


def _settings(data_dir, **endpoints) -> Settings:
    return Settings(data_dir=str(data_dir)).replace(endpoints=EndpointSettings(metrics_port_offset=0, **endpoints))


@contextlib.asynccontextmanager
async def serving(settings: Settings, host: str = "127.0.0.1"):
    app = GrpcApp("echo", [SERVICE], lambda s: retriever_pb2_grpc.add_RetrieverServicer_to_server(RoleEcho(), s),
                  settings=settings, bind=f"{host}:{free_port()}", admin_methods=("UpdateConfig",), grace_seconds=0)
    await app.start()
    try:
        yield f"127.0.0.1:{app.port}"
    finally:
        await app.stop()


async def _calls(target: str, endpoints: EndpointSettings, token: str = "") -> dict[str, str]:
    """What Search and UpdateConfig answer with `token`: the role the edge proved, or the refusal's code."""
    out = {}
    async with open_aio_channel(target, endpoints, token=token) as channel:
        stub = retriever_pb2_grpc.RetrieverStub(channel)
        for name, call, role_of in (
            ("Search", lambda: stub.Search(retriever_pb2.SearchRequest(query="q"), timeout=10), lambda r: r.query_id),
            ("UpdateConfig", lambda: stub.UpdateConfig(retriever_pb2.UpdateConfigRequest(), timeout=10),
             lambda r: r.reranking.reranker_mode),
        ):
            try:
                out[name] = role_of(await call())
            except grpc.aio.AioRpcError as err:
                out[name] = err.code().name
    return out


def test_services_bind_loopback_by_default():
    assert EndpointSettings().bind_host == "127.0.0.1"


def test_a_server_bound_beyond_loopback_without_an_admin_token_refuses_to_start(tmp_path):
    with pytest.raises(FeedrankError) as err:
        GrpcApp("echo", [SERVICE], lambda s: None, settings=_settings(tmp_path), bind=f"0.0.0.0:{free_port()}")
    assert err.value.kind == ErrorKind.FAILED_PRECONDITION and err.value.field == "endpoints.admin_token"
    assert not admin_token_path(_settings(tmp_path)).exists()  # a token file would not help a remote operator


def test_a_service_process_bound_beyond_loopback_without_a_token_exits_saying_why(tmp_path):
    env = {**os.environ, "FEEDRANK_DATA_DIR": str(tmp_path), "FEEDRANK_ENDPOINTS__BIND_HOST": "0.0.0.0",
           "FEEDRANK_ENDPOINTS__METRICS_PORT_OFFSET": "0", "FEEDRANK_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    env.pop("FEEDRANK_ENDPOINTS__ADMIN_TOKEN", None)
    done = subprocess.run([sys.executable, "-m", "services.feedback", "--port", str(free_port())], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "endpoints.admin_token" in done.stderr and "FEEDRANK_ENDPOINTS__ADMIN_TOKEN" in done.stderr, done.stderr


def test_with_no_token_configured_admin_calls_need_the_data_dirs_admin_token(tmp_path):
    settings = _settings(tmp_path)

    async def scenario():
        async with serving(settings) as target:
            path = admin_token_path(settings)
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            token = path.read_text().strip()
            assert len(token) >= 32 and client_admin_token(settings) == token  # what the CLI sends
            return (await _calls(target, settings.endpoints), await _calls(target, settings.endpoints, "wrong"),
                    await _calls(target, settings.endpoints, token))

    anonymous, wrong, admin = asyncio.run(scenario())
    assert anonymous == {"Search": "anonymous", "UpdateConfig": "UNAUTHENTICATED"}
    assert wrong == {"Search": "anonymous", "UpdateConfig": "UNAUTHENTICATED"}
    assert admin == {"Search": "admin", "UpdateConfig": "admin"}


def test_a_configured_admin_token_wins_and_no_file_is_written(tmp_path):
    settings = _settings(tmp_path, admin_token="configured-admin")

    async def scenario():
        async with serving(settings) as target:
            return await _calls(target, settings.endpoints, "configured-admin")

    assert asyncio.run(scenario()) == {"Search": "admin", "UpdateConfig": "admin"}
    assert not admin_token_path(settings).exists()


def test_a_read_token_guards_reading_calls_and_grants_nothing_more(tmp_path):
    settings = _settings(tmp_path, admin_token="adm", read_token="rd")

    async def scenario():
        async with serving(settings) as target:
            results = {token: await _calls(target, settings.endpoints, token) for token in ("", "rd", "adm")}
            async with open_aio_channel(target, settings.endpoints) as channel:  # probes need no token
                health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            return results, health.status

    results, health = asyncio.run(scenario())
    assert results[""] == {"Search": "UNAUTHENTICATED", "UpdateConfig": "UNAUTHENTICATED"}
    assert results["rd"] == {"Search": "read", "UpdateConfig": "UNAUTHENTICATED"}
    assert results["adm"] == {"Search": "admin", "UpdateConfig": "admin"}
    assert health == health_pb2.HealthCheckResponse.SERVING


def test_tls_server_verified_by_its_client_and_refused_in_plaintext(tmp_path):
    ca = TestCA(tmp_path)
    server = ca.issue("server", server=True)
    settings = _settings(tmp_path, admin_token="adm", tls_cert_file=str(server.cert), tls_key_file=str(server.key))
    verifying = EndpointSettings(tls_ca_file=str(ca.pem.cert))
    (tmp_path / "other").mkdir()
    stranger = EndpointSettings(tls_ca_file=str(TestCA(tmp_path / "other", "other-ca").pem.cert))

    async def scenario():
        async with serving(settings) as target:
            return (await _calls(target, verifying, "adm"), await _calls(target, EndpointSettings()),
                    await _calls(target, stranger, "adm"))

    verified, plaintext, untrusted = asyncio.run(scenario())
    assert verified == {"Search": "admin", "UpdateConfig": "admin"}
    assert plaintext == {"Search": "UNAVAILABLE", "UpdateConfig": "UNAVAILABLE"}
    assert untrusted == {"Search": "UNAVAILABLE", "UpdateConfig": "UNAVAILABLE"}  # a CA we do not trust


def test_mtls_server_refuses_a_client_without_a_certificate_it_trusts(tmp_path):
    ca = TestCA(tmp_path)
    server, client = ca.issue("server", server=True), ca.issue("client", server=False)
    settings = _settings(tmp_path, admin_token="adm", tls_cert_file=str(server.cert), tls_key_file=str(server.key),
                         tls_client_ca_file=str(ca.pem.cert))
    anonymous_client = EndpointSettings(tls_ca_file=str(ca.pem.cert))
    certified_client = EndpointSettings(tls_ca_file=str(ca.pem.cert), tls_cert_file=str(client.cert),
                                        tls_key_file=str(client.key))

    async def scenario():
        async with serving(settings) as target:
            return await _calls(target, anonymous_client, "adm"), await _calls(target, certified_client, "adm")

    without, with_cert = asyncio.run(scenario())
    assert without == {"Search": "UNAVAILABLE", "UpdateConfig": "UNAVAILABLE"}
    assert with_cert == {"Search": "admin", "UpdateConfig": "admin"}


def test_servers_and_channels_take_their_message_size_from_the_settings(tmp_path):
    small = _settings(tmp_path, admin_token="adm", max_message_bytes=4096)
    big_query = retriever_pb2.SearchRequest(query="x" * 8192)

    async def scenario():
        async with serving(small) as target:
            async with open_aio_channel(target, EndpointSettings()) as channel:  # a client allowing more
                with pytest.raises(grpc.aio.AioRpcError) as received:
                    await retriever_pb2_grpc.RetrieverStub(channel).Search(big_query, timeout=10)
            async with open_aio_channel(target, small.endpoints) as channel:
                with pytest.raises(grpc.aio.AioRpcError) as sent:
                    await retriever_pb2_grpc.RetrieverStub(channel).Search(big_query, timeout=10)
        return received.value, sent.value

    received, sent = asyncio.run(scenario())
    # gRPC itself says RESOURCE_EXHAUSTED for both; the gateway and clients must not read it as overload
    # (tests/gateway/test_edges.py shows it becomes 413).
    assert received.code() == sent.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in received.details() and "larger than max" in sent.details()


class BlockingEvaluations:
    """A trainer core whose evaluations wait until released, counting how many run at once."""

    def __init__(self):
        self.release = threading.Event()
        self.started = threading.Event()
        self.running = self.most = 0
        self.lock = threading.Lock()

    def evaluate(self, corpus_id, challenger, champion):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        self.started.set()
        self.release.wait(30)
        with self.lock:
            self.running -= 1
        metrics = {"ndcg@10": 0.5}
        return {"eval_id": f"e-{corpus_id}", "metrics": {"champion": metrics, "challenger": metrics},
                "ndcg_gain": 0.0, "p_value": 1.0}


def test_evaluate_needs_the_admin_token_and_runs_one_at_a_time(tmp_path):
    assert "Evaluate" in ADMIN_METHODS
    core = BlockingEvaluations()
    settings = _settings(tmp_path, admin_token="adm")
    request = trainer_pb2.EvaluateRequest(corpus_id="tiny")

    async def scenario():
        app = GrpcApp("trainer", [TRAINER],
                      lambda s: trainer_pb2_grpc.add_TrainerServicer_to_server(TrainerServicer(core), s),
                      settings=settings, bind=f"127.0.0.1:{free_port()}", admin_methods=ADMIN_METHODS, grace_seconds=0)
        await app.start()
        target = f"127.0.0.1:{app.port}"
        try:
            async with open_aio_channel(target, settings.endpoints) as anonymous:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await trainer_pb2_grpc.TrainerStub(anonymous).Evaluate(request, timeout=10)
            async with open_aio_channel(target, settings.endpoints, token="adm") as channel:
                stub = trainer_pb2_grpc.TrainerStub(channel)
                first = asyncio.ensure_future(stub.Evaluate(request, timeout=30))
                await asyncio.to_thread(core.started.wait, 30)
                with pytest.raises(grpc.aio.AioRpcError) as busy:
                    await stub.Evaluate(request, timeout=10)
                core.release.set()
                answer = await first
                again = await stub.Evaluate(request, timeout=30)  # free again once the first one ended
        finally:
            core.release.set()
            await app.stop()
        return refused.value, busy.value, answer, again

    refused, busy, answer, again = asyncio.run(scenario())
    assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
    assert busy.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "already running" in busy.details()
    assert answer.eval_id == again.eval_id == "e-tiny"
    assert core.most == 1


def test_concurrent_starters_agree_on_one_admin_token_and_leave_nothing_behind(tmp_path):
    path = tmp_path / "data" / "admin.token"
    with ThreadPoolExecutor(8) as pool:
        tokens = set(pool.map(lambda _: ensure_token_file(path), range(16)))
    assert len(tokens) == 1 and tokens == {path.read_text().strip()}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["admin.token"]  # no staged copies left
    path.write_text("")
    with pytest.raises(FeedrankError, match="empty"):
        ensure_token_file(path)
