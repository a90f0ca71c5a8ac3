"""The `catalogue` command line: fast quiet help, listing, config, clear errors, train -> predict."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from core import registry
from core.cli import main

CATALOGUE = [sys.executable, "-m", "core"]
ROOT = Path(__file__).resolve().parents[2]
# As a user runs it: without the log level the test session sets for itself.
USER_ENV = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}


def run_cli(args, timeout=120):
    return subprocess.run(CATALOGUE + args, capture_output=True, text=True, cwd=ROOT, env=USER_ENV,
                          timeout=timeout)


def test_help_is_fast_and_has_no_tensorflow_log_lines():
    for args in (["--help"], ["train", "--help"], ["predict", "--help"], ["list"]):
        start = time.monotonic()
        done = run_cli(args, timeout=60)
        seconds = time.monotonic() - start
        assert done.returncode == 0, done.stderr
        assert seconds < 1.0, (args, seconds)
        lines = (done.stdout + done.stderr).splitlines()
        assert not [line for line in lines if line[:5] in ("I0000", "W0000", "E0000")], lines


def test_an_unknown_app_is_answered_before_tensorflow_loads():
    for args in (["train", "colourise"], ["bench", "image_classification", "nothing"]):
        start = time.monotonic()
        done = run_cli(args, timeout=60)
        seconds = time.monotonic() - start
        assert done.returncode != 0 and seconds < 1.0, (args, seconds)
        assert done.stderr.strip().startswith(f"error: unknown app '{args[-1]}'. Valid apps: "), done.stderr
        assert "colorize" in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_commands_that_load_tensorflow_print_no_log_lines():
    done = run_cli(["config", "image_classification", "--preset", "smoke"])
    assert done.returncode == 0, done.stderr
    lines = (done.stdout + done.stderr).splitlines()
    assert not [line for line in lines if line[:5] in ("I0000", "W0000", "E0000")], lines
    assert not [line for line in lines if "absl::InitializeLog" in line], lines


def test_list_names_every_app(capsys):
    main(["list"])
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == sorted(registry.apps())


def test_config_lists_every_key_with_value_and_several_sets(capsys):
    main(["config", "translation", "--preset", "smoke", "--set", "epochs=3", "dim=32"])
    out = capsys.readouterr().out.splitlines()[1:]
    config_class = registry.apps()["translation"].config_class
    assert [line.split()[0] for line in out] == config_class.field_names()
    values = {line.split()[0]: line.split()[1] for line in out}
    assert values["epochs"] == "3" and values["dim"] == "32"


def test_unknown_app_and_key_list_the_valid_ones():
    with pytest.raises(SystemExit, match="Valid apps: .*image_classification"):
        main(["train", "no-such-app"])
    with pytest.raises(SystemExit, match="Valid keys: .*batch_size"):
        main(["train", "image-classification", "--set", "no_such_key=1"])


def test_train_evaluate_export_predict(tmp_path, capsys):
    work, out = tmp_path / "work", tmp_path / "models"
    main(["train", "image-classification", "--preset", "smoke", "--set", "epochs=2",
          "--workdir", str(work), "--export", str(out)])
    assert (work / "model.weights.h5").exists() and (out / "image_classification" / "1").exists()
    capsys.readouterr()
    main(["evaluate", "image_classification", "--workdir", str(work)])
    assert 0.0 <= json.loads(capsys.readouterr().out)["accuracy"] <= 1.0
    main(["export", "image_classification", "--workdir", str(work), "--out", str(out)])
    assert capsys.readouterr().out.strip().endswith("image_classification/2")
    image = tmp_path / "digit.png"
    image.write_bytes(tf.io.encode_png(np.zeros((8, 8, 3), np.uint8)).numpy())
    main(["predict", "image_classification", str(image), "--model", str(out / "image_classification")])
    answer = json.loads(capsys.readouterr().out)
    assert answer["input"] == str(image) and len(answer["output"]["classes"]) == 3
    text = tmp_path / "notes.txt"
    text.write_text("not a picture\nat all\n")
    with pytest.raises(SystemExit, match=r"^error: assertion failed: \[Invalid image_bytes: expected encoded JPEG"):
        main(["predict", "image_classification", str(text), "--model", str(out / "image_classification")])


def test_predict_writes_media_outputs_and_draws_boxes(tmp_path):
    from PIL import Image

    from core import predict as predict_lib

    photo = tmp_path / "scene.png"
    Image.new("RGB", (64, 48), (0, 90, 0)).save(photo)
    png = tf.io.encode_png(np.zeros((4, 4, 3), np.uint8)).numpy()
    row = {"colorized_png_bytes": np.array(png, dtype=object), "boxes": np.array([[0.1, 0.1, 0.5, 0.5]]),
           "classes": np.array([b"stop"], dtype=object), "scores": np.array([0.9]), "num_detections": np.array(1)}
    written = predict_lib.write_files(tmp_path / "out", str(photo), 0, row)
    assert sorted(Path(p).name for p in written) == ["scene_colorized.png", "scene_detections.png"]
    drawn = np.asarray(Image.open(tmp_path / "out" / "scene_detections.png"))
    assert drawn.shape[1] > 64 and (drawn[..., 0] > 200).any()  # enlarged, with a red box


def test_server_json_becomes_the_same_numpy_as_a_saved_model():
    from core import predict as predict_lib

    outputs = predict_lib._to_numpy([["a", "b"], ["c", "d"]])
    assert outputs.dtype == object and outputs[1, 0] == b"c"
    assert predict_lib._to_numpy([{"b64": "AAE="}])[0] == b"\x00\x01"
    assert predict_lib._to_numpy([[0.5, 1.0]]).dtype == np.float64


def test_graph_errors_keep_the_assertion_text_on_one_line(tmp_path):
    from core import data
    from core.cli import _one_line

    class Module(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def serve(self, image_bytes):
            return data.decode_resize_images(image_bytes, (4, 4))

    tf.saved_model.save(Module(), str(tmp_path / "model"))
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        tf.saved_model.load(str(tmp_path / "model")).serve(tf.constant([b"line one\nline two"]))
    line = _one_line(info.value)
    assert line.startswith("assertion failed: [Invalid image_bytes: expected encoded JPEG, PNG, GIF or BMP bytes; "
                           "received bytes starting with] [line one"), line
    assert "\n" not in line and "Graph execution error" not in line and "[[" not in line, line


def test_user_errors_are_one_line_and_exit_non_zero(tmp_path, capsys):
    cases = [(["train", "image_classification", "--set", "epochs=-3"], "epochs must be positive. Received: epochs=-3"),
             (["train", "image_classification", "--set", "batch_size=0"], "batch_size must be positive"),
             (["predict", "image_classification", str(tmp_path / "missing.png")], "not found")]
    # In this process: main() raises the SystemExit whose message Python prints as the process exits with 1.
    for args, message in cases:
        with pytest.raises(SystemExit) as exited:
            main(args)
        text = str(exited.value.code)
        assert text.startswith("error: ") and message in text and len(text.splitlines()) == 1, (args, text)
        assert not capsys.readouterr().err.strip(), args  # nothing else on stderr
    # As a user sees it, TensorFlow loaded: exit status 1 and the one line alone on stderr.
    done = run_cli(["predict", "image_classification", __file__, "--model", str(tmp_path / "none")])
    assert done.returncode == 1 and "No exported versions" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr
