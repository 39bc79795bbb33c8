"""How `nlp-transfer serve` listens, batches and limits requests: `ServerSettings`.

One dataclass for both ways in: `serve(path, ServerSettings(port=9000))` and the CLI's
``--port 9000`` (its options are generated from these fields). No fastapi, uvicorn or torch import
here, so ``nlp-transfer serve --help`` stays instant.

    >>> ServerSettings(max_batch_size=16).max_wait_ms
    5.0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from nlp_transfer.config.settings import _f, _validate_fields
from nlp_transfer.errors import ConfigError

__all__ = ["ServerSettings"]

LogLevel = Literal["critical", "error", "warning", "info", "debug"]


@dataclass(frozen=True)
class ServerSettings:
    """Where the server listens, how it gathers requests into batches, and what a request may hold."""

    host: str = _f("127.0.0.1", "Address to listen on; 0.0.0.0 serves every interface (put a proxy with TLS in front).")
    port: int = _f(8000, "TCP port to listen on; 0 picks a free one (the log says which).")
    max_batch_size: int = _f(32, "Texts the model runs in one call, gathered from concurrent requests. A single "
                                 "request with more texts runs alone, as one call.")
    max_wait_ms: float = _f(5.0, "How long the first queued request waits for others to share its batch; under load "
                                 "batches fill while the model runs, so this is only paid when traffic is light.")
    forward_batch_size: int | None = _f(None, "Texts per forward pass within a batch: the batch's texts are sorted by "
                                              "length and run in passes of this many, so short texts are not padded to "
                                              "the longest of the batch. Default: 8 on a CPU, the model's own "
                                              "(eval_batch_size) on a GPU.")
    max_texts_per_request: int = _f(256, "Texts one POST /predict may hold; more is a 413 naming the limit and the "
                                         "count.")
    max_text_chars: int = _f(10_000, "Characters one text may have; a longer one is a 422 naming its position "
                                     "(the model truncates to max_length tokens anyway).")
    max_body_bytes: int = _f(1_000_000, "Bytes a request body may have (declared or streamed); more is a 413.")
    threads: int | None = _f(None, "CPU threads of the model's forward pass (torch.set_num_threads); default: "
                                   "PyTorch's choice (one per core).")
    shutdown_timeout_s: float = _f(30.0, "On Ctrl+C or SIGTERM, how long in-flight requests may take to finish "
                                         "before their connections are closed.")
    access_log: bool = _f(True, "Log one line per request (uvicorn's access log); turn off at high request rates.")
    log_level: LogLevel = _f("info", "Log level of the server (uvicorn's and nlp_transfer's messages).")

    def __post_init__(self) -> None:
        _validate_fields(self)
        if self.forward_batch_size is not None and self.forward_batch_size < 1:
            raise ConfigError(f"forward_batch_size must be at least 1 (or unset for the default), "
                              f"got {self.forward_batch_size}.")
        for name in ("max_batch_size", "max_texts_per_request", "max_text_chars", "max_body_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be in 0..65535 (0: any free port), got {self.port}.")
        if self.max_wait_ms < 0:
            raise ConfigError(f"max_wait_ms must be 0 (no waiting: batch only what is already queued) or more, "
                              f"got {self.max_wait_ms}.")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be at least 1 (or unset for PyTorch's choice), got {self.threads}.")
        if self.shutdown_timeout_s < 0:
            raise ConfigError(f"shutdown_timeout_s must be 0 or more seconds, got {self.shutdown_timeout_s}.")
