"""gRPC adapter of `feedrank.v1.Feedback` over FeedbackCore (no logic of its own)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from services.feedback.core import FeedbackCore
from services.proto.feedrank.v1 import feedback_pb2, feedback_pb2_grpc


class FeedbackServicer(feedback_pb2_grpc.FeedbackServicer):
    def __init__(self, core: FeedbackCore):
        self.core = core

    async def Record(self, request: feedback_pb2.RecordRequest, context: grpc.aio.ServicerContext):
        result = await self.core.record(request.events, context.time_remaining())
        return feedback_pb2.RecordResponse(accepted=result.accepted, spooled=result.spooled)

    async def RecordStream(
        self, request_iterator: AsyncIterator[feedback_pb2.FeedbackEvent], context: grpc.aio.ServicerContext
    ):
        result = await self.core.record_stream(request_iterator, context.time_remaining)
        return feedback_pb2.RecordResponse(accepted=result.accepted, spooled=result.spooled)

    async def GetInfo(self, request: feedback_pb2.GetFeedbackInfoRequest, context: grpc.aio.ServicerContext):
        return self.core.info()
