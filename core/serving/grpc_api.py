"""TF Serving's gRPC API (tensorflow.serving.PredictionService and ModelService) on grpc.aio.

Implemented: PredictionService/Predict, PredictionService/GetModelMetadata, ModelService/GetModelStatus.
Classify, Regress, MultiInference and HandleReloadConfigRequest answer UNIMPLEMENTED (the
generated base classes' behaviour). Predictions run through the shared scheduler under the client's
deadline (at most the server's --request-timeout-s); a client that cancels or whose deadline passes
has its TensorFlow work cancelled. Status and metadata are cheap lookups answered on the loop.
"""

from __future__ import annotations

import logging

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from core.serving.errors import ServingError, from_exception
from core.serving.scheduler import Scheduler
from core.serving.service import ModelService

log = logging.getLogger("core.serving")


async def _call(scheduler: Scheduler | None, context, fn, request):
    """Runs fn(request) through `scheduler` (None: on the loop, for cheap lookups) and turns failures
    into gRPC statuses."""
    try:
        if scheduler is None:
            return fn(request)
        return await scheduler.run(fn, request, deadline=scheduler.deadline(context.time_remaining()))
    except ServingError as err:
        await context.abort(err.grpc_code, err.message)
    except Exception as err:  # noqa: BLE001 - answered as a status, the server keeps serving
        failure = from_exception(err)
        if failure.code == "INTERNAL":
            log.exception("unexpected gRPC error")
        await context.abort(failure.grpc_code, failure.message)


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, service: ModelService, scheduler: Scheduler):
        self.service, self.scheduler = service, scheduler

    async def Predict(self, request, context):  # noqa: N802 - gRPC method names
        return await _call(self.scheduler, context, self.service.grpc_predict, request)

    async def GetModelMetadata(self, request, context):  # noqa: N802
        return await _call(None, context, self.service.grpc_metadata, request)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, service: ModelService):
        self.service = service

    async def GetModelStatus(self, request, context):  # noqa: N802
        return await _call(None, context, self.service.grpc_status, request)


def create_server(service: ModelService, scheduler: Scheduler, *, max_message_bytes: int) -> grpc.aio.Server:
    options = [("grpc.max_receive_message_length", max_message_bytes),
               ("grpc.max_send_message_length", max_message_bytes)]
    server = grpc.aio.server(options=options)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(service, scheduler), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(service), server)
    return server
