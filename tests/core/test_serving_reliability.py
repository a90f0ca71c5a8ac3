"""Reliability of `catalogue serve` under attack and over time (`make test-slow`): the server runs in
its own process on smoke exports and the cases of a hostile test are replayed against it.

- every bomb and oversize request (decompression bombs in PNG, GIF frames and JPEG headers, 20,000
  images in one request, a gRPC tensor declaring 20,000 rows in 81 bytes, a JSON nesting bomb,
  binary garbage, invalid UTF-8, a body over the cap, a stalled body) is refused with a 4xx (or its
  gRPC code) within a second, and the server's RSS never grows by 200 MB;
- a good request's latency right after four maximal text-generation requests whose clients gave up
  stays under twice its idle latency (their work is cancelled);
- 50 hot reloads of an export raise RSS by less than 200 MB;
- inputs with SignatureDef defaults may be left out (REST row and columnar, gRPC);
- good requests sent throughout all of it never fail.
"""

import base64
import io
import json
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from core.serving.testing import export_smoke_app

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
APPS = ["image_classification", "text_generation", "translation", "traffic_signs"]
RSS_BUDGET_MB = 200
RELOADS = 50


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(width: int, height: int) -> bytes:
    """A valid RGB PNG of one colour: width x height pixels in well under a megabyte."""
    compressor, row = zlib.compressobj(9), b"\0" * (1 + 3 * width)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def gif_frame_bomb(width: int, height: int, frames: int) -> bytes:
    """A GIF of `frames` 1x1 frames on a width x height screen: TF decodes every frame at screen size."""
    buf = io.BytesIO()
    Image.new("P", (1, 1)).save(buf, format="GIF")
    raw = buf.getvalue()
    start = raw.index(b"\x2c\x00\x00\x00\x00\x01\x00\x01\x00")  # the image descriptor of the 1x1 frame
    head = bytearray(raw[:start])
    head[6:10] = struct.pack("<HH", width, height)
    return bytes(head) + raw[start:-1] * frames + b";"


def jpeg_header_bomb(height: int, width: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buf, format="JPEG")
    raw = bytearray(buf.getvalue())
    sof = raw.index(b"\xff\xc0")
    raw[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(raw)


def png(size=(24, 24), value=90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((*size, 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode()}


class Server:
    """`python -m core serve` in its own process, with its RSS."""

    def __init__(self, config: Path):
        self.port, self.grpc_port = _free_port(), _free_port()
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        self.log = open(config.parent / "server.log", "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "core", "serve", "--model-config", str(config), "--port", str(self.port),
             "--grpc-port", str(self.grpc_port), "--poll-seconds", "0.5", "--no-ui"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(
            grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}",
                                  options=[("grpc.max_send_message_length", 256 << 20)]))

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    def post(self, model: str, body, timeout: float = 120, headers: dict | None = None, raw: bytes | None = None):
        data = raw if raw is not None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}/v1/models/{model}:predict", data=data, method="POST",
                                         headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def available(self, model: str, version: int | None = None) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/v1/models/{model}", timeout=5) as response:
                states = {int(s["version"]): s["state"] for s in json.loads(response.read())["model_version_status"]}
        except OSError:
            return False
        return any(state == "AVAILABLE" and (version is None or v == version) for v, state in states.items())

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=60)
        self.log.close()


class RssSampler:
    """The peak RSS of a process while a block runs."""

    def __init__(self, server: Server):
        self.server, self.peak, self._stop = server, 0.0, threading.Event()

    def __enter__(self):
        self.start = self.server.rss_mb()
        self.peak = self.start
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.server.rss_mb())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.end = self.server.rss_mb()
        self.peak = max(self.peak, self.end)


class GoodTraffic:
    """Good requests to two models, all the time, in the background; every failure is kept."""

    def __init__(self, server: Server):
        self.server, self.failures, self.answered = server, [], 0
        self.pause, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        bodies = [("image_classification", {"instances": [b64(png())]}),
                  ("traffic_signs", {"instances": [{"image_bytes": b64(png((40, 40)))}]})]
        i = 0
        while not self._stop.is_set():
            if self.pause.is_set():
                time.sleep(0.05)
                continue
            model, body = bodies[i % len(bodies)]
            i += 1
            try:
                status, answer = self.server.post(model, body, timeout=120)
                if status != 200:
                    self.failures.append((model, status, answer))
                else:
                    self.answered += 1
            except Exception as err:  # noqa: BLE001 - every failure counts
                self.failures.append((model, repr(err)))
            time.sleep(0.1)

    def start(self):
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=180)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    root = tmp_path_factory.mktemp("reliability")
    models = root / "models"
    for app in APPS:
        export_smoke_app(app, models, workdir=root / "runs" / app)
    server = Server(models / "models.config")
    deadline = time.monotonic() + 600
    while not all(server.available(app) for app in APPS):
        assert server.process.poll() is None, (root / "server.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the server did not come up"
        time.sleep(0.5)
    for app in ("image_classification", "traffic_signs"):  # first requests pay for lazy set-up
        assert server.post(app, {"instances": [b64(png())]} if app == "image_classification" else
                           {"instances": [{"image_bytes": b64(png())}]})[0] == 200
    traffic = GoodTraffic(server)
    traffic.start()
    yield {"server": server, "models": models, "traffic": traffic, "root": root}
    traffic.stop()
    server.stop()


def _grpc_code(server: Server, model: str, inputs: dict, timeout: float = 30):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    for key, proto in inputs.items():
        request.inputs[key].CopyFrom(proto)
    try:
        server.stub.Predict(request, timeout=timeout)
    except grpc.RpcError as err:
        return err.code(), err.details()
    return grpc.StatusCode.OK, ""


def _stalled_body(server: Server) -> tuple[int, str]:
    body = b'{"instances": [' + b" " * 100
    head = (f"POST /v1/models/image_classification:predict HTTP/1.1\r\nHost: t\r\nX-Request-Timeout-S: 0.5\r\n"
            f"Content-Length: {len(body) + 1000}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head + body)
        answer = sock.recv(65536).decode("latin-1")
    return int(answer.split()[1]), answer


def test_bombs_and_oversize_requests_are_refused_fast_in_bounded_memory(deployment):
    server = deployment["server"]
    ic = "image_classification"
    bomb = png_bomb(16000, 16000)
    assert len(bomb) < 1 << 20
    rest_cases = [
        ("PNG 16000x16000", ic, {"instances": [b64(bomb)]}, 400, "Image too large in image_bytes: 16000x16000"),
        ("four PNGs 8000x8000", ic, {"instances": [b64(png_bomb(8000, 8000))] * 4}, 400, "8000x8000"),
        ("GIF of 300 frames on a 2000x2000 screen", ic, {"instances": [b64(gif_frame_bomb(2000, 2000, 300))]},
         400, "2000x2000 pixels in 11 frames or more"),
        ("JPEG header 60000x60000", ic, {"instances": [b64(jpeg_header_bomb(60000, 60000))]}, 400, "60000x60000"),
        ("20,000 1x1 PNGs", ic, {"instances": [b64(png((1, 1)))] * 20000}, 400, "holds 20000 examples"),
        ("binary garbage", ic, {"instances": [b64(b"\xff\xfe\x00\x81" * 64)]}, 400, "Invalid image_bytes"),
        ("invalid UTF-8 text", "translation", {"instances": [b64(b"caf\xe9 \xff")]}, 400, "Invalid text"),
        ("invalid UTF-8 prompt", "text_generation",
         {"signature_name": "complete", "instances": [b64(b"\xff prompt")]}, 400, "Invalid prompt"),
        ("JSON nesting bomb", ic, b"[" * 100_000, 400, "nested too deeply"),
        ("body over the cap", ic, b"{" + b" " * (65 << 20) + b"}", 413, "exceeds the limit"),
    ]
    bad_tensor = tensor_pb2.TensorProto(dtype=tf.string.as_datatype_enum, string_val=[png((1, 1))],
                                        tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[{"size": 20000}]))
    huge_tensor = tensor_pb2.TensorProto(dtype=tf.string.as_datatype_enum, string_val=[bomb],
                                         tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[{"size": 200}]))
    report = {}
    with RssSampler(server) as rss:
        for name, model, body, status, message in rest_cases:
            started = time.perf_counter()
            raw = body if isinstance(body, bytes) else None
            got, answer = server.post(model, None if raw else body, raw=raw, timeout=60)
            report[name] = time.perf_counter() - started
            assert (got, message in answer.get("error", "")) == (status, True), (name, got, answer)
        for name, model, inputs, code, message in [
                ("gRPC [20000] from 81 bytes", ic, {"image_bytes": bad_tensor}, grpc.StatusCode.INVALID_ARGUMENT,
                 "holds 20000 examples"),
                ("gRPC 200 copies of a bomb", ic, {"image_bytes": huge_tensor}, grpc.StatusCode.RESOURCE_EXHAUSTED,
                 "once expanded"),
                ("gRPC PNG 16000x16000", ic, {"image_bytes": tf.make_tensor_proto([bomb])},
                 grpc.StatusCode.INVALID_ARGUMENT, "Image too large")]:
            started = time.perf_counter()
            got, details = _grpc_code(server, model, inputs)
            report[name] = time.perf_counter() - started
            assert got == code and message in details, (name, got, details)
        started = time.perf_counter()
        status, answer = _stalled_body(server)
        report["stalled body (0.5 s deadline)"] = time.perf_counter() - started
        assert status == 408, answer
    print("\n" + json.dumps({k: round(v, 3) for k, v in report.items()}, indent=1))
    print(f"RSS {rss.start:.0f} MB -> peak {rss.peak:.0f} MB, end {rss.end:.0f} MB")
    slow = {k: v for k, v in report.items() if v > 1.0 and not k.startswith("stalled")}
    assert not slow, slow
    assert report["stalled body (0.5 s deadline)"] < 1.5
    assert rss.peak - rss.start < RSS_BUDGET_MB, (rss.start, rss.peak)
    assert deployment["traffic"].failures == []


def _median_latency(server: Server, n: int = 5) -> float:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        assert server.post("image_classification", {"instances": [b64(png())]})[0] == 200
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def test_departed_clients_do_not_slow_down_the_next_request(deployment):
    server, traffic = deployment["server"], deployment["traffic"]
    traffic.pause.set()
    try:
        time.sleep(0.5)
        idle = _median_latency(server)
        prompts = ["a long story " * 4] * 4
        body = {"instances": [{"prompt": p, "max_new_tokens": 2000, "temperature": 1.0, "top_k": 0, "seed": 1}
                              for p in prompts]}
        started = time.perf_counter()
        status, _ = server.post("text_generation", body, timeout=600)
        assert status == 200
        full = time.perf_counter() - started  # what each departed client's work would have cost

        def departing_rest():  # sends a maximal request, gives up after half a second
            data = json.dumps(body).encode()
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                sock.sendall(f"POST /v1/models/text_generation:predict HTTP/1.1\r\nHost: t\r\n"
                             f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
                time.sleep(0.5)

        def departing_grpc():
            inputs = {k: tf.make_tensor_proto(np.asarray(v, dtype)) for k, v, dtype in [
                ("prompt", [p.encode() for p in prompts], object), ("max_new_tokens", [2000], np.int32),
                ("temperature", [1.0], np.float32), ("top_k", [0], np.int32), ("seed", [1], np.int32)]}
            assert _grpc_code(server, "text_generation", inputs, timeout=0.5)[0] == grpc.StatusCode.DEADLINE_EXCEEDED

        clients = [threading.Thread(target=f) for f in (departing_rest, departing_rest, departing_grpc, departing_grpc)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(timeout=60)
        busy = _median_latency(server)
    finally:
        traffic.pause.clear()
    print(f"\nidle {idle * 1000:.0f} ms, after 4 departed maximal requests {busy * 1000:.0f} ms "
          f"(one maximal request takes {full:.1f} s)")
    assert full > 10 * idle, "the maximal request is too cheap to show anything"
    assert busy < 2 * idle + 0.05, (idle, busy)  # 50 ms for timer noise on a shared machine


def test_inputs_with_defaults_may_be_left_out(deployment):
    server = deployment["server"]
    image = b64(png((40, 40)))
    for body in ({"inputs": {"image_bytes": [image]}},
                 {"inputs": {"image_bytes": [image], "score_threshold": [0.5]}},  # the app README's example
                 {"instances": [{"image_bytes": image}]}):
        status, answer = server.post("traffic_signs", body)
        assert status == 200, (body.keys(), answer)
    code, details = _grpc_code(server, "traffic_signs", {"image_bytes": tf.make_tensor_proto([png((40, 40))])})
    assert code == grpc.StatusCode.OK, details


def test_hot_reloads_return_their_memory(deployment):
    server, models = deployment["server"], deployment["models"]
    source = models / "traffic_signs" / "1"

    def publish(version: int):
        tmp = models / "traffic_signs" / f".tmp-{version}"
        shutil.copytree(source, tmp)
        tmp.rename(models / "traffic_signs" / str(version))
        deadline = time.monotonic() + 180
        while not server.available("traffic_signs", version):
            assert time.monotonic() < deadline, f"version {version} did not load"
            time.sleep(0.1)

    publish(2)  # the first reload sets up what every later one reuses
    time.sleep(2)
    start = server.rss_mb()
    series = []
    for version in range(3, 3 + RELOADS):
        publish(version)
        series.append(round(server.rss_mb() - start))
    time.sleep(3)  # the last unloaded version's memory goes back on the next polls
    growth = server.rss_mb() - start
    print(f"\nRSS growth over {RELOADS} reloads (MB, after each): {series}; settled: {growth:.0f} MB")
    assert growth < RSS_BUDGET_MB, series
    assert deployment["traffic"].failures == []


def test_no_good_request_failed_throughout(deployment):
    traffic = deployment["traffic"]
    assert traffic.answered > 50
    assert traffic.failures == []


# ---------------------------------------------------------------------------------------------
# core/serving/README.md's examples, run against the server (answers from untrained smoke models
# differ in their values, so those are compared by structure; errors word for word).

README = ROOT / "core" / "serving" / "README.md"


def _readme_block(heading: str) -> str:
    section = README.read_text().split(heading, 1)[1]
    return section.split("```", 2)[1].split("\n", 1)[1]


def _curl_commands(block: str) -> list[tuple[str, object]]:
    """(command, the JSON answer shown after it or None)."""
    lines, out, i = block.splitlines(), [], 0
    while i < len(lines):
        if lines[i].startswith("curl"):
            command = lines[i]
            while command.endswith("\\"):
                i += 1
                command = command[:-1] + lines[i]
            shown = lines[i + 1] if i + 1 < len(lines) else ""
            out.append((command, json.loads(shown[2:]) if shown.startswith("# {") else None))
        i += 1
    return out


def _structure(value):
    if isinstance(value, dict):
        return {k: _structure(v) for k, v in value.items()}
    if isinstance(value, list):
        return [len(value), _structure(value[0]) if value else None]
    return "number" if isinstance(value, (int, float)) and not isinstance(value, bool) else type(value).__name__


def test_readme_examples_answer_as_shown(deployment, tmp_path, monkeypatch, capsys):
    import ast
    import contextlib

    server = deployment["server"]
    (tmp_path / "photo.png").write_bytes(png((28, 28), 200))
    street = io.BytesIO()
    Image.fromarray(np.full((64, 96, 3), 120, np.uint8)).save(street, format="JPEG")
    (tmp_path / "street.jpg").write_bytes(street.getvalue())
    commands = _curl_commands(_readme_block("### curl"))
    assert len(commands) >= 9
    for command, shown in commands:
        run = subprocess.run(["bash", "-c", command.replace("localhost:8501", f"127.0.0.1:{server.port}")],
                             cwd=tmp_path, capture_output=True, text=True, timeout=120)
        answer = json.loads(run.stdout)
        if shown is None:
            assert "error" not in answer, (command, answer)
        elif "error" in shown:
            assert answer == shown, command
        else:
            assert _structure(answer) == _structure(shown), (command, answer)

    monkeypatch.chdir(tmp_path)
    rest = _readme_block("### Python, REST")
    shown = ast.literal_eval(rest.rsplit("# ", 1)[1].strip())
    with contextlib.redirect_stdout(io.StringIO()) as out:
        exec(rest.replace("127.0.0.1:8501", f"127.0.0.1:{server.port}"), {})  # noqa: S102 - the README's own code
    assert _structure(ast.literal_eval(out.getvalue().strip())) == _structure(shown)

    grpc_code = _readme_block("### Python, gRPC")
    shown_lines = [line[2:] for line in grpc_code.splitlines() if line.startswith("# ")]
    with contextlib.redirect_stdout(io.StringIO()) as out:
        exec(grpc_code.replace("127.0.0.1:8500", f"127.0.0.1:{server.grpc_port}"), {})  # noqa: S102
    printed = out.getvalue().strip().splitlines()
    assert printed[0].split()[0] == shown_lines[0].split()[0]  # the version
    assert printed[0].count("b'") == shown_lines[0].count("b'")  # as many classes
    assert set(ast.literal_eval(printed[-1])) == set(ast.literal_eval(shown_lines[1]))
