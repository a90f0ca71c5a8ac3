"""A bounded load test of a running server (ours or tensorflow/serving) on this machine.

    python -m core.serving.loadtest --url http://127.0.0.1:8501 --seconds 20 --concurrency 8 \
        image_classification traffic_signs

Each MODEL argument is an app name (the request is its serving_default request for 4 sample
inputs of its embedded data) or MODEL=FILE with a JSON request body. Clients keep one HTTP/1.1
connection each and send :predict requests round-robin over the models until the time or request
budget runs out. Prints requests/s, p50/p99 latency and errors per model and in total (JSON).
Only loopback addresses are accepted as targets.
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import socket
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np


def app_request_body(app: str, n: int = 4) -> bytes:
    """serving_default request of an app for `n` sample inputs, as TF Serving JSON."""
    from core import registry
    from core.serving.testing import columnar_body, row_body

    cls = registry.apps()[app]
    pipeline = cls(cls.config_class.preset("smoke"))
    inputs = pipeline.encode_request(pipeline.sample_inputs(n))
    return json.dumps(row_body(inputs) or columnar_body(inputs)).encode()


def _check_loopback(host: str) -> None:
    for info in socket.getaddrinfo(host, None):
        if not ipaddress.ip_address(info[4][0]).is_loopback:
            raise SystemExit(f"error: {host} is not a loopback address; the load test only targets this machine")


def run_load(url: str, bodies: dict[str, bytes], *, seconds: float = 10.0, concurrency: int = 8,
             max_requests: int = 1_000_000, timeout: float = 60.0) -> dict:
    """Sends :predict requests from `concurrency` threads for at most `seconds` / `max_requests`."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    _check_loopback(host)
    names = sorted(bodies)
    results: list[tuple[str, float, bool]] = []
    lock = threading.Lock()
    counter = iter(range(max_requests))
    deadline = time.monotonic() + seconds
    errors_seen: list[str] = []

    def worker(index: int):
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        local = []
        i = index
        while time.monotonic() < deadline:
            with lock:
                if next(counter, None) is None:
                    break
            name = names[i % len(names)]
            i += 1
            start = time.perf_counter()
            ok = False
            try:
                conn.request("POST", f"/v1/models/{name}:predict", body=bodies[name],
                             headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                payload = response.read()
                ok = response.status == 200
                if not ok and len(errors_seen) < 5:
                    errors_seen.append(f"{name}: HTTP {response.status} {payload[:200]!r}")
            except (OSError, http.client.HTTPException) as err:
                if len(errors_seen) < 5:
                    errors_seen.append(f"{name}: {type(err).__name__}: {err}")
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=timeout)
            local.append((name, time.perf_counter() - start, ok))
        conn.close()
        with lock:
            results.extend(local)

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started

    def summary(rows):
        latencies = np.array([r[1] for r in rows]) * 1000 if rows else np.zeros(1)
        return {"requests": len(rows), "requests_per_s": round(len(rows) / elapsed, 1),
                "p50_ms": round(float(np.percentile(latencies, 50)), 1),
                "p99_ms": round(float(np.percentile(latencies, 99)), 1),
                "errors": sum(1 for r in rows if not r[2])}

    report = {"url": url, "seconds": round(elapsed, 1), "concurrency": concurrency,
              "total": summary(results),
              "models": {n: summary([r for r in results if r[0] == n]) for n in names}}
    if errors_seen:
        report["first_errors"] = errors_seen
    return report


def markdown(report: dict) -> str:
    lines = ["| model | requests | requests/s | p50 ms | p99 ms | errors |", "|---|---:|---:|---:|---:|---:|"]
    for name, s in [*report["models"].items(), ("**all**", report["total"])]:
        lines.append(f"| {name} | {s['requests']} | {s['requests_per_s']} | {s['p50_ms']} | {s['p99_ms']} | "
                     f"{s['errors']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.serving.loadtest", description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="APP (sample request built from the app) or MODEL=BODY.json")
    parser.add_argument("--url", default="http://127.0.0.1:8501")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    parser.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    args = parser.parse_args(argv)
    bodies = {}
    for spec in args.models:
        name, _, file = spec.partition("=")
        bodies[name] = Path(file).read_bytes() if file else app_request_body(name)
    report = run_load(args.url, bodies, seconds=args.seconds, concurrency=args.concurrency,
                      max_requests=args.max_requests)
    print(json.dumps(report, indent=2))
    if args.markdown:
        print(markdown(report))
    return 1 if report["total"]["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
