"""Spoken translation: the transcript form, the in-graph front end against training's, streaming against
whole clips, the export against predict(), learning vs the most-frequent-sentence baseline, refused
audio and languages, and the real-data folder reader."""

import csv

import numpy as np
import pytest
import tensorflow as tf

from apps.speech_commands import synth
from apps.spoken_translation import Config, Pipeline, audio, data, lm
from apps.spoken_translation import model as model_lib
from core import export as export_lib
from core.data import decode_wav
from core.testing import AppContract, shared_dataset, smoke_fit


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    p, result = smoke_fit(Pipeline, tmp_path_factory)
    return p, result, p.evaluate()


def test_transcript_form():
    assert audio.normalize_text("Press 1, then the pound key.") == "press one then the pound key"
    assert audio.normalize_text("That agent's 'logged on'. Call-Forward!") == "that agent's logged on call forward"
    assert audio.label_ids("a b'").tolist() == [2, 0, 3, 1]
    assert audio.ALPHABET[audio.BLANK - 1] == "z" and audio.NUM_CLASSES == 29


def test_in_graph_front_end_equals_training_front_end():
    cfg = Config.preset("smoke")
    recognizer = model_lib.build_recognizer(cfg)
    clip = synth.speak("the meeting starts at nine", synth.Voice("en-us", "m3"))
    # Training: eSpeak's 22,050 Hz render resampled by scipy (data.speak_all), as float32.
    training_wave = data.speak_all(["the meeting starts at nine"], 1, 0, cfg.sample_rate, seed=5)[0]
    # Serving: the same waveform as a WAV at the model rate, decoded and padded in the graph.
    wav = audio.encode_wav(training_wave, cfg.sample_rate)
    waves, samples = audio.waveform_batch(tf.constant([wav]), cfg)
    assert int(samples[0]) == len(training_wave) and waves.shape[1] % cfg.step_samples == 0
    train_batch = next(iter(Pipeline(cfg).speech_batches(
        data.to_dataset([{"waveform": training_wave, "text": "x"}]), shuffle=False, augment=False)))[0]
    served, trained_feats = recognizer.spectrogram(waves), recognizer.spectrogram(train_batch["waveform"])
    # Only the 16-bit quantization of the WAV differs.
    assert served.shape == trained_feats.shape
    loud = trained_feats.numpy() > -6.0
    np.testing.assert_allclose(served.numpy()[loud], trained_feats.numpy()[loud], atol=0.05)
    # A WAV at eSpeak's own rate goes through the in-graph resampler: the same spectrogram as scipy's.
    native = audio.encode_wav(clip.audio.astype(np.float32) / 32768.0, clip.sample_rate)
    graph_wave = audio.load_waveform(tf.constant(native), cfg.sample_rate, cfg.max_seconds).numpy()
    from scipy.signal import resample_poly

    scipy_wave = resample_poly(clip.audio.astype(np.float32) / 32768.0, 320, 882)
    n = min(len(graph_wave), len(scipy_wave)) // cfg.step_samples * cfg.step_samples
    a, b = (recognizer.spectrogram(tf.constant(w[None, :n])).numpy() for w in (graph_wave, scipy_wave))
    speech = b > -6.0
    assert np.mean(np.abs(a[speech] - b[speech])) < 0.1


def test_chunked_recognizer_equals_whole_clip():
    cfg = Config.preset("smoke")
    recognizer = model_lib.build_recognizer(cfg)
    wave = np.random.default_rng(0).normal(0, 0.1, [2, 30 * cfg.step_samples]).astype(np.float32)
    whole = recognizer(wave).numpy()
    state = recognizer.initial_state(2)
    pieces = []
    for cut in (4, 1, 13, 12):  # chunks of uneven lengths, in steps
        logits, state = recognizer.run(wave[:, :cut * cfg.step_samples], state)
        wave = wave[:, cut * cfg.step_samples:]
        pieces.append(logits.numpy())
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), whole, atol=1e-4)


def test_fused_ctc_equals_the_dense_form_and_skips_clips_without_a_path():
    cfg = Config.preset("smoke")
    model = model_lib.SpokenTranslator(model_lib.build_recognizer(cfg), None)
    rng = np.random.default_rng(1)
    step = cfg.step_samples
    x = {"waveform": tf.zeros([3, 12 * step]), "samples": tf.constant([12 * step, 9 * step, 2 * step])}
    labels = tf.constant([[2, 3, 3, 4, -1], [5, 6, 7, 8, 9], [2, 2, 2, -1, -1]])  # the last has no CTC path
    logits = tf.constant(rng.normal(0, 2, [3, 12, audio.NUM_CLASSES]), tf.float32)
    losses = []
    for jit in (False, True):  # the fused kernel, then the dense form XLA needs
        model.jit_compile = jit
        assert model.jit_compile is jit
        with tf.GradientTape() as tape:
            tape.watch(logits)
            loss = model.compute_loss(x, labels, logits)
        losses.append((float(loss), tape.gradient(loss, logits).numpy()))
    assert np.isfinite(losses[0][0]) and losses[0][0] == pytest.approx(losses[1][0], rel=1e-4)
    np.testing.assert_allclose(losses[0][1], losses[1][1], atol=1e-5)
    assert not losses[0][1][2].any()  # the clip without a path contributes nothing


def test_lm_beam_search_without_the_lm_is_ctc_prefix_beam_search():
    # alpha = beta = 0: the same prefixes and scores as TF's own CTC beam search.
    rng = np.random.default_rng(0)
    logits = tf.constant(rng.normal(size=(3, 30, audio.NUM_CLASSES)).astype(np.float32) * 3)
    lengths = tf.constant([30, 21, 0])
    model = lm.CharNgram.fit(["please enter"], order=3, min_count=1)
    texts, scores = lm.lm_beam_search(logits, lengths, model.keys, model.log_probs, model.order, 0.0, 0.0, 16)
    decoded, log_probs = tf.nn.ctc_beam_search_decoder(tf.transpose(logits, [1, 0, 2]), lengths, beam_width=16)
    ids = tf.sparse.to_dense(decoded[0], default_value=-1).numpy()
    expected = ["".join(audio.ALPHABET[i] for i in row if i >= 0) for row in ids]
    assert [t.decode() for t in texts.numpy()] == expected and expected[2] == ""
    np.testing.assert_allclose(scores.numpy()[:2], log_probs.numpy()[:2, 0], rtol=1e-4)


def test_language_model_spells_what_the_sound_leaves_open():
    model = lm.CharNgram.fit(["please enter the pin", "please hold", "enter your pin please"], order=4, min_count=1)
    np.testing.assert_allclose(np.exp(model.log_probs).sum(axis=1), 1.0, rtol=1e-5)
    assert model.log_prob("please") > model.log_prob("plaese") + 5
    # Clear letters except one step that sounds slightly more like "a" than "e": "plaase" greedily.
    target = "pl?ase"
    logits = np.full((2 * len(target), audio.NUM_CLASSES), -5.0, np.float32)
    for i, ch in enumerate(target):
        if ch == "?":
            logits[2 * i, audio.ALPHABET.index("a")], logits[2 * i, audio.ALPHABET.index("e")] = 2.2, 2.0
        else:
            logits[2 * i, audio.ALPHABET.index(ch)] = 3.0
        logits[2 * i + 1, audio.BLANK] = 3.0
    args = (tf.constant(logits[None]), tf.constant([len(logits)]), model.keys, model.log_probs, model.order)
    assert lm.lm_beam_search(*args, 0.0, 0.0, 8)[0].numpy()[0] == b"plaase"
    assert lm.lm_beam_search(*args, 1.0, 0.0, 8)[0].numpy()[0] == b"please"


def test_smoke_beats_the_most_frequent_sentence(trained):
    _, result, metrics = trained
    assert result["phases"]["translation"]["pairs"] > 0
    assert metrics["wer"] < metrics["baseline_wer"], metrics
    assert metrics["cer"] < 0.75 * metrics["baseline_cer"], metrics
    assert metrics["cer"] < 0.6, metrics
    # The character language model (on by default) spells better than greedy CTC alone.
    assert metrics["wer"] < 0.8 * metrics["greedy_wer"] and metrics["cer"] < metrics["greedy_cer"], metrics


def test_language_model_travels_with_the_weights(trained):
    p, _, _ = trained
    reloaded = Pipeline.from_workdir(p.workdir)
    assert reloaded.model.lm_keys.shape[0] == p.state["lm_rows"] > 100
    raw = [(w, "fr") for w in p.sample_inputs(3)]
    assert reloaded.predict(raw) == p.predict(raw)


def test_streaming_transcript_equals_full_clip(trained):
    p, _, metrics = trained
    assert metrics["stream_matches_full"] == 1.0
    waves = [e["waveform"] for e in p.datasets().test.take(4).as_numpy_iterator()]
    full, _ = p.transcribe_waveforms(waves)
    assert any(full)
    for wave, text in zip(waves, full):
        for seconds in (0.5, 0.27, 1.0):
            assert p.stream_waveform(wave, seconds) == text
    # The WAV endpoint gives the same transcripts as the waveform path on the samples the WAVs hold (16-bit
    # rounding alone can flip a barely trained model's argmax, so both paths hear the same samples).
    wavs = p.sample_inputs(4)
    heard = [decode_wav(tf.constant(w))[0].numpy() for w in wavs]
    answers = p.endpoints["transcribe"](audio_wav_bytes=tf.constant(wavs))
    assert [t.decode() for t in answers["transcript"].numpy()] == p.transcribe_waveforms(heard)[0]


def test_reports_show_the_alignment_and_held_out_clips(trained):
    p, _, _ = trained
    assert (p.workdir / "ctc_alignment.png").stat().st_size > 10000
    table = (p.workdir / "samples.md").read_text()
    assert "| reference | transcript | translation (fr) | translation (es) |" in table and table.count("\n|") >= 6


@pytest.mark.slow  # the contract (TestContract below) checks export == predict() in the fast run
def test_export_answers_like_predict(exported):
    p, _, loaded = exported
    raw = [(w, lang) for w, lang in zip(p.sample_inputs(3), ("fr", "es", "fr"))]
    live = p.predict(raw)
    assert p.decode_response(export_lib.call_signature(loaded, "serving_default", p.encode_request(raw))) == live
    assert all(a["transcript"] and 0.0 < a["confidence"] <= 1.0 for a in live)
    request = p.example_requests()["transcribe_stream"]
    out = export_lib.call_signature(loaded, "transcribe_stream", request)
    assert out["state"].dtype == np.float32 and out["state"].shape == tuple(request["state"].shape)
    beam = export_lib.call_signature(loaded, "transcribe_beam", {"audio_wav_bytes": tf.constant([r[0] for r in raw])})
    assert [t.decode() for t in beam["transcript"]] != ["", "", ""]


def test_bad_audio_and_languages_are_refused_naming_the_input(trained):
    p, _, _ = trained
    fn = p.endpoints["serving_default"]
    good = p.sample_inputs(1)[0]
    cases = {
        b"RIFF not a wav at all": "audio_wav_bytes",
        audio.encode_wav(np.zeros(0, np.float32), 8000): "Empty audio_wav_bytes",
        audio.encode_wav(np.zeros(8000 * 600, np.float32), 8000): "audio_wav_bytes is too long",
    }
    for wav, message in cases.items():
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            fn(audio_wav_bytes=tf.constant([good, wav]), target_language=tf.constant(["fr", "es"]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="Unknown target_language.*de"):
        fn(audio_wav_bytes=tf.constant([good, good]), target_language=tf.constant(["fr", "de"]))
    stream = p.endpoints["transcribe_stream"]
    request = p.example_requests()["transcribe_stream"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="audio_chunk must hold a multiple"):
        stream(**{**request, "audio_chunk": request["audio_chunk"][:, :-7]})
    # The endpoint still answers after refusing.
    assert fn(audio_wav_bytes=tf.constant([good]), target_language=tf.constant(["es"]))["translation"].shape == (1,)


def test_folder_of_prompts_is_split_by_sentence(tmp_path):
    cfg = Config.preset("smoke", data=str(tmp_path), test_fraction=0.3, val_fraction=0.2)
    rows = []
    (tmp_path / "en_wav").mkdir()
    for i, (en, fr, es) in enumerate(data.SENTENCES[:10]):
        clip = synth.speak(en, synth.Voice("en", "f2"))
        (tmp_path / "en_wav" / f"p{i}.wav").write_bytes(audio.encode_wav(clip.audio / 32768.0, clip.sample_rate))
        rows.append({"id": f"p{i}", "wav": f"p{i}.wav", "en": en, "es": es, "fr": fr})
    rows.append({"id": "tone", "wav": "p0.wav", "en": "[ascending tones]", "es": "", "fr": ""})
    with open(tmp_path / "transcripts.tsv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["id", "wav", "en", "es", "fr"], delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)
    splits = data.load(cfg)
    texts = [{e["text"].decode() for e in ds.as_numpy_iterator()} for ds in (splits.train, splits.val, splits.test)]
    assert sum(len(t) for t in texts) == 10 and all(texts)
    assert not (texts[0] & texts[2]) and not (texts[0] & texts[1])
    wave = next(splits.test.as_numpy_iterator())["waveform"]
    assert wave.dtype == np.float32 and 0.3 * cfg.sample_rate < len(wave) < 5 * cfg.sample_rate


@pytest.mark.slow
def test_real_prompts_load_split_by_sentence():
    root = shared_dataset("asterisk_prompts")
    splits = data.load(Config.preset("smoke", data=str(root)))
    sizes = splits.info["sizes"]
    assert sizes["train"] > 250 and sizes["test"] > 30
    test = list(splits.test.as_numpy_iterator())
    assert sum(bool(e["fr"]) for e in test) > 10 and sum(bool(e["es"]) for e in test) > 10


def test_bench_bars_name_metrics_that_evaluate_writes(trained):
    from apps.spoken_translation import bench

    _, _, metrics = trained
    cfg = bench.BENCH.config(Config)
    assert cfg.data.endswith("asterisk_prompts") and cfg.text_pairs == "multi30k"
    names = set(metrics) | {f"anchor_{k}" for k in bench.ANCHOR_METRICS}
    for metric, _, target in bench.BENCH.bars:
        assert metric in names and (not isinstance(target, str) or target in names), (metric, target)


@pytest.mark.slow
def test_demo_preset_is_clearly_above_the_baseline(tmp_path):
    p = Pipeline(Config.preset("demo"), workdir=tmp_path)
    p.fit()
    metrics = p.evaluate()
    assert metrics["cer"] < 0.75 * metrics["baseline_cer"] and metrics["wer"] < metrics["baseline_wer"], metrics


class TestContract(AppContract):
    """The catalogue's export contract on the trained smoke model (core.testing.AppContract)."""
