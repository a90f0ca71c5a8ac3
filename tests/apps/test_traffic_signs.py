"""Traffic-sign detection: drawings, scenes, targets, mAP, the classifier phase (and its resume), smoke fit
vs a blind baseline, the endpoints' optional inputs and SignatureDef defaults, GTSRB/GTSDB readers."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from apps.traffic_signs import Config, Pipeline, data, metrics, readers, scenes, signs
from apps.traffic_signs import model as model_lib
from apps.traffic_signs import serving as serving_lib
from apps.traffic_signs.bench import BENCH
from core.bench import check_bars
from core.testing import AppContract, shared_dataset, signature_names


class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The smoke fit, interrupted after its classifier phase and resumed (as a restarted job would be)."""
    p = Pipeline(Config.preset("smoke"), workdir=tmp_path_factory.mktemp("ts"))

    def interrupt(model):
        raise Interrupted

    p._freeze_classifier = interrupt  # the main phase's prepare
    with pytest.raises(Interrupted):
        p.fit()
    del p._freeze_classifier
    classifier = [w.numpy() for layer in model_lib.classifier_layers(p.model) for w in layer.weights]
    result = p.fit()
    return p, result, classifier


@pytest.fixture(scope="module")
def evaluated(trained):
    p, _, _ = trained
    return p.evaluate()


def png(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(array, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_every_class_has_its_own_drawing():
    arrays = [np.asarray(signs.template(c), np.float32) for c in range(signs.NUM_CLASSES)]
    assert len(signs.CLASS_NAMES) == 43 and signs.CLASS_NAMES[14] == "stop"
    for c, a in enumerate(arrays):
        assert a.shape == (signs.TEMPLATE_SIZE, signs.TEMPLATE_SIZE, 4)
        assert 0.3 < np.mean(a[..., 3] > 128) < 0.95, c  # a sign with transparent corners
    for i in range(len(arrays)):
        for j in range(i + 1, len(arrays)):
            assert np.mean(np.abs(arrays[i] - arrays[j])) > 2.0, (signs.CLASS_NAMES[i], signs.CLASS_NAMES[j])
    with pytest.raises(ValueError, match="Received: 43"):
        signs.template(43)


def test_scenes_are_deterministic_and_boxes_fit():
    spec = scenes.SceneSpec(size=96, max_signs=3, min_sign=14, max_sign=40, empty_fraction=0.0)
    photos = scenes.sample_backgrounds()
    maker = scenes.drawn_sign_maker([14, 17])
    a = scenes.generate_scenes(6, spec, maker, seed=3, photos=photos)
    b = scenes.generate_scenes(6, spec, maker, seed=3, photos=photos)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    valid = a.classes >= 0
    assert valid.sum() >= 6 and set(np.unique(a.classes[valid])) <= {0, 1}
    boxes = a.boxes[valid]
    assert np.all(boxes >= 0) and np.all(boxes <= 96)
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    assert np.all(sides >= 10) and np.all(sides <= 44), sides
    # A red sign is pasted where its box says: the box holds more red than the scene as a whole.
    image = a.images[0].astype(np.float32)
    y1, x1, y2, x2 = a.boxes[0, 0].astype(int)
    redness = image[..., 0] - image[..., 1:].mean(-1)
    assert redness[y1:y2, x1:x2].mean() > redness.mean() + 10


def test_centernet_targets_hand_case():
    boxes = tf.constant([[[16.0, 32.0, 48.0, 64.0], [0, 0, 0, 0]]])  # y1 x1 y2 x2 in a 128 px scene
    classes = tf.constant([[1, -1]])
    heat, reg = model_lib.centernet_targets(boxes, classes, image_size=128, stride=4, num_classes=3)
    assert heat.shape == (1, 32, 32, 3) and reg.shape == (1, 32, 32, 5)
    assert float(heat[0, 8, 12, 1]) == 1.0 and float(tf.reduce_max(heat[..., 0])) == 0.0
    assert int(tf.reduce_sum(tf.cast(heat >= 1.0, tf.int32))) == 1
    assert 0.0 < float(heat[0, 8, 13, 1]) < 1.0  # a Gaussian around the peak, not a single hot cell
    np.testing.assert_allclose(reg[0, 8, 12].numpy(), [0, 0, np.log(8), np.log(8), 1], atol=1e-6)
    assert float(tf.reduce_sum(reg[..., 4])) == 1.0


def test_map_matches_hand_computed_case():
    box = (10.0, 10.0, 30.0, 30.0)
    truth = [[(box, 0)], [(box, 0)]]
    perfect = [[(box, 0, 0.9)], [(box, 0, 0.8)]]
    assert metrics.coco_map(truth, perfect, 1)["map_50"] == pytest.approx(1.0)
    # Ranked: TP (0.9), FP far away (0.8), TP (0.7): precision 1 up to recall 0.5, then 2/3.
    # COCO's 101-point interpolation: (51 * 1 + 50 * 2/3) / 101.
    ranked = [[(box, 0, 0.9)], [((60.0, 60.0, 80.0, 80.0), 0, 0.8), (box, 0, 0.7)]]
    result = metrics.coco_map(truth, ranked, 1)
    assert result["map_50"] == pytest.approx((51 + 50 * 2 / 3) / 101, abs=1e-6)
    assert result["map_50_small"] == pytest.approx(result["map_50"])  # 20x20 boxes are small
    # The wrong class finds nothing.
    assert metrics.coco_map(truth, [[(box, 1, 0.9)], []], 2)["map_50"] == pytest.approx(0.0)


def test_model_output_shapes():
    p = Pipeline(Config.preset("smoke"))
    p.state = {"class_ids": [2, 12, 13, 14, 17], "class_names": [signs.CLASS_NAMES[c] for c in (2, 12, 13, 14, 17)]}
    model = p.build_model()
    out = model({"scenes": np.zeros((2, 128, 128, 3), np.float32), "crops": np.zeros((3, 32, 32, 3), np.float32)})
    assert tuple(out["heatmap"].shape) == (2, 32, 32, 5)  # stride 4: a 16 px sign spans 4x4 cells
    assert tuple(out["regression"].shape) == (2, 32, 32, 4)
    assert tuple(out["class_probs"].shape) == (3, 5)
    np.testing.assert_allclose(np.sum(out["class_probs"], -1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="multiple of 16"):
        Pipeline(Config.preset("smoke", image_size=100)).build_model()


def test_crop_views_average_the_classifier_over_crops_of_the_crop():
    p = Pipeline(Config.preset("smoke"))
    p.state = {"class_ids": [2, 12, 13, 14, 17], "class_names": [signs.CLASS_NAMES[c] for c in (2, 12, 13, 14, 17)]}
    model = p.build_model()
    crops = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    single = model_lib.classifier(model)
    np.testing.assert_allclose(model_lib.classifier(model, views=1)(crops), single(crops), atol=1e-6)
    centre = tf.image.resize(crops[:, 1:30, 1:30, :], (32, 32))  # 90% of 32 px: 29 px, centred
    corner = tf.image.resize(crops[:, :29, :29, :], (32, 32))
    expected = (single(crops) + single(centre) + single(corner)) / 3
    np.testing.assert_allclose(model_lib.classifier(model, views=3)(crops), expected, atol=1e-5)
    six = model_lib.classifier(model, views=6)(crops)
    assert tuple(six.shape) == (3, 5)
    np.testing.assert_allclose(np.sum(six, -1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="views=7"):
        model_lib.classifier(model, views=7)


def test_random_lighting_changes_training_crops_only():
    crops = np.random.default_rng(2).uniform(0, 255, (16, 32, 32, 3)).astype(np.float32)
    lighting = model_lib.RandomLighting(1.0, seed=3)
    np.testing.assert_array_equal(np.asarray(lighting(crops)), crops)  # inference: untouched
    lit = np.asarray(lighting(crops, training=True))
    assert lit.shape == crops.shape and 0.0 <= lit.min() and lit.max() <= 255.0
    change = np.abs(lit - crops).mean(axis=(1, 2, 3))
    assert np.all(change > 1.0), change  # every crop relit, each differently
    assert len(np.unique(np.round(change, 3))) == len(change)
    # The ramp: uneven light, so one half of a flat grey crop differs from the other in some crops.
    flat = np.full((16, 32, 32, 3), 128.0, np.float32)
    lit_flat = np.asarray(model_lib.RandomLighting(1.0, seed=4)(flat, training=True))
    halves = np.abs(lit_flat[:, :, :16].mean(axis=(1, 2, 3)) - lit_flat[:, :, 16:].mean(axis=(1, 2, 3)))
    assert halves.max() > 10.0, halves
    assert np.asarray(model_lib.RandomLighting(0.0)(crops, training=True)).tolist() == crops.tolist()
    restored = model_lib.RandomLighting.from_config(lighting.get_config())
    assert (restored.strength, restored.seed) == (1.0, 3)


def test_smoke_fit_beats_blind_baseline(trained, evaluated):
    p, result, _ = trained
    loss = result["history"]["loss"]
    assert loss[-1] < 0.6 * loss[0]
    m = evaluated
    # The blind baseline (training prior, never looks at pixels) scores ~0; the detector must be far above.
    assert m["map_50"] > 0.25 and m["map_50"] > m["baseline_map_50"] + 0.2, m
    assert 0.0 <= m["map"] <= m["map_50"]
    assert m["map_50_small"] > 0.1, m
    assert m["crop_accuracy"] > 0.5, m  # five classes: chance is 0.2
    assert (p.workdir / "detections.png").exists() and (p.workdir / "crop_confusion_matrix.png").exists()


def test_classifier_phase_runs_first_and_stays_frozen_after_resuming(trained):
    p, result, classifier = trained
    assert [phase.name for phase in p.phases()] == ["classifier", "train"]
    phase = result["phases"]["classifier"]  # skipped on resuming: its result and weights restored
    assert phase["classifier_epochs"] == 15 and phase["accuracy"] > 0.5
    # The joint phase trains the detector only: the pre-trained classifier stays as it was.
    assert not any(layer.trainable for layer in model_lib.classifier_layers(p.model))
    now = [w.numpy() for layer in model_lib.classifier_layers(p.model) for w in layer.weights]
    assert len(now) == len(classifier) and all(np.array_equal(a, b) for a, b in zip(now, classifier))
    assert p.model.get_layer("heatmap").trainable
    assert Pipeline(Config.preset("smoke", classifier_epochs=0)).phases()[0].name == "train"


def test_refinement_names_peaks_with_the_classifier():
    """One peak of class 0 on the heatmap; the classifier says class 2: the detection is class 2, scored
    peak x probability, with the box from the regression, and the crop it saw is the box plus 10%."""
    heatmap = np.zeros((1, 8, 8, 3), np.float32)
    heatmap[0, 2, 5, 0] = 0.8
    regression = np.zeros((1, 8, 8, 4), np.float32)
    regression[0, 2, 5] = [0.5, 0.5, np.log(2.0), np.log(2.0)]  # centre (2.5, 5.5) cells, 2 x 2 cells
    seen = []

    def fixed(crops, training=None):
        seen.append(crops)
        return tf.tile(tf.constant([[0.1, 0.2, 0.7]]), [tf.shape(crops)[0], 1])

    images = np.zeros((1, 32, 32, 3), np.float32)
    images[0, 6:14, 18:26] = 255.0  # the box in pixels: rows 6-14, columns 18-26
    boxes, per_class = serving_lib.refine_with_classifier(images, heatmap, regression, fixed, crop_size=16,
                                                          candidates=2)
    np.testing.assert_allclose(boxes[0, 0], [1.5 / 8, 4.5 / 8, 3.5 / 8, 6.5 / 8], atol=1e-6)
    np.testing.assert_allclose(per_class[0, 0], [0.08, 0.16, 0.56], atol=1e-6)
    assert float(tf.reduce_max(per_class[0, 1])) == 0.0  # the second candidate is an empty cell
    crop = seen[0][0].numpy()
    assert crop.shape == (16, 16, 3) and crop[8, 8, 0] == 255.0 and crop[0, 0, 0] < 128  # border kept
    found = serving_lib.nms(boxes, per_class, score_threshold=0.3, max_detections=5, iou_threshold=0.5)
    assert int(found[3][0]) == 1 and int(found[2][0, 0]) == 2


def test_export_signatures_and_optional_input_defaults(exported):
    p, path, _ = exported
    sigs = signature_names(path)
    assert sigs["serving_default"] == {
        "inputs": ["image_bytes", "max_detections", "score_threshold"],
        "outputs": ["boxes", "class_ids", "classes", "num_detections", "scores"]}
    assert sigs["classify_crops"] == {"inputs": ["image_bytes"], "outputs": ["class_ids", "classes", "scores"]}
    # The optional inputs are SignatureDef defaults: a Session-based server (TF Serving) may omit them.
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((path / "saved_model.pb").read_bytes())
    sig = proto.meta_graphs[0].signature_def["serving_default"]
    np.testing.assert_allclose(tf.make_ndarray(sig.defaults["score_threshold"]), [p.config.score_threshold])
    np.testing.assert_array_equal(tf.make_ndarray(sig.defaults["max_detections"]), [p.config.max_detections])
    # Every input and output has a leading batch dimension, as TF Serving's request batching needs.
    from core.serving.config import batching_problems

    assert batching_problems(proto.meta_graphs[0].signature_def) == []
    raw = p.sample_inputs(2)
    with tf.compat.v1.Session(graph=tf.Graph()) as sess:
        meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], str(path))
        sd = meta.signature_def["serving_default"]
        out = sess.run({k: v.name for k, v in sd.outputs.items()}, {sd.inputs["image_bytes"].name: raw})
    assert out["boxes"].shape == (2, p.config.max_detections, 4)
    assert out["num_detections"].tolist() == [len(a["detections"]) for a in p.predict(raw)]
    # Boxes are normalised; names and ids agree with the GTSRB table.
    for answer in p.predict(raw):
        for d in answer["detections"]:
            assert d["class"] == signs.CLASS_NAMES[d["class_id"]] and d["score"] >= p.config.score_threshold
            y1, x1, y2, x2 = d["box"]
            assert 0 <= y1 < y2 <= 1 and 0 <= x1 < x2 <= 1


def test_threshold_and_max_detections_inputs(trained):
    p, _, _ = trained
    raw = p.sample_inputs(3)
    fn = p.endpoints["serving_default"]
    low = fn(**p.encode_request(raw, score_threshold=0.05, max_detections=50))
    high = fn(**p.encode_request(raw, score_threshold=0.95, max_detections=50))
    two = fn(**p.encode_request(raw, score_threshold=0.0, max_detections=2))
    assert np.all(high["num_detections"].numpy() <= low["num_detections"].numpy())
    assert tuple(two["boxes"].shape) == (3, 2, 4) and np.all(two["num_detections"].numpy() <= 2)
    padded = low["class_ids"].numpy()[0, low["num_detections"].numpy()[0]:]
    assert np.all(padded == -1)
    # One setting per image: the second image's strict threshold leaves it fewer detections.
    per_image = fn(image_bytes=tf.constant(raw[:1] * 2), score_threshold=tf.constant([0.05, 0.95]),
                   max_detections=tf.constant([50, 50]))
    counts, scores = per_image["num_detections"].numpy(), per_image["scores"].numpy()
    assert counts[1] <= counts[0] and np.all(scores[1, counts[1]:] == 0)
    with pytest.raises(tf.errors.InvalidArgumentError, match="one value, or one per image"):
        fn(image_bytes=tf.constant(raw[:1] * 2), score_threshold=tf.constant([0.1, 0.2, 0.3]),
           max_detections=tf.constant([5]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="score_threshold must be in"):
        fn(**p.encode_request(raw, score_threshold=1.5))
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_detections must be positive"):
        fn(**p.encode_request(raw, max_detections=0))


def test_images_without_signs_give_no_detections(trained):
    p, _, _ = trained
    scenes = p.datasets().scenes["test"]
    empty = [scenes.images[i] for i in range(len(scenes)) if np.all(scenes.classes[i] < 0)][:2]
    flat = np.full((200, 150, 3), 128, np.uint8)
    answers = p.predict([png(x) for x in [flat, *empty]])
    assert all(a["detections"] == [] for a in answers), answers


def test_classify_crops_names_signs(trained):
    p, _, _ = trained
    crops = p.datasets().crops["test"]
    answers = p.classify([png(x) for x in crops.images[:20]])
    assert all(len(a["classes"]) == 3 and a["scores"] == sorted(a["scores"], reverse=True) for a in answers)
    truth = [p.state["class_ids"][y] for y in crops.labels[:20]]
    assert np.mean([a["class_ids"][0] == t for a, t in zip(answers, truth)]) > 0.5
    assert all(a["classes"][0] == signs.CLASS_NAMES[a["class_ids"][0]] for a in answers)


def test_gtsrb_subset_split_by_track_and_composed_scenes():
    root = shared_dataset("gtsrb_subset")
    records = readers.read_gtsrb(root)
    assert len(records) == 1376 and len({r.class_id for r in records}) == 43
    parts = readers.split_by_track(records, (0.75, 0.1, 0.15), seed=0)
    tracks = {k: {r.track for r in v} for k, v in parts.items()}
    assert not tracks["train"] & tracks["test"] and not tracks["train"] & tracks["val"]
    assert {r.class_id for r in parts["train"]} == set(range(43))  # every class keeps a training track
    assert len(parts["test"]) > 100
    cfg = Config.preset("smoke", data=str(root), classes="", train_scenes=6, val_scenes=2, test_scenes=2,
                        crop_size=32)
    splits = data.load(cfg, seed=0)
    assert splits.info["class_ids"] == list(range(43))
    assert len(splits.crops["test"]) == len(parts["test"]) and splits.crops["train"].images.shape[1:] == (32, 32, 3)
    scenes = splits.scenes["train"]
    assert scenes.images.shape == (6, 128, 128, 3) and scenes.objects() >= 3
    drawn = data.load(cfg.replace(scene_signs="drawn"), seed=0)
    assert len(drawn.crops["test"]) == len(parts["test"]) and drawn.scenes["test"].objects() >= 1
    assert "drawn signs" in drawn.info["source"]
    with pytest.raises(ValueError, match="scene_signs must be"):
        data.load(cfg.replace(scene_signs="photos"), seed=0)


def test_gtsrb_csv_rois_and_gtsdb_tiles(tmp_path):
    # GTSRB's own layout: Final_Training/Images/<class>/GT-<class>.csv with ROI columns.
    for class_id in (1, 14):
        folder = tmp_path / "gtsrb" / "Final_Training" / "Images" / f"{class_id:05d}"
        folder.mkdir(parents=True)
        rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
        for track in range(2):
            name = f"{track:05d}_00000.ppm"
            canvas = Image.new("RGB", (40, 44), (90, 90, 90))
            canvas.paste(signs.template(class_id).resize((30, 30)), (5, 7), signs.template(class_id).resize((30, 30)))
            canvas.save(folder / name)
            rows.append(f"{name};40;44;5;7;34;36;{class_id}")
        (folder / f"GT-{class_id:05d}.csv").write_text("\n".join(rows) + "\n")
    records = readers.read_gtsrb(tmp_path / "gtsrb")
    assert sorted(r.class_id for r in records) == [1, 1, 14, 14]
    assert records[0].roi == (5, 7, 34, 36) and records[0].track == "1/00000"
    # GTSDB: gt.txt beside full-size .ppm scenes.
    scenes_dir = tmp_path / "gtsdb"
    scenes_dir.mkdir()
    lines = []
    for i in range(3):
        scene = Image.new("RGB", (300, 200), (30, 120, 40))
        scene.paste(signs.template(14).resize((24, 24)), (200, 50), signs.template(14).resize((24, 24)))
        scene.save(scenes_dir / f"{i:05d}.ppm")
        lines.append(f"{i:05d}.ppm;200;50;223;73;14")
    (scenes_dir / "gt.txt").write_text("\n".join(lines) + "\n")
    parsed = readers.read_gtsdb(scenes_dir)
    assert len(parsed) == 3 and parsed[str(scenes_dir / "00000.ppm")] == [(200, 50, 223, 73, 14)]
    tiles = readers.gtsdb_tiles(parsed, {14: 0}, size=96, seed=0, per_scene=1)
    with_sign = [objs for _, objs in tiles if objs]
    assert len(tiles) == 6 and len(with_sign) >= 3
    for image, objects in tiles:
        assert image.shape == (96, 96, 3)
        for x1, y1, x2, y2, label in objects:
            # Whole signs keep their native 24 px; a sign cut by the tile edge keeps at least 60% of itself.
            assert label == 0 and 0 <= x1 < x2 <= 96 and 0 <= y1 < y2 <= 96
            assert 14 <= x2 - x1 <= 24 and 14 <= y2 - y1 <= 24


@pytest.mark.slow
def test_bench_gtsrb_tracks_and_drawn_scenes(tmp_path):
    """The bench's bars, one model: >= 0.95 on held-out GTSRB tracks, mAP@0.5 >= 0.7 on held-out scenes of
    drawn signs of all 43 classes, far above the blind baseline."""
    shared_dataset("gtsrb_subset")
    p = Pipeline(BENCH.config(Config), workdir=tmp_path)
    p.fit()
    metrics = p.evaluate()
    assert metrics["map_50"] > metrics["baseline_map_50"] + 0.3, metrics
    assert all(bar["met"] for bar in check_bars(BENCH.bars, metrics)), metrics


class TestContract(AppContract):
    """The catalogue's export contract on the trained smoke model (core.testing.AppContract)."""
