"""`nlp-transfer serve`: an HTTP prediction server for a run, a saved model or an ONNX export.

| module | holds |
|---|---|
| `settings` | `ServerSettings`: host, port, batching and request limits (the CLI's options come from it) |
| `batching` | `MicroBatcher`: concurrent requests gathered into one model call, run in a thread |
| `inputs` | `PredictRequest` (what POST /predict accepts) and the model- and limit-dependent checks |
| `limits` | `BodySizeLimit`: the ASGI middleware that answers 413 to an oversized body |
| `app` | `create_app(model, settings)`: the FastAPI app (/predict, /health, /metadata) |
| `server` | `serve(path, settings)`: load, warm up, then run uvicorn until stopped |

    from nlp_transfer.serving import ServerSettings, serve
    serve("runs/minilm-intents-lora", ServerSettings(port=9000))

Importing this package is cheap: fastapi, uvicorn and torch load on first use of a public name.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ServerSettings", "MicroBatcher", "create_app", "build_server", "serve"]

# public name -> module that defines it; resolved on first access (PEP 562)
_LAZY = {
    "ServerSettings": ".settings",
    "MicroBatcher": ".batching",
    "create_app": ".app",
    "build_server": ".server",
    "serve": ".server",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'nlp_transfer.serving' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
