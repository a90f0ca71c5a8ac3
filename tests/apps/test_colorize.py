"""Colourization: Lab maths, shapes, learning beats the grayscale baseline on held-out crops, hints colour
where they are, its endpoints keep the input's size and lightness, the bench's bare model, the folder reader."""

import base64
import io
import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from apps.colorize import Config, Pipeline, color, serving
from apps.colorize import pipeline as pipeline_lib
from apps.colorize.bench import BENCH
from apps.colorize.model import build_model
from apps.colorize.pipeline import pick_decoding
from core.bench import check_bars, one_run_bars
from core.testing import AppContract, shared_dataset, signature_names, smoke_fit


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return smoke_fit(Pipeline, tmp_path_factory)


def test_lab_conversion_matches_skimage():
    import skimage.color
    import skimage.data

    rng = np.random.default_rng(0)
    for rgb in (skimage.data.astronaut()[::4, ::4] / 255.0, rng.random((500, 3))):
        lab = color.rgb_to_lab(rgb).numpy()
        np.testing.assert_allclose(lab, skimage.color.rgb2lab(rgb), atol=1e-3)
        np.testing.assert_allclose(color.lab_to_rgb(lab).numpy(), rgb, atol=1e-4)


def test_bins_soft_targets_and_annealed_mean():
    centers = color.ab_bin_centers(10.0)
    # The sRGB gamut at a 10-unit grid: a couple of hundred colours, gray (0, 0) among them.
    assert 150 < len(centers) < 400 and np.any(np.all(centers == 0, axis=1))
    orange = tf.constant([[42.0, 61.0]])
    soft, nearest = color.soft_encode(orange, centers)
    np.testing.assert_allclose(centers[int(nearest[0])], [40.0, 60.0])
    assert int(tf.argmax(soft[0])) == int(nearest[0]) and abs(float(tf.reduce_sum(soft)) - 1) < 1e-5
    # Two equally likely colours: the mean is their average, a low temperature picks the likelier.
    logits = np.full((1, len(centers)), -30.0, np.float32)
    red, green = int(nearest[0]), int(color.soft_encode(tf.constant([[-40.0, 40.0]]), centers)[1][0])
    logits[0, red], logits[0, green] = 2.0, 1.7
    mean = color.annealed_mean(logits, centers, temperature=1.0).numpy()[0]
    sharp = color.annealed_mean(logits, centers, temperature=0.05).numpy()[0]
    assert np.linalg.norm(sharp - centers[red]) < 1.0 < np.linalg.norm(mean - centers[red])


def test_rebalancing_favours_rare_colours():
    centers = color.ab_bin_centers(10.0)
    prior = np.full(len(centers), 1e-4)
    common = int(np.argmin(np.sum(centers ** 2, axis=1)))  # gray
    prior[common] = 1.0
    weights = color.rebalancing_weights(prior, centers, mix=0.5)
    assert weights[common] < 0.5 < 1.5 < np.max(weights)
    np.testing.assert_allclose(color.rebalancing_weights(prior, centers, mix=1.0), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="Received"):
        color.rebalancing_weights(prior, centers, mix=0.0)


def test_colorfulness_of_gray_and_colour():
    gray = np.repeat(np.linspace(0, 255, 64)[None, :, None], 64, axis=0).repeat(3, axis=-1)
    stripes = np.zeros((64, 64, 3))
    stripes[:, ::2, 0] = 255
    stripes[:, 1::2, 2] = 255
    assert float(color.colorfulness(gray[None])[0]) == pytest.approx(0.0, abs=1e-9)
    assert float(color.colorfulness(stripes[None])[0]) > 59  # "quite colourful" and beyond


def test_black_and_white_photos_are_left_out_of_every_split(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(12):
        photo = rng.uniform(0, 255, size=(40, 40, 3))
        if i % 3 == 0:  # a black-and-white photo among colour ones, stored as RGB
            photo = np.repeat(photo.mean(-1, keepdims=True), 3, axis=-1)
        Image.fromarray(photo.astype(np.uint8)).save(tmp_path / f"photo{i}.png")
    splits = Pipeline(Config.preset("smoke", data=str(tmp_path), prior_images=16), tmp_path / "run").datasets()
    kept = [x for split in (splits.train, splits.val, splits.test) for x in split]
    assert len(kept) == 8 and min(float(color.colorfulness(x[None])[0]) for x in kept) > 50


def test_folder_training_photos_are_loaded_larger_and_cropped_to_the_model_size(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(20):
        Image.fromarray(rng.uniform(0, 255, size=(80, 80, 3)).astype(np.uint8)).save(tmp_path / f"photo{i}.png")
    p = Pipeline(Config.preset("smoke", data=str(tmp_path), prior_images=16), tmp_path / "run")
    splits = p.datasets()
    train, val, test = (np.stack(list(split)) for split in (splits.train, splits.val, splits.test))
    assert train.shape[1:] == (64, 64, 3) and val.shape[1:] == test.shape[1:] == (32, 32, 3)
    assert len(train) + len(val) + len(test) == 20
    inputs, targets = next(iter(p.training_data(splits)[0]))
    assert tuple(inputs.shape[1:]) == (32, 32, 4) and tuple(targets.shape[1:]) == (16, 16, 2)


def test_tfds_training_photos_are_loaded_larger_too():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=20):  # random colour images of tf_flowers' feature spec
        splits = Pipeline(Config.preset("smoke", data="tfds:tf_flowers", prior_images=16)).datasets()
        train, val = next(iter(splits.train)), next(iter(splits.val))
    assert splits.info["splits"] == ["train[:75%]", "train[75%:85%]", "train[85%:]"]
    assert tuple(train.shape) == (64, 64, 3) and tuple(val.shape) == (32, 32, 3)


def test_model_output_shapes():
    p = Pipeline(Config.preset("smoke"))
    model = p.build_model()
    out = model(np.zeros((2, 32, 32, 4), np.float32))
    assert tuple(out.shape) == (2, 16, 16, 1, len(color.ab_bin_centers(10.0)))
    # An ensemble's members start apart: the same photo gets a different first guess from each.
    two = Pipeline(Config.preset("smoke", members=2)).build_model()(np.random.default_rng(0).uniform(
        0, 100, (2, 32, 32, 4)).astype(np.float32))
    assert tuple(two.shape) == (2, 16, 16, 2, out.shape[-1]) and not np.allclose(two[..., 0, :], two[..., 1, :])
    with pytest.raises(ValueError, match="Received: image_size=30"):
        build_model(Config.preset("smoke", image_size=30), 10)


def test_ensemble_members_train_apart_resume_and_serve_as_one(tmp_path, monkeypatch):
    # The decoding is fixed: its choice on validation is not what this test is about.
    config = Config.preset("smoke", members=2, epochs=1, crops_per_photo=16, steps_per_epoch=4, temperature=0.5,
                           saturation=1.2)
    first = Pipeline(config, tmp_path / "run")
    # An interrupted run: member 0 finished, the process died during member 1.
    real_fit = pipeline_lib._Member.fit

    def dies_in_member_1(self):
        if self.index == 1:
            raise KeyboardInterrupt
        return real_fit(self)

    monkeypatch.setattr(pipeline_lib._Member, "fit", dies_in_member_1)
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    assert (tmp_path / "run" / "members" / "0" / "member.json").exists()
    trained = []

    def records(self):
        trained.append(self.index)
        return real_fit(self)

    monkeypatch.setattr(pipeline_lib._Member, "fit", records)
    p = Pipeline(config, tmp_path / "run")
    result = p.fit()
    assert trained == [1] and len(result["members"]) == 2 and not (tmp_path / "run" / "members").exists()
    assert result["epochs_run"] == 2 and result["train_seconds"] > 0 and "loss" in result["history"]
    x = np.random.default_rng(0).uniform(0, 100, (2, 32, 32, 4)).astype(np.float32)
    out = p.model(x).numpy()
    assert out.shape[3] == 2 and not np.allclose(out[..., 0, :], out[..., 1, :])
    np.testing.assert_allclose(Pipeline.from_workdir(tmp_path / "run").model(x), out, atol=1e-5)
    assert len(p.predict(p.sample_inputs(2))) == 2


def test_embedded_test_photos_are_not_in_training():
    p = Pipeline(Config.preset("smoke"))
    splits = p.datasets()
    photos = splits.info["photos"]
    assert not set(photos["test"]) & set(photos["train"]) and not set(photos["val"]) & set(photos["train"])
    first = next(iter(splits.test))
    assert first.dtype == tf.float32 and tuple(first.shape) == (32, 32, 3)
    again = next(iter(Pipeline(Config.preset("smoke")).datasets().test))
    np.testing.assert_array_equal(first, again)
    prior = np.asarray(p.state["bin_prior"])
    assert prior.shape == (p.state["num_bins"],) and abs(prior.sum() - 1) < 1e-4


def test_smoke_fit_beats_grayscale_baseline(trained):
    p, result = trained
    loss = result["history"]["loss"]
    assert loss[-1] < loss[0]
    metrics = p.evaluate()
    # The L channel alone has no colour at all; the model must restore a good part of it.
    assert metrics["gray_colorfulness_fraction"] < 0.01
    assert metrics["colorfulness_fraction"] > 0.3, metrics
    # And not by painting at random: closer to the held-out photos than their gray version.
    assert 12.0 < metrics["psnr"] < 60.0 and metrics["psnr"] > metrics["gray_psnr"], metrics
    assert 0.0 < metrics["ssim"] <= 1.0
    # The decoding temperature and saturation were chosen on the validation photos, and serve.
    choice = result["decoding_choice"]
    assert p.temperature == choice["temperature"] == p.state["temperature"] and len(choice["validation"]) > 1
    assert p.saturation == choice["saturation"] == p.state["saturation"]
    # ... and stay when another process (catalogue evaluate / export) loads the workdir and its data.
    reloaded = Pipeline.from_workdir(p.workdir)
    reloaded.datasets()
    assert (reloaded.temperature, reloaded.saturation) == (choice["temperature"], choice["saturation"])
    # True-colour hints bring the output closer still.
    assert metrics["hints5_psnr"] > metrics["psnr"], metrics
    assert (p.workdir / "colorized_test_photos.png").exists()
    # Per-photo gains: the median photo is closer than gray too; the photos colour hurt most are drawn.
    assert 0.0 <= metrics["photos_closer_than_gray"] <= 1.0
    assert metrics["psnr_over_gray_median"] > 0.0, metrics
    assert metrics["psnr_over_gray_low"] < metrics["psnr_over_gray"] < metrics["psnr_over_gray_high"], metrics
    assert (p.workdir / "colorized_test_photos_worst.png").exists()
    assert json.loads((p.workdir / "metrics.json").read_text())["test"]["psnr"] == metrics["psnr"]


def test_per_photo_gains_average_to_the_mean_gain_and_find_the_photo_colour_hurt():
    rng = np.random.default_rng(0)
    originals = tf.constant(rng.uniform(0.2, 0.8, (4, 16, 16, 3)), tf.float32)
    gray = color.gray_rgb(color.lightness(originals))
    outputs = originals + 0.02 * tf.constant(rng.uniform(-1, 1, (4, 16, 16, 3)), tf.float32)
    outputs = tf.tensor_scatter_nd_update(outputs, [[2]], [gray[2] + 0.15])  # one photo painted far off
    gains = pipeline_lib.psnr_gains(outputs, gray, originals)
    mean_gain = pipeline_lib.quality(outputs, originals)["psnr"] - pipeline_lib.quality(gray, originals)["psnr"]
    np.testing.assert_allclose(gains.mean(), mean_gain, atol=1e-4)
    assert np.argmin(gains) == 2 and gains[2] < 0 < gains[0]


def test_mean_interval_holds_the_mean_and_narrows_with_more_photos():
    rng = np.random.default_rng(1)
    few, many = rng.normal(1.0, 2.0, 40), rng.normal(1.0, 2.0, 640)
    (low, high), (low_many, high_many) = pipeline_lib.mean_interval(few), pipeline_lib.mean_interval(many)
    assert low < few.mean() < high and low_many < many.mean() < high_many
    # The width of a 90% interval of a mean: 2 x 1.645 x sd / sqrt(n), a quarter for 16 times the photos.
    assert high - low == pytest.approx(2 * 1.645 * few.std() / np.sqrt(40), rel=0.15)
    assert (high_many - low_many) == pytest.approx((high - low) / 4, rel=0.25)
    assert pipeline_lib.mean_interval(np.full(5, 0.7)) == pytest.approx((0.7, 0.7))


def test_hint_maps_place_clicks_in_the_model_cells():
    # A 100 x 200 photo (height x width) seen at 4 x 4: x=150, y=10 is cell (row 0, col 3).
    hints = tf.constant([[[150.0, 10.0, 50.0, -20.0], [160.0, 20.0, 30.0, 0.0], [-1.0, -1.0, 99.0, 99.0],
                          [0.0, 99.0, 500.0, 10.0]]])
    maps = serving.hint_maps(hints, tf.constant([[100, 200]]), 4).numpy()[0]
    np.testing.assert_allclose(maps[0, 3], [40.0, -10.0, 1.0])  # two clicks in one cell: averaged
    np.testing.assert_allclose(maps[3, 0], [128.0, 10.0, 1.0])  # a beyond Lab's range: clipped
    assert maps[..., 2].sum() == 2  # the padding row (x = -1) is no click


def test_saturation_scales_the_guessed_colours_and_keeps_the_clicked_one(trained):
    p, _ = trained
    lightness = serving.model_input(tf.constant(np.stack([x for x in p.datasets().test.take(2)])) / 255.0, 32)
    hints = tf.concat([tf.zeros([2, 32, 32, 2]), tf.zeros([2, 32, 32, 1])], -1).numpy()
    hints[:, 4, 6] = [40.0, -30.0, 1.0]  # a click in output cell (2, 3)
    plain, vivid = (serving.make_ab_predictor(p.model, p.centers, 0.5, s)(lightness, tf.constant(hints)).numpy()
                    for s in (1.0, 1.3))
    clicked = np.zeros(plain.shape[:3], bool)
    clicked[:, 2, 3] = True
    np.testing.assert_allclose(vivid[~clicked], 1.3 * plain[~clicked], rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(vivid[clicked], plain[clicked])


def test_recombine_fades_colour_towards_white_and_black_except_where_clicked():
    # Columns of lightness 50, 85, 99 and 10 (8 pixels each), one ab guess for all: chroma full, faded
    # towards white (halved, nearly none) and towards black (halved).
    levels = np.array([50.0, 85.0, 99.0, 10.0])
    lab = np.zeros([1, 8, 32, 3], np.float32)
    lab[..., 0] = np.repeat(levels, 8)
    rgb = color.lab_to_rgb(tf.constant(lab))
    ab = tf.fill([1, 4, 16, 2], 10.0)  # inside sRGB's gamut at every one of those lightnesses
    chroma = np.linalg.norm(color.rgb_to_lab(serving.recombine(rgb, ab)).numpy()[0, 4, :, 1:], axis=-1)
    fade = np.minimum((100.0 - levels) / (100.0 - serving.FADE_LIGHTNESS), levels / serving.DARK_FADE_LIGHTNESS)
    np.testing.assert_allclose(chroma[[2, 10, 21, 28]], np.hypot(10.0, 10.0) * np.minimum(fade, 1.0), atol=0.5)
    hints = np.zeros([1, 8, 32, 3], np.float32)
    hints[0, 4, 10] = [10.0, 10.0, 1.0]  # a click on the light column keeps its full colour there
    clicked = color.rgb_to_lab(serving.recombine(rgb, ab, tf.constant(hints))).numpy()[0, 4, 10, 1:]
    np.testing.assert_allclose(clicked, [10.0, 10.0], atol=0.5)


def test_decoding_choice_keeps_the_colour_floor_or_comes_closest():
    def score(psnr, colour):
        return {"psnr": psnr, "colorfulness_fraction": colour}

    scores = {(0.5, 1.0): score(20.3, 0.46), (0.5, 1.2): score(20.1, 0.55), (0.5, 1.4): score(19.9, 0.63),
              (0.2, 1.5): score(19.5, 0.70)}
    assert pick_decoding(scores, 0.6) == (0.5, 1.4)  # the best PSNR above the floor
    assert pick_decoding(scores, 0.5) == (0.5, 1.2)
    # No pair reaches the floor: the most colourful one, not the greyest with the best PSNR.
    assert pick_decoding(scores, 0.9) == (0.2, 1.5)


def test_hint_colours_the_photo_where_it_is(trained, exported):
    p, _ = trained
    photo = p.sample_inputs(1)
    width, height = Image.open(io.BytesIO(photo[0])).size
    # A saturated blue click in the top-left quarter, where the plain answer is not blue.
    hint = [[[width / 4, height / 4, 10.0, -60.0]]]

    def ab_of(answer):
        return color.rgb_to_lab(np.asarray(_decode_answer(answer), np.float32) / 255.0).numpy()[..., 1:]

    plain, hinted = ab_of(p.predict(photo)[0]), ab_of(p.predict_with_hints(photo, hint)[0])
    near = (slice(height // 4 - 2, height // 4 + 3), slice(width // 4 - 2, width // 4 + 3))
    far = (slice(3 * height // 4, None), slice(3 * width // 4, None))
    target = np.array([10.0, -60.0])
    distance = {k: np.linalg.norm(v[near] - target, axis=-1).mean() for k, v in (("plain", plain), ("hinted", hinted))}
    assert distance["hinted"] < distance["plain"] - 10.0, distance
    # The click changes its region far more than the opposite corner.
    assert np.abs(hinted[near] - plain[near]).mean() > 2 * np.abs(hinted[far] - plain[far]).mean()
    # The export answers the same, and refuses hints that do not match the images, naming them.
    loaded = exported.loaded
    request = dict(p.encode_request(photo), hints=tf.constant(hint, tf.float32))
    answer = loaded.signatures["colorize_with_hints"](**request)["colorized_png_bytes"].numpy()
    assert p.decode_response({"colorized_png_bytes": answer}) == p.predict_with_hints(photo, hint)
    with pytest.raises(tf.errors.InvalidArgumentError, match="hints"):
        loaded.signatures["colorize_with_hints"](image_bytes=request["image_bytes"], hints=tf.zeros([2, 1, 4]))


def _decode_answer(answer):
    return Image.open(io.BytesIO(base64.b64decode(answer["png_base64"])))


def test_export_keeps_input_size_and_lightness(trained, exported):
    p, _ = trained
    path = exported.path
    sigs = signature_names(path)
    assert sigs["serving_default"] == {"inputs": ["image_bytes"], "outputs": ["colorized_png_bytes"]}
    assert sigs["colorize_images"] == {"inputs": ["images"], "outputs": ["colorized_images"]}
    assert sigs["colorize_with_hints"] == {"inputs": ["hints", "image_bytes"], "outputs": ["colorized_png_bytes"]}
    # A gray JPEG of another size and aspect comes back as a colour PNG of exactly that size.
    gray = np.asarray(Image.fromarray(p.datasets().test.take(1).get_single_element().numpy().astype(np.uint8))
                      .convert("L").resize((70, 45)))
    buf = io.BytesIO()
    Image.fromarray(gray).save(buf, format="JPEG")
    answer = p.predict_exported(path, [buf.getvalue()])[0]
    image = _decode_answer(answer)
    assert image.format == "PNG" and image.mode == "RGB"
    assert image.size == (70, 45) and (answer["width"], answer["height"]) == (70, 45)
    rgb = np.asarray(image, np.float32)
    assert np.mean(np.abs(rgb[..., 0] - rgb[..., 2])) > 3.0  # colour was added
    # The lightness is the input's: recombined at full resolution, not upsampled from the model's.
    lightness = color.rgb_to_lab(rgb / 255.0).numpy()[..., 0]
    source = color.rgb_to_lab(np.repeat(np.asarray(Image.open(buf), np.float32)[..., None], 3, -1) / 255).numpy()
    assert np.mean(np.abs(lightness - source[..., 0])) < 1.5
    # One request mixing sizes (the model runs once on the batch): each answer is its own request's.
    other = p.sample_inputs(1)[0]
    both = p.predict_exported(path, [other, buf.getvalue()])
    alone = p.predict_exported(path, [other])[0]
    assert [(a["width"], a["height"]) for a in both] == [(alone["width"], alone["height"]), (70, 45)]
    # (up to one grey level: a batch of two may take other float rounding paths than a batch of one)
    for got, want in ((both[0], np.asarray(_decode_answer(alone))), (both[1], rgb)):
        assert np.abs(np.asarray(_decode_answer(got), np.float32) - want).max() <= 1.0


def test_bench_bare_model_predicts_ab_colour(trained):
    # What the bench times the endpoint against: the model and its annealed mean, ab in Lab's range.
    p, _ = trained
    predict_ab, lightness = BENCH.bare_model(p, p.sample_inputs(2))
    assert tuple(lightness.shape) == (2, 32, 32, 1)
    ab = predict_ab(lightness).numpy()
    assert ab.shape == (2, 16, 16, 2) and np.abs(ab).max() < 128


def test_folder_source_on_real_flowers(tmp_path):
    root = shared_dataset("flowers_128")
    p = Pipeline(Config.preset("smoke", data=str(root), prior_images=64), workdir=tmp_path)
    splits = p.datasets()
    # Recursive: all 600 photos of the five class folders, split per file.
    assert sum(splits.info["sizes"].values()) == 600
    image = next(iter(splits.test))
    assert tuple(image.shape) == (32, 32, 3) and float(tf.reduce_max(image)) > 100
    assert np.count_nonzero(p.state["bin_prior"]) > 20


@pytest.mark.slow
def test_flowers_quality_beats_grayscale(tmp_path):
    """The bench's quality goal for one seed, on a held-out split of real photos: make test-slow."""
    shared_dataset("flowers_128")
    p = Pipeline(BENCH.config(Config), workdir=tmp_path)
    p.fit()
    bars = check_bars(one_run_bars(BENCH.bars), p.evaluate())
    assert all(bar["met"] for bar in bars), bars


class TestContract(AppContract):
    """The catalogue's export contract on the trained smoke model (core.testing.AppContract)."""
