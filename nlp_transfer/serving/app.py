"""`create_app(model, settings)`: the FastAPI app of `nlp-transfer serve`.

    POST /predict   {"text": ...} or {"texts": [...]}  ->  {"predictions": [row, ...]}
    GET  /health    ok while the batcher runs (503 otherwise)
    GET  /metadata  labels, task, strategy, base model, version, max_length and the request limits

A prediction row is exactly what `nlp_transfer.api.predict` (and `nlp-transfer predict`) gives for
that input: the text(s), ``prediction`` (a label, a list of labels for multi-label, a number for
regression) and ``probabilities`` per label; tagging models give ``words``, ``tags`` and ``entities``.
`model` is anything `api.load_model` returns for a text model (a trained classifier or an ONNX
export): the app uses only ``labels``, ``task``, ``data_config``, ``uses_text_pair`` and
``predict_with_scores``.
"""

from __future__ import annotations

import json
import logging
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from nlp_transfer.errors import NLPTransferError
from nlp_transfer.serving.batching import BatchError, MicroBatcher, ShuttingDown
from nlp_transfer.serving.inputs import InputProblem, PredictRequest, model_inputs, uses_pairs
from nlp_transfer.serving.limits import BodySizeLimit
from nlp_transfer.serving.settings import ServerSettings

__all__ = ["create_app", "check_servable", "model_info"]

logger = logging.getLogger(__name__)


def create_app(model: Any, settings: ServerSettings | None = None, *, source: str | None = None) -> FastAPI:
    """The app serving `model` (loaded already: a broken folder fails before any server starts).

    `source` is the folder it came from, shown by /metadata. The batcher runs from the app's
    lifespan startup (before uvicorn listens) to its shutdown (after in-flight requests finished).
    """
    from nlp_transfer.api import _prediction_rows

    settings = settings or ServerSettings()
    check_servable(model, source)
    batcher = MicroBatcher(lambda inputs: _prediction_rows(model, inputs), max_batch_size=settings.max_batch_size,
                           max_wait_ms=settings.max_wait_ms)
    info = model_info(model, settings, source)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()
            logger.info("Stopped after %d batches.", batcher.batches_run)

    from nlp_transfer import __version__

    app = FastAPI(title="nlp_transfer prediction server", version=__version__, lifespan=lifespan,
                  description=f"Predictions of {source or 'a model'} ({info['task']}).")
    app.state.model, app.state.settings, app.state.batcher = model, settings, batcher
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)

    @app.exception_handler(InputProblem)
    async def _input_problem(request: Request, problem: InputProblem) -> Response:
        return _json({"detail": problem.detail()}, problem.status)

    @app.post("/predict")
    async def predict(body: PredictRequest) -> Response:
        """Predictions for one text (``text``, ``text_pair``) or several (``texts``), in order."""
        inputs = model_inputs(body, model, settings)
        try:
            rows = await batcher.submit(inputs)
        except ShuttingDown as error:
            return _json({"detail": str(error)}, 503)
        except BatchError as error:
            return _json({"detail": str(error)}, 500)
        except NLPTransferError as error:  # the library refused these inputs, in its own words
            return _json({"detail": [{"type": "rejected_by_model", "loc": ["body"], "msg": str(error)}]}, 422)
        return _json({"predictions": rows})

    @app.get("/health")
    async def health() -> Response:
        """200 while the model is loaded and the batcher runs; 503 otherwise (take it out of rotation)."""
        running = batcher.running
        return _json({"status": "ok" if running else "unavailable", "model_loaded": True, "batcher_running": running,
                      "queued_requests": batcher.queued, "batches_run": batcher.batches_run}, 200 if running else 503)

    @app.get("/metadata")
    async def metadata() -> Response:
        """What is served and the limits a request must keep to."""
        return _json(info)

    return app


def check_servable(model: Any, source: str | None = None) -> None:
    """Raise for a model the server cannot take (vision models: their inputs are images, not JSON texts)."""
    if getattr(model, "modality", "text") != "text":
        raise NLPTransferError(f"{source or 'This model'} is a {model.modality} model; `nlp-transfer serve` serves "
                               "text models (classification, regression, pairs, tagging). Predict on images with "
                               "`nlp-transfer predict MODEL --image ...`.")


def model_info(model: Any, settings: ServerSettings, source: str | None = None) -> dict[str, Any]:
    """GET /metadata: what the model is and what a request may hold (fields a model lacks are null)."""
    from nlp_transfer import __version__

    strategy = getattr(model, "strategy", None)
    data_config = getattr(model, "data_config", None)
    labels = getattr(model, "labels", None)
    return {
        "model": source, "kind": type(model).__name__, "task": model.task.name,
        "labels": [_plain(label) for label in labels] if labels is not None else None,
        "strategy": getattr(strategy, "name", strategy if isinstance(strategy, str) else None),
        "base_model": getattr(model, "base_model", None), "uses_text_pair": uses_pairs(model),
        "max_length": getattr(data_config, "max_length", None), "nlp_transfer_version": __version__,
        "limits": {"max_texts_per_request": settings.max_texts_per_request, "max_text_chars": settings.max_text_chars,
                   "max_body_bytes": settings.max_body_bytes, "max_batch_size": settings.max_batch_size,
                   "max_wait_ms": settings.max_wait_ms},
    }


def _json(body: Any, status: int = 200) -> Response:
    # json.dumps directly: the rows are plain already, and FastAPI's jsonable_encoder walks every value again
    return Response(json.dumps(body, ensure_ascii=False, default=_plain), status_code=status,
                    media_type="application/json")


def _plain(value: Any) -> Any:
    """numpy scalars (labels read from a file, scores) as Python numbers."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value if isinstance(value, (str, int, float, bool)) else str(value)
