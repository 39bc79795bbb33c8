"""`serve(path, settings)`: load a model, check it predicts, then listen (what `nlp-transfer serve` runs).

    from nlp_transfer.serving import ServerSettings, serve
    serve("runs/minilm-intents-lora", ServerSettings(port=9000))     # blocks; Ctrl+C stops it cleanly

The order is the point: the model is loaded and one warm-up prediction is run before uvicorn binds
the port, so a missing or broken folder is an error at start (exit status 2 from the CLI), never a
500 at the first request, and the first request does not pay for lazy setup. Ctrl+C or SIGTERM is
uvicorn's graceful shutdown: no new connections, in-flight requests finish (up to
`shutdown_timeout_s`), then the app's lifespan stops the batcher.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from nlp_transfer.errors import NLPTransferError
from nlp_transfer.serving.settings import ServerSettings

__all__ = ["serve", "build_server", "load_served_model", "use_forward_batch_size", "warm_up"]

logger = logging.getLogger(__name__)

CPU_FORWARD_BATCH_SIZE = 8  # measured: see `use_forward_batch_size`
_INSTALL_HINT = "Install the server's extra: pip install 'nlp-transfer[serve]' (fastapi and uvicorn)."


def serve(model_path: str | Path, settings: ServerSettings | None = None) -> None:
    """Serve the run folder, saved model folder or ONNX export folder at `model_path` until stopped."""
    server = build_server(model_path, settings)
    try:
        server.run()
    except KeyboardInterrupt:
        # uvicorn re-raises the Ctrl+C it caught once its graceful shutdown is done: a stop asked for and
        # finished, not an error (SIGTERM it re-raises too, and the process ends by that signal, as uvicorn's own)
        if not server.started:
            raise
        logger.info("Stopped.")
        return
    if not server.started:  # uvicorn logged why (port taken, ...) and returned
        raise NLPTransferError(f"The server did not start on {server.config.host}:{server.config.port}; "
                               "see the message above (a port in use? choose another with --port).")


def build_server(model_or_path: Any, settings: ServerSettings | None = None):
    """A `uvicorn.Server` for the model (a folder, or a loaded model), ready to `run()`; nothing listens yet."""
    settings = settings or ServerSettings()
    uvicorn = _require("uvicorn")
    _require("fastapi")
    from nlp_transfer.serving.app import create_app

    if settings.threads is not None:
        import torch

        torch.set_num_threads(settings.threads)
    source = str(model_or_path) if isinstance(model_or_path, (str, Path)) else None
    model = load_served_model(model_or_path) if source is not None else model_or_path
    app = create_app(model, settings, source=source)
    use_forward_batch_size(model, settings.forward_batch_size)
    warm_up(model)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                            access_log=settings.access_log, timeout_graceful_shutdown=settings.shutdown_timeout_s,
                            lifespan="on")
    return uvicorn.Server(config)


def load_served_model(path: str | Path) -> Any:
    """The model at `path` through `api.load_model` (run, saved model or export folder); its errors stand."""
    from nlp_transfer.api import load_model
    from nlp_transfer.serving.app import check_servable

    model = load_model(path)
    check_servable(model, str(path))
    logger.info("Loaded %s: %s model, %s.", path, model.task.name,
                f"labels {list(model.labels)}" if getattr(model, "labels", None) else "no labels")
    return model


def use_forward_batch_size(model: Any, size: int | None) -> None:
    """Run each batch in length-sorted forward passes of `size` texts: a classifier's eval_batch_size,
    an ONNX export's batch_size (both sort a call's texts by length, then cut passes).

    On a CPU padding is pure waste, and 32 requests' texts have mixed lengths: MiniLM-L6 on 2 busy
    cores, SST-2 sentences in calls of 32, ran 55 sentences/s in passes of 8 against 30 in one pass
    of 32 (16: 40, 4: 37). A GPU prefers large passes, so a model on one keeps its own size unless
    one is given; an ONNX export runs on the CPU.
    """
    import dataclasses

    from nlp_transfer.config.settings import TrainingConfig

    training = getattr(model, "training", False)  # None or a TrainingConfig on a classifier
    on_torch = training is None or isinstance(training, TrainingConfig)
    if size is None:
        import torch

        if on_torch and torch.cuda.is_available():
            return
        size = CPU_FORWARD_BATCH_SIZE
    if on_torch:
        model.training = dataclasses.replace(training or TrainingConfig(), eval_batch_size=size)
    elif isinstance(getattr(model, "batch_size", None), int):
        model.batch_size = size
    else:
        return  # its own batching
    logger.info("Forward passes of up to %d texts within a batch.", size)


def warm_up(model: Any) -> None:
    """One prediction before listening: lazy setup (device, threads) happens now, and a model that
    loads but cannot predict fails at start rather than at the first request."""
    from nlp_transfer.api import _prediction_rows, _text_row
    from nlp_transfer.serving.inputs import uses_pairs

    text = "warm up"
    if model.task.name == "token_classification":
        example: Any = text
    else:
        example = _text_row(model, [text, text] if uses_pairs(model) else text, "warm-up")
    try:
        _prediction_rows(model, [example])
    except NLPTransferError:
        raise
    except Exception as error:
        raise NLPTransferError(f"The model loaded but failed on a warm-up prediction: {type(error).__name__}: "
                               f"{error}") from error


def _require(name: str):
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise NLPTransferError(f"`nlp-transfer serve` needs {name}, which is not installed. {_INSTALL_HINT}") from error

