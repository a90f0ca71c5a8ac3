"""Text generation: corpus, windows, shapes, learning vs a unigram baseline, sampling, the bench's anchor."""

import collections
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from apps.text_generation import Config, Pipeline, bench, serving
from apps.text_generation import data as data_lib
from core.bench import check_bars
from core.testing import AppContract, assert_export_roundtrip, shared_dataset, smoke_fit


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return smoke_fit(Pipeline, tmp_path_factory)


def test_embedded_corpus_is_deterministic_english():
    text = data_lib.stdlib_docstrings()
    assert text == data_lib.stdlib_docstrings()
    assert len(text) > 300_000
    words = text.split()
    # Real prose: the commonest English function words are among the commonest tokens.
    top = {w for w, _ in collections.Counter(words).most_common(15)}
    assert {"the", "of", "to", "is"} <= top, top


def test_split_text_keeps_order_and_tail():
    text = "".join(f"line {i}\n" for i in range(1000))
    train, val, test = data_lib.split_text(text, 0.1, 0.1)
    assert train + val + test == text
    assert val.startswith("line ") and test.startswith("line ") and len(test) < len(train) / 5


@pytest.mark.parametrize("n,length,stride", [(50, 8, 4), (50, 8, 8), (9, 8, 3), (101, 16, 5)])
def test_scored_windows_score_every_target_once_with_context(n, length, stride):
    ids = np.arange(n) + 100
    scored = []  # (target index in ids, characters of context before it)
    for window, score_from in data_lib.scored_windows(ids, length, stride).as_numpy_iterator():
        start = window[0] - 100
        np.testing.assert_array_equal(window, ids[start:start + length + 1])
        scored += [(start + j + 1, j + 1) for j in range(score_from, length)]
    assert sorted(t for t, _ in scored) == list(range(1, n))  # each target once, none dropped
    late = [c for t, c in scored if t > length]
    assert not late or min(late) >= length - stride + 1
    with pytest.raises(ValueError, match="stride"):
        data_lib.scored_windows(ids, length, length + 1)


def test_sliding_evaluation_scores_every_test_character(trained):
    p, _ = trained
    nats, count = p.loss_on(p.datasets().test)
    assert count == len(p._ids["test"]) - 1 and 0 < nats < p.unigram_baseline()
    # By hand on a short stretch: target t is scored once, by the window whose scored part holds it.
    L, stride = p.config.seq_len, 16
    ids = p._ids["test"][:3 * L]
    model = p.require_model()
    by_hand = []
    for window, score_from in data_lib.scored_windows(ids, L, stride).as_numpy_iterator():
        logits = model(window[None, :-1], training=False)[0].numpy()
        log_p = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
            - logits.max(-1, keepdims=True)
        by_hand += [-log_p[j, window[j + 1]] for j in range(score_from, L)]
    got, n = p.loss_on(data_lib.scored_windows(ids, L, stride))
    assert n == len(ids) - 1 == len(by_hand)
    np.testing.assert_allclose(got, np.mean(by_hand), rtol=1e-4)


@pytest.mark.parametrize("arch", ["gpt", "gru"])
def test_model_output_shapes(arch):
    p = Pipeline(Config.preset("smoke", arch=arch))
    model = p.build_model()
    out = model(np.full((2, 11), 5, np.int32))
    assert tuple(out.shape) == (2, 11, p.vocab_size) and out.dtype == tf.float32
    assert p.state["vocabulary"][0] == " "  # the commonest character of English text


def test_smoke_fit_lowers_loss_and_beats_unigram(trained):
    p, result = trained
    loss = result["history"]["loss"]
    assert loss[-1] < loss[0]
    metrics = p.evaluate()
    assert metrics["nats_per_char"] < metrics["unigram_nats_per_char"] - 0.3, metrics
    np.testing.assert_allclose(metrics["bits_per_char"], metrics["nats_per_char"] / np.log(2), rtol=1e-6)
    np.testing.assert_allclose(metrics["perplexity"], np.exp(metrics["nats_per_char"]), rtol=1e-6)
    saved = json.loads((p.workdir / "metrics.json").read_text())["test"]
    assert saved["nats_per_char"] == metrics["nats_per_char"]
    assert "val_bits_per_char" in result["history"] and "val_perplexity" in result["history"]


def test_samples_written_each_epoch(trained):
    p, result = trained
    files = sorted((p.workdir / "samples").glob("epoch_*.txt"))
    assert len(files) == result["epochs_run"]
    text = files[-1].read_text(encoding="utf-8")
    assert all(f"\n{prompt}" in text for prompt in p.config.sample_prompts)


def test_endpoint_inputs(trained):
    p, _ = trained
    inputs = {name: sorted(spec.name for spec in fn.input_signature) for name, fn in p.endpoints.items()}
    settings = ["max_new_tokens", "prompt", "seed", "temperature", "top_k"]
    assert inputs == {"serving_default": settings, "generate": sorted([*settings, "top_p"]), "complete": ["prompt"]}
    # Export checks and warmup requests include a non-ASCII and an empty prompt.
    assert p.sample_inputs(3) == ["The ", "Café – ", ""]


def test_near_zero_temperature_is_deterministic(trained):
    p, _ = trained
    greedy = p.generate(["The "], temperature=0.0, max_new_tokens=30)
    for seed in (1, 2, 3):
        assert p.generate(["The "], temperature=1e-4, seed=seed, max_new_tokens=30) == greedy
    # top_k=1 and a tiny top_p keep only the most probable token, whatever the temperature.
    assert p.generate(["The "], temperature=1.5, top_k=1, seed=5, max_new_tokens=30) == greedy
    assert p.generate(["The "], temperature=1.5, top_p=1e-6, seed=5, max_new_tokens=30) == greedy


def test_seed_reproduces_and_changes_samples(trained):
    p, _ = trained
    a = p.generate(["The "], temperature=1.0, seed=1, max_new_tokens=40)
    assert p.generate(["The "], temperature=1.0, seed=1, max_new_tokens=40) == a
    assert p.generate(["The "], temperature=1.0, seed=2, max_new_tokens=40) != a
    # An answer depends on its own inputs only, not on the rest of the batch.
    batch = p.generate(["If ", "The ", "x"], temperature=1.0, seed=1, max_new_tokens=40)
    assert batch[1] == a[0]


@pytest.mark.parametrize("prompt", ["", "日本語 Café ☃ – naïve", "ROMEO:\n"])
def test_empty_and_non_ascii_prompts(trained, prompt):
    p, _ = trained
    (text,) = p.generate([prompt], max_new_tokens=17, seed=3)
    assert text.startswith(prompt)
    continuation = text[len(prompt):]
    assert len(continuation) == 17 and "[UNK]" not in continuation
    assert set(continuation) <= set(p.state["vocabulary"])


def test_per_prompt_settings(trained):
    p, _ = trained
    request = p.encode_request(["a", "b"])
    request["max_new_tokens"] = tf.constant([3, 9], tf.int32)
    texts = p.decode_response({k: v.numpy() for k, v in p.endpoints["serving_default"](**request).items()})
    assert [len(t) for t in texts] == [4, 10]


def test_bad_inputs_give_clear_errors(trained):
    p, _ = trained
    fn = p.endpoints["serving_default"]
    good = p.encode_request(["The "])
    with pytest.raises(tf.errors.InvalidArgumentError, match="Invalid prompt"):
        fn(**{**good, "prompt": tf.constant([b"\xff\xfe bad"])})
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_new_tokens must be in"):
        fn(**{**good, "max_new_tokens": tf.constant([p.config.max_generate + 1])})
    with pytest.raises(tf.errors.InvalidArgumentError, match="temperature must be in"):
        fn(**{**good, "temperature": tf.constant([-1.0])})
    with pytest.raises(tf.errors.InvalidArgumentError, match="seed must have 1 value or one per prompt"):
        fn(**{**good, "seed": tf.constant([1, 2, 3])})


@pytest.mark.parametrize("arch", ["gpt", "gru"])
def test_prompts_over_the_length_limit_are_refused(tmp_path, arch):
    p = Pipeline(Config.preset("smoke", arch=arch, max_new_tokens=2), workdir=tmp_path / "run")
    p.model = p.build_model()
    limit = serving.PROMPT_CONTEXTS * p.config.seq_len
    assert [len(t) for t in p.predict(["é" * limit])] == [limit + 2]
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=rf"Text too long in prompt: rows \[1\] hold \[{limit + 1}\] characters, more than "
                             rf"the limit of {limit} characters per prompt"):
        p.predict(["The ", "x" * (limit + 1)])


def test_gru_generates_and_exports(tmp_path):
    p = Pipeline(Config.preset("smoke", arch="gru", max_new_tokens=8), workdir=tmp_path / "run")
    p.model = p.build_model()
    layers = [layer for layer in p.model.rnns]
    assert layers and all(layer.use_cudnn is False for layer in layers)
    assert_export_roundtrip(p, tmp_path / "export")  # includes "" and a non-ASCII prompt
    assert [len(t) for t in p.predict(["", "日本"])] == [8, 10]


def test_bench_pits_our_recipe_against_the_tutorial_recipe_on_one_shape():
    """Ours and the anchor share the tutorial's GRU shape (the same steps in the same budget); only the
    recipe differs: ours AdamW with clipping, warmup and a cosine, the anchor plain Adam at a constant rate."""
    ours = bench.BENCH.config(Config)
    assert ours.data.endswith("tiny_shakespeare/input.txt")
    assert {k: getattr(ours, k) for k in bench.TUTORIAL_SHAPE} == bench.TUTORIAL_SHAPE
    p = bench.TutorialRecipe(Config.preset("smoke", **{**bench.TUTORIAL_SHAPE, "rnn_units": 32}, learning_rate=1e-3))
    model = p.build_model()
    p.compile_model(model)
    optimizer = model.optimizer
    assert type(optimizer) is keras.optimizers.Adam and optimizer.clipnorm is None
    assert float(optimizer.learning_rate) == pytest.approx(1e-3)  # a constant, not a schedule


def test_bench_anchor_trains_beside_ours_and_feeds_the_bars(trained, monkeypatch):
    p, _ = trained
    for key, value in {"rnn_units": 32, "embedding_dim": 16, "seq_len": 32, "batch_size": 16}.items():
        monkeypatch.setitem(bench.TUTORIAL_SHAPE, key, value)
    anchor_run = p.config.replace(time_budget_s=1.0, max_chars=40_000)
    anchor = bench.tutorial_anchor(bench.Pipeline(anchor_run, p.workdir))
    assert set(anchor) == {"gru_nats_per_char", "gru_val_nats_per_char", "gru_train_seconds", "gru_steps"}
    assert json.loads((p.workdir / "anchor" / "config.json").read_text())["arch"] == "gru"
    metrics = {**p.evaluate(), **{f"anchor_{k}": v for k, v in anchor.items()}}
    assert [bar["met"] is not None for bar in check_bars(bench.BENCH.bars, metrics)] == [True, True]
    rows = bench.BENCH.examples(p, 3)
    assert rows[0]["prompt"] == "The " and len(rows) == 3


def test_text_file_source_on_tiny_shakespeare(tmp_path):
    path = shared_dataset("tiny_shakespeare") / "input.txt"
    p = Pipeline(Config.preset("smoke", data=str(path)), workdir=tmp_path)
    splits = p.datasets()
    assert p.state["vocabulary"][:2] == [" ", "e"]
    chars = splits.info["chars"]
    assert sum(chars.values()) == len(path.read_text(encoding="utf-8"))
    assert chars["test"] < chars["train"] / 10
    window, score_from = next(iter(splits.test))
    assert tuple(window.shape) == (p.config.seq_len + 1,) and int(tf.reduce_min(window)) >= 2
    assert int(score_from) == 0  # the first held-out window scores all its targets
    # Folders work too: every text file under it, in sorted order.
    folder = tmp_path / "texts"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "b.md").write_text("xyz " * 500, encoding="utf-8")
    (folder / "a.txt").write_text("abc " * 500, encoding="utf-8")
    (folder / "image.png").write_bytes(b"\x89PNG not text")
    text, files = data_lib.read_text_files(folder)
    assert [f.split("/")[-1] for f in files] == ["a.txt", "b.md"] and text.startswith("abc")
    assert Pipeline(Config.preset("smoke", data=str(folder), seq_len=16)).datasets().info["files"] == 2


@pytest.mark.slow
def test_demo_preset_learns_words(tmp_path):
    p = Pipeline(Config.preset("demo"), workdir=tmp_path)
    p.fit()
    metrics = p.evaluate()
    assert metrics["nats_per_char"] < metrics["unigram_nats_per_char"] - 0.6, metrics


@pytest.mark.slow
def test_bench_shakespeare_quality_and_anchor(tmp_path):
    """The bench's bars: <= 1.55 nats/char on the held-out tail within 15 minutes, below the tutorial's
    GRU recipe trained on the same text under the same budget."""
    shared_dataset("tiny_shakespeare")
    p = Pipeline(bench.BENCH.config(Config), workdir=tmp_path)
    p.fit()
    metrics = p.evaluate()
    anchor = bench.tutorial_anchor(p)
    metrics.update({f"anchor_{k}": v for k, v in anchor.items()})
    (tmp_path / "bench_metrics.json").write_text(json.dumps(metrics, indent=2))
    assert anchor["gru_train_seconds"] > 0.9 * p.config.time_budget_s, anchor
    assert all(bar["met"] for bar in check_bars(bench.BENCH.bars, metrics)), metrics


class TestContract(AppContract):
    """The catalogue's export contract on the trained smoke model (core.testing.AppContract)."""
