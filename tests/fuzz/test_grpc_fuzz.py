"""Hypothesis-generated requests for every RPC of the four gRPC services, sent to a running stack.

Requests are well-typed protobuf messages built from each request type's descriptor, with hostile
values: unicode, empty and ~70 KB strings, path traversals, negative and extreme integers, NaN and
infinities, enum numbers the schema does not define, repeated fields of a few items. The calls carry
the admin token, so they reach the code behind the auth check. A call may be refused with any status
that names a caller's mistake or an unmet condition; INTERNAL or UNKNOWN means an unhandled error.
Trainer calls draw ids and corpora that do not exist, so no mining or training actually runs.
"""

from __future__ import annotations

import math

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.proto.feedrank.v1 import (
    feedback_pb2,
    feedback_pb2_grpc,
    reranker_pb2,
    reranker_pb2_grpc,
    retriever_pb2,
    retriever_pb2_grpc,
    trainer_pb2,
    trainer_pb2_grpc,
)
from tests.faults.conftest import CORPUS, start_stack

TOKEN = "fuzz-admin-token"
METADATA = (("authorization", f"Bearer {TOKEN}"),)
BAD_STATUSES = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}

# Strings a hostile or careless client sends: names the services know, traversals, control characters.
_SPECIAL = ["", " ", "champion", "challenger", "none", "base", "..", "../../etc/passwd", "/etc/passwd", "a/b",
            "\x00", "\u202e\u0000\ud7ff", "☃" * 40, "%s%n", "' OR 1=1 --", "NaN", "-1", "events", "qrels", "golden"]
_HUGE = st.integers(1000, 70_000).map(lambda n: "é" * n)  # past the 64 KiB text limits once UTF-8 encoded
_INT32 = st.one_of(st.integers(-(2**31), 2**31 - 1), st.sampled_from([0, -1, 1, 2**31 - 1, -(2**31)]))
_INT64 = st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from([0, -1, 1, 2**63 - 1, -(2**63)]))
_UINT = st.integers(0, 2**32 - 1)


def _strings(known: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(st.text(max_size=40), st.sampled_from(_SPECIAL + known), _HUGE)


def _scalar(field: FieldDescriptor, text: st.SearchStrategy[str]) -> st.SearchStrategy:
    t = field.type
    if t == FieldDescriptor.TYPE_STRING:
        return text
    if t == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t == FieldDescriptor.TYPE_DOUBLE:
        return st.floats(allow_nan=True, allow_infinity=True)
    if t == FieldDescriptor.TYPE_FLOAT:
        return st.floats(allow_nan=True, allow_infinity=True, width=32)
    if t == FieldDescriptor.TYPE_ENUM:
        # proto3 enums are open: numbers outside the schema travel as they are.
        return st.one_of(st.sampled_from([v.number for v in field.enum_type.values]), st.integers(-3, 99))
    if t in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64):
        return _INT64
    if t in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return _UINT
    if t in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return st.integers(0, 2**64 - 1)
    return _INT32



def message(cls, text: st.SearchStrategy[str], depth: int = 0) -> st.SearchStrategy:
    """Any instance of `cls`: each field set or left unset, nested messages to a small depth."""

    @st.composite
    def build(draw):
        msg = cls()
        for field in cls.DESCRIPTOR.fields:
            if not draw(st.booleans()):
                continue
            target = getattr(msg, field.name) if field.is_repeated else None
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                key_f, value_f = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
                if value_f.message_type is not None:
                    continue  # no request carries a map of messages
                target.update(draw(st.dictionaries(_scalar(key_f, text), _scalar(value_f, text), max_size=3)))
            elif field.message_type is not None:
                if depth >= 3:
                    continue
                sub = message(field.message_type._concrete_class, text, depth + 1)
                if field.is_repeated:
                    for item in draw(st.lists(sub, max_size=3)):
                        target.add().CopyFrom(item)
                else:
                    getattr(msg, field.name).CopyFrom(draw(sub))
            elif field.is_repeated:
                target.extend(draw(st.lists(_scalar(field, text), max_size=4)))
            else:
                setattr(msg, field.name, draw(_scalar(field, text)))
        return msg

    return build()


# Known names each service may see. The retriever gets the real corpus (so searches run for real);
# the trainer never does, so Mine/Train/Evaluate/Promote fail fast on data that is not there.
_RETRIEVER = [CORPUS, "does aspirin affect health", "fusion.method", "fusion.rrf_k", "reranking.reranker_mode",
              "reranking.tribrid_reranker_topn", "fusion.vector_weight", "reranking.reranker_timeout", "local"]
_TRAINER = ["no-such-corpus", "run-0", "v20260101-000000-abcdef", "epochs", "learning_rate", "batch_size"]

_RUN_ID_RPCS = ("GetRun", "CancelRun", "StreamRunMetrics")

# (service, method, request class, how it is called, names to draw strings from)
RPCS = [
    ("retriever", "Search", retriever_pb2.SearchRequest, "unary", _RETRIEVER),
    ("retriever", "GetConfig", retriever_pb2.GetConfigRequest, "unary", _RETRIEVER),
    ("retriever", "UpdateConfig", retriever_pb2.UpdateConfigRequest, "unary", _RETRIEVER),
    ("retriever", "ListCorpora", retriever_pb2.ListCorporaRequest, "unary", _RETRIEVER),
    ("reranker", "Rerank", reranker_pb2.RerankRequest, "unary", ["champion", "challenger"]),
    ("reranker", "GetInfo", reranker_pb2.GetRerankerInfoRequest, "unary", []),
    ("feedback", "Record", feedback_pb2.RecordRequest, "unary", [CORPUS, "click"]),
    ("feedback", "RecordStream", feedback_pb2.FeedbackEvent, "stream_in", [CORPUS, "click"]),
    ("feedback", "GetInfo", feedback_pb2.GetFeedbackInfoRequest, "unary", []),
    ("trainer", "Mine", trainer_pb2.MineRequest, "unary", _TRAINER),
    ("trainer", "Train", trainer_pb2.TrainRequest, "unary", _TRAINER),
    ("trainer", "GetRun", trainer_pb2.GetRunRequest, "unary", _TRAINER),
    ("trainer", "ListRuns", trainer_pb2.ListRunsRequest, "unary", _TRAINER),
    ("trainer", "CancelRun", trainer_pb2.CancelRunRequest, "unary", _TRAINER),
    ("trainer", "StreamRunMetrics", trainer_pb2.StreamRunMetricsRequest, "stream_out", _TRAINER),
    ("trainer", "Evaluate", trainer_pb2.EvaluateRequest, "unary", _TRAINER),
    ("trainer", "Promote", trainer_pb2.PromoteRequest, "unary", _TRAINER),
    ("trainer", "Rollback", trainer_pb2.RollbackRequest, "unary", _TRAINER),
    ("trainer", "EventStats", trainer_pb2.EventStatsRequest, "unary", _TRAINER),
    ("trainer", "StartExperiment", trainer_pb2.StartExperimentRequest, "unary", _TRAINER),
    ("trainer", "GetExperiment", trainer_pb2.GetExperimentRequest, "unary", _TRAINER),
    ("trainer", "StopExperiment", trainer_pb2.StopExperimentRequest, "unary", _TRAINER),
]
STUBS = {"retriever": retriever_pb2_grpc.RetrieverStub, "reranker": reranker_pb2_grpc.RerankerStub,
         "feedback": feedback_pb2_grpc.FeedbackStub, "trainer": trainer_pb2_grpc.TrainerStub}

# Trainer corpora that exist would start real work: every drawn corpus_id is forced away from the real one.
_NOT_A_CORPUS = "fuzz-absent-"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = start_stack(tmp_path_factory.mktemp("fuzz"), {"FEEDRANK_ENDPOINTS__ADMIN_TOKEN": TOKEN})
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def channels(stack):
    opened = {name: grpc.insecure_channel(stack.target(name)) for name in STUBS}
    yield opened
    for channel in opened.values():
        channel.close()


def _away_from_real_corpora(request) -> None:
    if hasattr(request, "corpus_id") and request.corpus_id == CORPUS:
        request.corpus_id = _NOT_A_CORPUS + CORPUS


def _call(channels, service: str, method: str, style: str, request):
    rpc = getattr(STUBS[service](channels[service]), method)
    if style == "stream_in":
        return rpc(iter(request), timeout=60, metadata=METADATA)
    if style == "stream_out":
        return list(rpc(request, timeout=60, metadata=METADATA))
    return rpc(request, timeout=60, metadata=METADATA)


@pytest.mark.parametrize(("service", "method", "request_cls", "style", "names"), RPCS,
                         ids=[f"{s}.{m}" for s, m, *_ in RPCS])
@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(data=st.data())
def test_no_rpc_answers_internal_or_unknown(channels, service, method, request_cls, style, names, data):
    strategy = message(request_cls, _strings(names))
    request = data.draw(st.lists(strategy, max_size=3) if style == "stream_in" else strategy, label="request")
    if service == "trainer":
        _away_from_real_corpora(request)
    try:
        _call(channels, service, method, style, request)
    except grpc.RpcError as err:
        assert err.code() not in BAD_STATUSES, f"{service}.{method} -> {err.code().name}: {err.details()}"
        # The token was sent: a refusal at the door would mean the fuzzing never reached the handler.
        assert err.code() != grpc.StatusCode.UNAUTHENTICATED, err.details()


ADMIN_RPCS = [
    ("retriever", "UpdateConfig", retriever_pb2.UpdateConfigRequest(
        fusion=retriever_pb2.FusionConfig(rrf_k=1.0), update_mask=["fusion.rrf_k"])),
    ("trainer", "Mine", trainer_pb2.MineRequest(corpus_id=CORPUS, sources=["qrels"])),
    ("trainer", "Train", trainer_pb2.TrainRequest(corpus_id=CORPUS)),
    ("trainer", "Promote", trainer_pb2.PromoteRequest(corpus_id=CORPUS, force=True)),
    ("trainer", "Rollback", trainer_pb2.RollbackRequest(corpus_id=CORPUS)),
    ("trainer", "CancelRun", trainer_pb2.CancelRunRequest(run_id="run-0")),
    ("trainer", "StartExperiment", trainer_pb2.StartExperimentRequest(corpus_id=CORPUS, challenger_version="v1")),
    ("trainer", "StopExperiment", trainer_pb2.StopExperimentRequest(corpus_id=CORPUS)),
    ("trainer", "Evaluate", trainer_pb2.EvaluateRequest(corpus_id=CORPUS)),
]


@pytest.mark.parametrize(("service", "method", "request_msg"), ADMIN_RPCS, ids=[f"{s}.{m}" for s, m, _ in ADMIN_RPCS])
@pytest.mark.parametrize("metadata", [(), (("authorization", "Bearer wrong"),), (("authorization", TOKEN),)],
                         ids=["no-token", "wrong-token", "no-bearer"])
def test_admin_rpcs_refuse_calls_without_the_token(channels, service, method, request_msg, metadata):
    config = retriever_pb2_grpc.RetrieverStub(channels["retriever"]).GetConfig
    before = config(retriever_pb2.GetConfigRequest(), timeout=30)
    with pytest.raises(grpc.RpcError) as err:
        getattr(STUBS[service](channels[service]), method)(request_msg, timeout=60, metadata=metadata)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, err.value.details()
    assert config(retriever_pb2.GetConfigRequest(), timeout=30) == before


@pytest.mark.parametrize("method", _RUN_ID_RPCS)
def test_an_overlong_run_id_is_refused_as_the_callers_mistake(channels, method):
    # The directed form of the fuzz finding: 300 ASCII letters, a plausible id shape but too long for a file name.
    request = getattr(trainer_pb2, f"{method}Request")(run_id="r" * 300)
    with pytest.raises(grpc.RpcError) as err:
        _call(channels, "trainer", method, "stream_out" if method == "StreamRunMetrics" else "unary", request)
    assert err.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND), err.value.details()


def test_every_service_is_healthy_and_still_searches_after_the_fuzzing(stack, channels):
    for name in STUBS:
        assert stack.processes[name].alive(), stack.processes[name].tail()
        status = health_pb2_grpc.HealthStub(channels[name]).Check(health_pb2.HealthCheckRequest(), timeout=10).status
        assert status == health_pb2.HealthCheckResponse.SERVING, name
    reply = retriever_pb2_grpc.RetrieverStub(channels["retriever"]).Search(
        retriever_pb2.SearchRequest(corpus_id=CORPUS, query="does aspirin affect health", top_k=3), timeout=60)
    assert reply.results and all(math.isfinite(r.legs.fused_score) for r in reply.results)
