"""Image captioning: grammar, shapes, learning vs. an image-blind baseline, the greedy, beam and scoring
endpoints, the COCO / Flickr8k / CSV / TFDS loaders, the bench's bare model and examples."""

import json
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from apps.captioning import Config, Pipeline, bench, data, scenes, text
from core import hub
from core.testing import (
    AppContract,
    assert_export_roundtrip,
    make_hub_module,
    shared_dataset,
    smoke_fit,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return smoke_fit(Pipeline, tmp_path_factory)


def test_grammar_paraphrases_describe_the_same_scene():
    scene = scenes.Scene("horizontal", (scenes.Group(2, "circle", "red"), scenes.Group(1, "square", "blue")))
    captions = scene.captions()
    assert len(captions) == len(set(captions)) == 8
    assert "two red circles left of a blue square" in captions
    assert "a blue square to the right of two red circles" in captions
    assert "one blue square right of two red circles" in captions
    vertical = scenes.Scene("vertical", (scenes.Group(3, "cat"), scenes.Group(1, "digit", "green")))
    assert "three cats above a green digit" in vertical.captions()
    assert "a green digit under three cats" in vertical.captions()
    assert scenes.Scene("single", (scenes.Group(1, "cup"),)).captions() == [
        "a cup", "there is a cup", "one cup", "there is one cup"]


def test_scenes_need_the_image():
    images, captions, drawn = scenes.generate(600, 32, seed=3)
    assert images.shape == (600, 32, 32, 3) and images.dtype == np.uint8
    again, _, _ = scenes.generate(5, 32, seed=3)
    np.testing.assert_array_equal(images[:5], again)
    # Counts, colours, kinds and layouts are drawn independently: no caption dominates.
    firsts = [c[0] for c in captions]
    assert max(firsts.count(c) for c in set(firsts)) / len(firsts) < 0.02
    groups = [g for s in drawn for g in s.groups]
    for attribute, values in (("count", (1, 2, 3)), ("kind", scenes.KINDS)):
        share = np.array([sum(getattr(g, attribute) == v for g in groups) for v in values]) / len(groups)
        assert share.min() > 0.5 / len(values), (attribute, share)
    assert {s.layout for s in drawn} == set(scenes.LAYOUTS)
    # Two groups are never the same kind in the same colour (the caption could not tell them apart).
    assert all(len({(g.kind, g.colour) for g in s.groups}) == len(s.groups) for s in drawn)


def test_model_output_shapes():
    p = Pipeline(Config.preset("smoke", num_scenes=100))
    model = p.build_model()
    vocabulary, length = len(p.state["vocabulary"]), p.state["max_length"]
    logits = model({"images": np.zeros((2, 48, 48, 3), np.float32), "tokens": np.ones((2, length), np.int32)})
    assert tuple(logits.shape) == (2, length, vocabulary) and logits.dtype == "float32"
    features = model.get_layer("encoder")(np.zeros((2, 48, 48, 3), np.float32))
    assert tuple(features.shape) == (2, 6 * 6, 64)  # 48 px / 2**3 strides = 6 x 6 image tokens
    assert p.state["vocabulary"][:4] == ["", "[UNK]", "[start]", "[end]"]


def test_keras_applications_backbone_and_config_errors():
    from apps.captioning.model import build_model

    config = Config.preset("smoke", backbone="mobilenet_v2", image_size=64)  # weights="": random init, offline
    model = build_model(config, vocabulary_size=20, max_length=8)
    logits = model({"images": np.zeros((1, 64, 64, 3), np.float32), "tokens": np.ones((1, 8), np.int32)})
    assert tuple(logits.shape) == (1, 8, 20)
    nets = [layer for layer in model.get_layer("encoder").layers if isinstance(layer, keras.Model)]
    assert len(nets) == 1 and not nets[0].trainable  # the frozen keras.applications network
    with pytest.raises(ValueError, match="Received: backbone='vgg'"):
        build_model(Config.preset("smoke", backbone="vgg"), 20, 8)
    with pytest.raises(ValueError, match="vocabulary_size=5"):
        build_model(Config.preset("smoke"), 5, 8)


def test_hub_feature_vector_module_is_one_frozen_image_token(tmp_path):
    module = make_hub_module(tmp_path / "module", (None, 24, 24, 3), features=12)
    p = Pipeline(Config.preset("smoke", num_scenes=100, backbone=f"hub:{module}"))
    assert p.config.image_size == 24  # image_size=0: the module's own size
    encoder = p.build_model().get_layer("encoder")
    assert tuple(encoder(np.zeros((2, 24, 24, 3), np.float32)).shape) == (2, 1, 64)
    assert not encoder.get_layer("backbone").trainable_weights


def test_published_encoder_gives_the_image_tokens(trained, tmp_path):
    p, _ = trained
    path = p.export_hub(tmp_path)["encoder"]
    images = np.random.default_rng(0).uniform(0, 255, (2, 48, 48, 3)).astype(np.float32)
    expected = p.model.get_layer("encoder")(images).numpy()
    np.testing.assert_allclose(hub.load(str(path))(images / 255.0), expected, atol=1e-4)
    assert hub.read_card(path)["output"]["shape"] == [None, 36, 64]


def test_tokenization_is_in_the_graph_and_standardizes():
    p = Pipeline(Config.preset("smoke", num_scenes=100))
    ids = p.vectorizer(text.with_markers(tf.constant(["Two RED circles, left of a cup!"]))).numpy()[0]
    words = [p.state["vocabulary"][i] for i in ids if i]
    assert words == ["[start]", "two", "red", "circles", "left", "of", "a", "cup", "[end]"]


def test_smoke_fit_beats_image_blind_baseline(trained):
    p, result = trained
    loss = result["history"]["loss"]
    assert loss[-1] < 0.7 * loss[0]
    metrics = p.evaluate()
    # The baseline is the best of the most frequent training captions repeated for every test image.
    assert metrics["bleu4"] > metrics["baseline_bleu4"] + 0.1, metrics
    assert metrics["cider_d"] > metrics["baseline_cider_d"], metrics
    assert 0.0 <= metrics["exact_match"] <= 1.0
    assert json.loads((p.workdir / "metrics.json").read_text())["test"]["bleu4"] == metrics["bleu4"]
    assert (p.workdir / "captions.png").exists()
    lines = (p.workdir / "test_captions.jsonl").read_text().splitlines()
    assert len(lines) == p.datasets().info["sizes"]["test"]


def test_endpoint_inputs_and_greedy_text(trained):
    p, _ = trained
    inputs = {name: [spec.name for spec in fn.input_signature] for name, fn in p.endpoints.items()}
    assert inputs == {"serving_default": ["image_bytes"], "serving_beam": ["image_bytes"],
                      "serving_score": ["image_bytes", "caption"]}
    captions = p.predict(p.sample_inputs(6))
    assert all(c and "[" not in c for c in captions)  # no [start], [end] or [UNK] in the text


def test_beam_is_at_least_as_likely_as_greedy(trained):
    p, _ = trained
    request = p.encode_request(p.sample_inputs(16))
    greedy = p.endpoints["serving_default"](**request)["caption"]
    beam = {k: v.numpy() for k, v in p.endpoints["serving_beam"](**request).items()}
    assert beam["captions"].shape == beam["scores"].shape == (16, p.config.beam_width)
    assert beam["scores"].dtype == np.float32
    assert np.all(np.diff(beam["scores"], axis=1) <= 1e-6)  # best first
    score = p.endpoints["serving_score"]
    greedy_score = score(**request, caption=greedy)["log_probability"].numpy()
    assert np.all(beam["scores"][:, 0] >= greedy_score - 1e-3)
    # The scores beam search reports are the log-probabilities serving_score computes for its captions.
    rescored = score(**request, caption=tf.constant(beam["captions"][:, 0]))["log_probability"]
    np.testing.assert_allclose(rescored, beam["scores"][:, 0], atol=1e-3)


def test_scoring_needs_one_caption_per_image(trained):
    p, _ = trained
    with pytest.raises(tf.errors.InvalidArgumentError, match="one caption per image"):
        p.score(p.sample_inputs(2), ["a red circle"])


def test_coco_json_csv_and_flickr_loaders_agree(tmp_path):
    root = shared_dataset("coco_mini_captions")
    by_json, kind = data.read_local(root)
    assert kind.startswith("COCO") and len(by_json) == 80
    assert all(len(c) >= 5 for c in by_json.values())
    by_file, _ = data.read_local(root / "captions_train2017.json")
    assert by_file == by_json
    by_csv, kind = data.read_local(root / "captions.csv")
    assert kind.startswith("CSV")
    assert {k: sorted(v) for k, v in by_csv.items()} == {k: sorted(v) for k, v in by_json.items()}
    # Flickr8k layout: a token file beside Flicker8k_Dataset/, captions as "<image>#<n>\t<caption>".
    (tmp_path / "Flicker8k_Dataset").mkdir()
    lines = []
    for path, captions in list(by_json.items())[:4]:
        shutil.copy(path, tmp_path / "Flicker8k_Dataset")
        lines += [f"{path.rsplit('/', 1)[-1]}#{i}\t{c}" for i, c in enumerate(captions)]
    (tmp_path / "Flickr8k.token.txt").write_text("\n".join(lines) + "\n")
    by_tokens, kind = data.read_local(tmp_path)
    assert kind.startswith("Flickr8k") and len(by_tokens) == 4
    assert sorted(c for v in by_tokens.values() for c in v) == sorted(
        c for p, v in list(by_json.items())[:4] for c in v)


def test_coco_source_splits_by_image(tmp_path):
    root = shared_dataset("coco_mini_captions")
    p = Pipeline(Config.preset("smoke", data=str(root)), workdir=tmp_path)
    splits = p.datasets()
    assert splits.info["sizes"] == {"train": 64, "val": 8, "test": 8}
    image, captions = next(iter(splits.test))
    assert image.shape == (48, 48, 3) and image.dtype == tf.uint8
    assert int(tf.reduce_sum(tf.cast(captions != "", tf.int32))) >= 5
    assert p.state["max_length"] == Config().max_length  # COCO has captions longer than the cap
    assert "airport" in p.state["vocabulary"]


def test_unknown_caption_files_are_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(FileNotFoundError, match="No captions"):
        data.read_local(tmp_path)
    (tmp_path / "bad.csv").write_text("file,text\na.jpg,a cat\n")
    with pytest.raises(ValueError, match="'path' and 'caption' columns"):
        data.read_local(tmp_path / "bad.csv")


def test_tfds_coco_captions_source(monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    rng = np.random.default_rng(0)

    def fake_split(self, split, decoders=None, **kwargs):
        # The feature layout of tfds coco_captions: an image and a variable number of captions.
        def examples():
            for i in range(3):
                image = rng.integers(0, 255, (20 + i, 30, 3), dtype=np.uint8)
                encoded = tf.io.encode_jpeg(image).numpy()
                yield {"image": encoded if decoders else image,
                       "captions": {"text": [f"a photo number {i}"] * (5 + i)}}
        image_spec = tf.TensorSpec([], tf.string) if decoders else tf.TensorSpec([None, None, 3], tf.uint8)
        return tf.data.Dataset.from_generator(examples, output_signature={
            "image": image_spec, "captions": {"text": tf.TensorSpec([None], tf.string)}})

    with tfds.testing.mock_data(as_dataset_fn=fake_split):
        splits, train_captions = data.load("tfds:coco_captions", 32, 0.1, 0.1, 0, 0)
        image, captions = next(iter(splits.test))
    assert image.shape == (32, 32, 3) and captions.shape == (data.TFDS_MAX_CAPTIONS,)
    assert len(train_captions) == 5 + 6 + 7
    assert splits.info["splits"]["train"] == "train+restval"


@pytest.mark.slow
def test_generated_scenes_reach_bleu4_half(tmp_path):
    p = Pipeline(Config.preset("demo", time_budget_s=0, epochs=24),
                 workdir=tmp_path)
    p.fit()
    metrics = p.evaluate()
    assert metrics["bleu4"] >= 0.5, metrics


@pytest.mark.slow
def test_coco_mini_trains_and_evaluates_end_to_end(tmp_path):
    root = shared_dataset("coco_mini_captions")
    p = Pipeline(Config.preset("smoke", data=str(root), epochs=3), workdir=tmp_path)
    p.fit()
    metrics = p.evaluate()
    assert 0.0 <= metrics["bleu4"] <= 1.0 and metrics["cider_d"] >= 0.0
    path = assert_export_roundtrip(p, tmp_path / "export")
    caption = p.predict_exported(path, [sorted((root / "train2017").glob("*.jpg"))[0]])[0]
    assert isinstance(caption, str) and caption


def test_bench_bare_model_is_serving_default_without_bytes_and_strings(trained):
    # The bench's overhead figure compares serving_default with this function: it must do the same
    # neural work, so its tokens spell exactly the endpoint's captions.
    p, _ = trained
    raw = p.sample_inputs(3)
    fn, images = bench.BENCH.bare_model(p, raw)
    tokens = tf.function(fn)(images)
    assert [c.decode("utf-8") for c in p.caption_decoder().detokenize(tokens).numpy()] == p.predict(raw)
    rows = bench.BENCH.examples(p, 3)
    assert [r["greedy"] for r in rows] == p.predict(raw) and all(r["reference"] for r in rows)


class TestContract(AppContract):
    """The catalogue's export contract on the trained smoke model (core.testing.AppContract)."""
