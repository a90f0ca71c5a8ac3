"""The web page of `catalogue serve`, in a real headless Chromium (Debian's, driven by Playwright):
the model list, and pages built from signature metadata for smoke exports of the image classifier,
the colourizer and the text generator, and for a toy model with tensor defaults, a WAV input, a
WAV output and boxes. What each page shows is checked against what the REST API answers for the
same request. Screenshots go to reports/ui/.

One server and one browser serve the whole module. The tests skip, saying why, where Playwright or
Chromium is missing (`make browser` installs Debian's chromium; `.ci/run` does it).
"""

import base64
import io
import json
import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright for Python is not installed: pip install -e '.[dev]'")


def _chromium() -> str | None:
    for candidate in (os.environ.get("CATALOGUE_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


CHROMIUM = _chromium()
if CHROMIUM is None:
    pytest.skip("no Chromium to run the browser tests in: install Debian's chromium (`make browser`, as root; "
                "`apt-get install chromium`) or point CATALOGUE_CHROMIUM at one", allow_module_level=True)

import tensorflow as tf  # noqa: E402 - only once the tests are known to run
from PIL import Image  # noqa: E402

from core import export as export_lib  # noqa: E402
from core.serving.server import ModelServer  # noqa: E402
from core.serving.testing import export_smoke_app  # noqa: E402

IC, COLORIZE, TEXT, GAME = "image_classification", "colorize", "text_generation", "game_agent"
SHOTS = Path(__file__).resolve().parents[2] / "reports" / "ui"
TIMEOUT_MS = 60_000
BOXES = [[0.1, 0.1, 0.5, 0.4], [0.5, 0.5, 0.9, 0.95], [0.2, 0.6, 0.3, 0.7]]
BOX_SCORES, BOX_CLASSES = [0.9, 0.6, 0.2], ["cat", "dog", "bird"]


def toy_export(out):
    """A toy model whose signatures use what the page renders: tensor defaults (SignatureDef
    `defaults`), a WAV input and output, and boxes + classes + scores."""

    # Tensor default arguments become the SignatureDef's `defaults` (core.export.export_endpoints).
    default_gain, default_threshold, default_limit = tf.constant([0.5]), tf.constant([0.25]), tf.constant([3])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="audio_wav_bytes"),
                                  tf.TensorSpec([None], tf.float32, name="gain")])
    def echo(audio_wav_bytes, gain=default_gain):
        gains = tf.broadcast_to(gain, tf.shape(audio_wav_bytes))

        def one(args):
            data, g = args
            audio, rate = tf.audio.decode_wav(data, desired_channels=1)
            return tf.audio.encode_wav(audio * g, rate), rate, tf.shape(audio)[0]

        wav, rate, samples = tf.map_fn(one, (audio_wav_bytes, gains),
                                       fn_output_signature=(tf.string, tf.int32, tf.int32))
        return {"echo_wav_bytes": wav, "sample_rate": rate, "samples": samples}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes"),
                                  tf.TensorSpec([None], tf.float32, name="score_threshold"),
                                  tf.TensorSpec([None], tf.int32, name="max_detections")])
    def detect(image_bytes, score_threshold=default_threshold, max_detections=default_limit):
        n = tf.shape(image_bytes)[0]
        scores = tf.constant(BOX_SCORES)
        count = tf.minimum(tf.reduce_sum(tf.cast(scores >= score_threshold[0], tf.int32)), max_detections[0])
        valid = tf.range(len(BOX_SCORES)) < count
        tile = lambda x: tf.tile(x[None], tf.concat([[n], tf.ones([tf.rank(x)], tf.int32)], 0))  # noqa: E731
        return {"boxes": tile(tf.where(valid[:, None], tf.constant(BOXES), 0.0)),
                "scores": tile(tf.where(valid, scores, 0.0)),
                "classes": tile(tf.where(valid, tf.constant(BOX_CLASSES), "")),
                "num_detections": tf.fill([n], count)}

    return export_lib.export_endpoints(out, "toy", trackables=[],
                                       endpoints={"serving_default": echo, "detect": detect})


def write_config(path, names, models):
    body = "".join(f'  config {{ name: "{n}" base_path: "{models / n}" model_platform: "tensorflow" }}\n'
                   for n in names)
    path.write_text("model_config_list {\n" + body + "}\n")
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    started = time.monotonic()
    root = tmp_path_factory.mktemp("ui")
    models = root / "models"
    for name in (IC, COLORIZE, TEXT, GAME):
        export_smoke_app(name, models, workdir=root / "runs" / name)
    toy_export(models)
    names = [COLORIZE, GAME, IC, TEXT, "toy"]
    config = write_config(root / "models.config", names, models)
    server = ModelServer(config, port=0, grpc_port=None, poll_seconds=0).start()
    photo = root / "astronaut.png"  # a real photo (scikit-image's sample), PNG so that pixels compare exactly
    gray = root / "camera.png"
    from skimage import data as samples

    Image.fromarray(samples.astronaut()).resize((256, 256)).save(photo)
    Image.fromarray(samples.camera()).resize((192, 192)).save(gray)
    corrupt = root / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"this is not the rest of a PNG file")
    print(f"\nexports and server ready in {time.monotonic() - started:.1f}s")
    yield {"server": server, "url": server.rest_url, "root": root, "models": models, "names": names,
           "photo": photo, "gray": gray, "corrupt": corrupt}
    server.stop()


@pytest.fixture(scope="module")
def browser():
    playwright = sync_api.sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            # A fake microphone (a beeping tone) that the page may use without asking.
            args=["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"])
    except Exception as err:  # noqa: BLE001 - a browser that cannot start is a skip with its reason
        playwright.stop()
        pytest.skip(f"Chromium at {CHROMIUM} did not start: {str(err).splitlines()[0]}")
    yield chromium
    chromium.close()
    playwright.stop()


@pytest.fixture
def page(browser, served):
    """A fresh page; the test fails on any JavaScript error or any request to another origin."""
    context = browser.new_context(viewport={"width": 1100, "height": 900}, permissions=["microphone"])
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    problems = []
    page.on("pageerror", lambda err: problems.append(f"JavaScript error: {err}"))
    page.on("console", lambda msg: msg.type == "error" and not msg.text.startswith("Failed to load resource")
            and problems.append(f"console error: {msg.text}"))
    page.on("request", lambda request: request.url.startswith((served["url"], "blob:", "data:"))
            or problems.append(f"request to another origin: {request.url}"))
    yield page
    context.close()
    assert not problems, problems


def shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def api(served, model, body, signature="serving_default"):
    """What the REST API answers for a columnar request: (HTTP status, JSON)."""
    request = urllib.request.Request(f"{served['url']}/v1/models/{model}:predict",
                                     data=json.dumps({"signature_name": signature, "inputs": body}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def b64(path):
    return {"b64": base64.b64encode(Path(path).read_bytes()).decode()}


def open_model(page, served, model, signature=None):
    page.goto(f"{served['url']}/models/{model}" + (f"?signature={signature}" if signature else ""))
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator("#error").is_hidden(), page.locator("#error").inner_text()


def run(page, expect="done"):
    """Clicks Run and waits for this run's answer; returns the page's state (done or error)."""
    runs = int(page.locator("body").get_attribute("data-runs") or 0)
    page.click("#run")
    page.wait_for_selector(f"body[data-runs='{runs + 1}']")
    state = page.locator("body").get_attribute("data-state")
    assert state == expect, page.locator("#error").inner_text() if state == "error" else state
    return state


def field_defaults(served, model, signature):
    with urllib.request.urlopen(f"{served['url']}/v1/models/{model}/metadata", timeout=30) as response:
        sig = json.loads(response.read())["metadata"]["signature_def"]["signature_def"][signature]
    return sig, sig.get("defaults", {})


# ---------------------------------------------------------------------------------------------


def test_model_list_shows_every_model_available(page, served):
    page.goto(served["url"] + "/")
    page.wait_for_selector("body[data-loaded=true]")
    rows = page.locator("tr[data-model]")
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.model)") == served["names"]
    for name in served["names"]:
        row = page.locator(f"tr[data-model='{name}']")
        assert row.locator(".state").all_inner_texts() == ["AVAILABLE"], name
        assert "version 1" in row.inner_text()
        assert row.locator("a.model-link").get_attribute("href") == f"/models/{name}"
    assert "image_bytes \u2192 classes, scores" in page.locator(f"tr[data-model='{IC}'] td.signature").inner_text()
    shot(page, "index")
    page.click(f"tr[data-model='{COLORIZE}'] a.model-link")
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator("h1").inner_text() == COLORIZE


def test_image_classifier_shows_the_top_class_the_api_answers(page, served):
    open_model(page, served, IC)
    assert page.locator("#signature option").all_inner_texts() == ["serving_default", "predict_images"]
    page.set_input_files("#input-image_bytes", served["photo"])
    preview = page.locator("#preview-image_bytes img")
    preview.wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth === 256", arg=preview.element_handle())
    run(page)
    status, answer = api(served, IC, {"image_bytes": [b64(served["photo"])]})
    assert status == 200, answer
    classes, scores = answer["outputs"]["classes"][0], answer["outputs"]["scores"][0]
    labels = page.locator(".ranked .bar .label").all_inner_texts()
    shown = [float(s) for s in page.locator(".ranked .bar .score").all_inner_texts()]
    assert labels[0] == classes[0] and labels == classes[:len(labels)] and len(labels) == min(len(classes), 10)
    np.testing.assert_allclose(shown, scores[:len(shown)], atol=6e-4)
    shot(page, "image_classification")

    # The same photo as pixel values: predict_images answers as the API does on the decoded PNG.
    page.select_option("#signature", "predict_images")
    assert "signature=predict_images" in page.url
    assert page.locator("#preview-images img").count() == 0  # a new input key: no photo carried over
    page.set_input_files("#input-images", served["photo"])
    run(page)
    pixels = np.asarray(Image.open(served["photo"]).convert("RGB"), np.float32)[None].tolist()
    status, answer = api(served, IC, {"images": pixels}, signature="predict_images")
    assert status == 200, answer
    assert page.locator(".ranked .bar .label").all_inner_texts()[0] == answer["outputs"]["classes"][0][0]


def test_colorizer_shows_the_returned_image(page, served):
    open_model(page, served, COLORIZE)
    page.set_input_files("#input-image_bytes", served["gray"])
    run(page)
    image = page.locator("[data-outputs='colorized_png_bytes'] img.output-image")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    width, height, rgba = image.evaluate(
        "img => { const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;"
        " const g = c.getContext('2d'); g.drawImage(img, 0, 0);"
        " return [c.width, c.height, Array.from(g.getImageData(0, 0, c.width, c.height).data)]; }")
    status, answer = api(served, COLORIZE, {"image_bytes": [b64(served["gray"])]})
    assert status == 200, answer
    expected = Image.open(io.BytesIO(base64.b64decode(answer["outputs"][0]["b64"]))).convert("RGBA")
    assert (width, height) == expected.size == (192, 192)
    # The picture shown is the PNG the API returned, pixel for pixel.
    np.testing.assert_array_equal(np.asarray(rgba, np.uint8).reshape(height, width, 4), np.asarray(expected))
    shot(page, "colorize")


def test_text_generator_shows_the_prompt_and_its_continuation(page, served):
    open_model(page, served, TEXT)
    sig, defaults = field_defaults(served, TEXT, "serving_default")
    prompt = "The cat sat on the"
    page.fill("#input-prompt", prompt)
    sent = {"prompt": [prompt]}
    for key in sorted(sig["inputs"]):
        if key == "prompt":
            continue
        field = page.locator(f"#input-{key}")
        if key in defaults:  # the SignatureDef's default fills the field
            default = defaults[key]
            value = next(default[f][0] for f in ("float_val", "int_val", "int64_val") if default.get(f))
            assert float(field.input_value()) == pytest.approx(float(value)), key
            sent[key] = [float(field.input_value())]
        else:  # no default in the signature: the field says it is required
            assert field.input_value() == "" and "required" in field.get_attribute("placeholder")
            value = {"max_new_tokens": 24, "temperature": 0.8}.get(key, 0 if key != "top_p" else 1.0)
            field.fill(str(value))
            sent[key] = [value]
    run(page)
    status, answer = api(served, TEXT, sent)
    assert status == 200, answer
    text = answer["outputs"][0]
    assert text.startswith(prompt) and len(text) > len(prompt), text
    assert page.locator("mark.prompt").inner_text() == prompt
    # textContent: a continuation may end in spaces, which inner_text would trim
    assert page.locator(".continuation").text_content() == text[len(prompt):]
    shot(page, "text_generation")


def test_corrupt_image_shows_the_api_error_message(page, served):
    open_model(page, served, IC)
    page.set_input_files("#input-image_bytes", served["corrupt"])
    run(page, expect="error")
    status, answer = api(served, IC, {"image_bytes": [b64(served["corrupt"])]})
    assert status == 400 and answer["error"], answer
    assert page.locator("#error .message").inner_text() == answer["error"]
    assert page.locator("#error .title").inner_text() == "The model answered 400:"
    assert page.locator("#result").inner_text() == ""
    shot(page, "error")
    # The page (and the server) carry on: the next photo is answered.
    page.set_input_files("#input-image_bytes", served["photo"])
    run(page)
    assert page.locator("#error").is_hidden() and page.locator(".ranked .bar").count() > 0


def test_microphone_records_16khz_wav_and_wav_outputs_play(page, served):
    open_model(page, served, "toy")
    assert page.locator("#input-gain").input_value() == "0.5"  # SignatureDef default
    page.click("button.record")
    page.wait_for_selector("button.record.recording")
    page.wait_for_timeout(1000)
    page.click("button.record")
    page.wait_for_selector("#preview-audio_wav_bytes audio")
    run(page)
    assert page.locator("[data-outputs='sample_rate'] .value").inner_text() == "16000"
    samples = int(page.locator("[data-outputs='samples'] .value").inner_text())
    assert 8000 < samples < 5 * 16000, samples  # about the second recorded
    audio = page.locator("[data-outputs='echo_wav_bytes'] audio.output-audio")
    duration = audio.evaluate("a => new Promise(done => a.readyState >= 1 ? done(a.duration)"
                              " : a.addEventListener('loadedmetadata', () => done(a.duration)))")
    assert duration == pytest.approx(samples / 16000, abs=0.01)
    shot(page, "toy-microphone")


def test_boxes_are_drawn_over_the_input_photo(page, served):
    open_model(page, served, "toy", signature="detect")
    assert page.locator("#signature").input_value() == "detect"
    assert page.locator("#input-score_threshold").input_value() == "0.25"
    assert page.locator("#input-max_detections").input_value() == "3"
    page.set_input_files("#input-image_bytes", served["photo"])
    run(page)
    canvas = page.locator("canvas.boxes")
    assert canvas.get_attribute("data-boxes") == "2"  # 0.9 and 0.6 pass the 0.25 threshold
    assert page.locator("tr.detection").count() == 2
    assert page.locator("tr.detection").first.inner_text().split("\t")[1:3] == ["cat", "0.900"]
    # The first box's left edge is drawn in the first colour (#e6194b), over the photo.
    y1, x1, y2, _ = BOXES[0]
    pixel = canvas.evaluate(f"c => Array.from(c.getContext('2d').getImageData("
                            f"Math.round({x1} * c.width), Math.round({(y1 + y2) / 2} * c.height), 1, 1).data)")
    assert pixel[:3] == [0xE6, 0x19, 0x4B], pixel
    shot(page, "toy-boxes")
    page.fill("#input-max_detections", "1")
    run(page)
    assert canvas.get_attribute("data-boxes") == "1"


def board_cells(page):
    """The page's board as rows of X / O / . (from the cells' classes)."""
    cells = page.locator("#game-board .game-cell")
    kinds = cells.evaluate_all("cells => cells.map(c => [+c.dataset.row, +c.dataset.col, c.className])")
    rows = max(r for r, _, _ in kinds) + 1
    grid = [["."] * 7 for _ in range(rows)]
    for r, c, name in kinds:
        grid[r][c] = "X" if " first" in name else "O" if " second" in name else "."
    return grid


def api_board(served, moves):
    """The API's answer for a history, and its board without the suggested move's mark."""
    status, answer = api(served, GAME, {"moves": [moves]})
    assert status == 200, answer
    out = answer["outputs"]
    rows = [line.split() for line in out["board"][0].replace("*", ".").splitlines()[:-1]]
    return out["move"][0], out["value"][0], rows


def test_game_board_plays_against_the_model_through_the_api(page, served):
    open_model(page, served, GAME)
    page.wait_for_selector("#game-board .game-cell")
    assert board_cells(page) == [["."] * 7] * 6
    assert page.locator("#game-board .game-column").count() == 7
    # The model opens: its column is the one the API answers for the empty history.
    page.click("#game-model-first")
    page.wait_for_selector("#game-board[data-moves]:not([data-moves=''])")
    opening = api_board(served, "")[0]
    assert page.locator("#game-board").get_attribute("data-moves") == str(opening)
    # The person keeps playing column 1: every board shown is the API's board for the same history,
    # until the game ends or the column is full.
    for _ in range(21):
        moves = page.locator("#game-board").get_attribute("data-moves")
        if page.locator("#game-board").get_attribute("data-over") == "true" or moves.count("1") >= 6:
            break
        page.click("#game-board .game-column[data-column='1']")
        page.wait_for_selector(f"#game-board:not([data-moves='{moves}'])")  # set once the turn is over
        before, moves = moves, page.locator("#game-board").get_attribute("data-moves")
        assert moves.startswith(before + "1") and len(moves) <= len(before) + 2, (before, moves)
        assert board_cells(page) == api_board(served, moves)[2], moves
    moves = page.locator("#game-board").get_attribute("data-moves")
    if page.locator("#game-board").get_attribute("data-over") == "true":
        move, value, _ = api_board(served, moves)
        assert move == 0 and page.locator("#game-status").get_attribute("data-result") in ("person", "model", "draw")
    else:  # column 1 is full: the API refuses the move and the page shows its message, naming the ply
        page.click("#game-board .game-column[data-column='1']")
        page.wait_for_selector("#error:not([hidden])")
        message = page.locator("#error").inner_text()
        assert f"ply {len(moves) + 1} (1) plays a column that is full" in message, message
        assert page.locator("#game-board").get_attribute("data-moves") == moves
    shot(page, "game-agent-board")


def test_no_ui_turns_the_page_off(served, tmp_path, monkeypatch):
    with urllib.request.urlopen(served["url"] + "/", timeout=30) as response:
        assert response.headers["Content-Type"].startswith("text/html")
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    config = write_config(tmp_path / "models.config", ["toy"], served["models"])
    with ModelServer(config, port=0, grpc_port=None, poll_seconds=0, ui=False).start() as server:
        for path in ("/", "/models/toy", "/ui/models", "/ui/static/model.js"):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(server.rest_url + path, timeout=30)
            assert err.value.code == 404 and "/v1/models/NAME" in json.loads(err.value.read())["error"], path
        with urllib.request.urlopen(server.rest_url + "/v1/models/toy", timeout=30) as response:
            assert json.loads(response.read())["model_version_status"][0]["state"] == "AVAILABLE"

    from core import cli
    from core.serving import server as server_lib

    calls = []
    monkeypatch.setattr(server_lib, "main", lambda **kwargs: calls.append(kwargs))
    for argv, ui in ((["serve"], True), (["serve", "--no-ui"], False)):
        args = cli.build_parser().parse_args(argv)
        args.fn(args)
        assert calls[-1]["ui"] is ui and calls[-1]["host"] == "127.0.0.1"
