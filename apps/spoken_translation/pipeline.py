"""Spoken translation pipeline: speech -> causal CTC recognizer -> transcript -> Transformer -> French / Spanish.

Two phases: the translation model (apps.translation's Translator, tokenizer and in-graph decoding)
learns the English -> fr/es pairs of the data, one model for both languages with a target tag on the
source side; then the recognizer learns CTC on the speech. Scores: word and character error rates
(jiwer) against an always-the-most-frequent-training-sentence baseline, chrF of the spoken
translation against translating the gold transcript with the same model (the cascade's ceiling),
and the real-time factor of the full-clip and streaming paths.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from apps.spoken_translation import audio, data, serving
from apps.spoken_translation import lm as lm_lib
from apps.spoken_translation import model as model_lib
from apps.spoken_translation.config import Config
from apps.translation.pipeline import corpus_scores, smoothed_loss, token_accuracy
from apps.translation.serving import make_translate
from apps.translation.tokenizer import END, START, Tokenizer, decode_strings, learn_vocabulary, segment_counts
from core import training
from core.data import read_bytes
from core.pipeline import Phase
from core.pipeline import Pipeline as BasePipeline
from core.schedules import WarmupInverseSqrt

LANGUAGES = data.LANGUAGES


def char_table() -> np.ndarray:
    """ASCII code -> CTC class (-1 for characters outside ALPHABET)."""
    table = np.full(128, -1, np.int32)
    for i, ch in enumerate(audio.ALPHABET):
        table[ord(ch)] = i
    return table


class Pipeline(BasePipeline):
    """Hears English speech, writes what was said and translates it into French or Spanish.

    Example:
        >>> p = Pipeline(Config.preset("smoke"), workdir="runs/st")
        >>> p.fit(); p.evaluate()["wer"]
        >>> p.predict([("hello.wav", "fr")])  # [{"transcript": ..., "translation": ..., "confidence": ...}]
    """

    name = "spoken_translation"
    config_class = Config
    monitor = "val_loss"
    monitor_mode = "min"

    def __init__(self, config=None, workdir=None):
        super().__init__(config, workdir)
        self._tokenizers: tuple[Tokenizer, Tokenizer] | None = None
        self._transcribe_fn = self._translate_fn = None
        self.pairs: dict[str, list[tuple[str, str]]] = {}
        self.samples: list[dict] = []
        self.train_transcripts: list[str] = []  # filled by load_data
        self.language_model: lm_lib.CharNgram | None = None

    # Data -------------------------------------------------------------------------------------

    def speech_splits(self):
        """The speech splits of `config.data` (the bench's synthetic-only anchor swaps in its own)."""
        return data.load(self.config)

    def load_data(self):
        cfg = self.config
        splits = self.speech_splits()
        extra = data.extra_pairs(cfg)
        self.pairs, self.train_transcripts = {}, []
        for split, ds in (("train", splits.train), ("val", splits.val)):
            found = set()
            for text, fr, es in ds.map(lambda e: (e["text"], e["fr"], e["es"])).as_numpy_iterator():
                if split == "train":
                    self.train_transcripts.append(text.decode())
                for lang, target in zip(LANGUAGES, (fr, es)):
                    if target:
                        found.add((f"{serving.TAGS[lang]} {text.decode()}", target.decode()))
            if split == "train":
                found |= {(f"{serving.TAGS[lang]} {s}", t) for lang in LANGUAGES for s, t in extra[lang]}
            self.pairs[split] = sorted(found)
        if not self.pairs["train"]:
            raise ValueError(f"No French or Spanish text pairs in the training split of {cfg.data!r} "
                             f"(nor in text_pairs={cfg.text_pairs!r}): the translation model has nothing to learn.")
        if not self.pairs["val"]:
            self.pairs["val"] = self.pairs["train"][:64]
        if "source_vocab" not in self.state:
            learn = lambda texts: learn_vocabulary(segment_counts(texts), cfg.translation_vocab_size)  # noqa: E731
            self.state = {"source_vocab": learn([s for s, _ in self.pairs["train"]]),
                          "target_vocab": learn([t for _, t in self.pairs["train"]])}
        splits.info["translation_pairs"] = {k: len(v) for k, v in self.pairs.items()}
        if cfg.lm_order:
            self.language_model = lm_lib.CharNgram.fit(self.lm_texts(), cfg.lm_order, cfg.lm_min_count)
            self.state["lm_rows"] = len(self.language_model.keys)
        return splits

    def lm_texts(self) -> list[str]:
        """The training transcripts and the lines of `lm_text`."""
        texts = list(self.train_transcripts)
        if self.config.lm_text:
            path = data.resolve_data_path(self.config.lm_text, "lm_text")
            path = path / "train.en" if path.is_dir() else path
            texts += [audio.normalize_text(line) for line in path.read_text(encoding="utf-8").splitlines()]
        return texts

    @property
    def tokenizers(self) -> tuple[Tokenizer, Tokenizer]:
        if self._tokenizers is None:
            if "source_vocab" not in self.state:
                self.datasets()
            length = self.config.translation_max_length
            self._tokenizers = (Tokenizer(self.state["source_vocab"], max_length=length, name="source"),
                                Tokenizer(self.state["target_vocab"], max_length=length, name="target"))
        return self._tokenizers

    def trackables(self):
        source, target = self.tokenizers
        return source.trackables() + target.trackables()

    # Model and training -----------------------------------------------------------------------

    def make_model(self):
        source, target = self.tokenizers
        model = model_lib.build_model(self.config, source.vocab_size, target.vocab_size, self.state.get("lm_rows", 1))
        if self.language_model is not None:  # fresh from the data; otherwise the weights file holds it
            model.set_language_model(self.language_model)
        return model

    def phases(self):
        return [Phase("translation", prepare=lambda model: None, run=self.fit_translation, budgeted=False),
                Phase("train")]

    def compile_model(self, model):
        model.translator.trainable = False  # learned in its own phase, before the recognizer
        model.compile(optimizer=keras.optimizers.Adam(self.cosine_learning_rate(warmup_steps=50), clipnorm=1.0),
                      jit_compile=self.config.jit_compile)

    def text_batches(self, pairs, shuffle: bool) -> tf.data.Dataset:
        """(tagged English, target) pairs -> ({"source", "target_in"}, target_out) batches."""
        source, target = self.tokenizers
        length = self.config.translation_max_length
        ds = tf.data.Dataset.from_tensor_slices(([s for s, _ in pairs], [t for _, t in pairs]))
        ds = ds.batch(1024).map(lambda s, t: (source.tokenize_ragged(s), target.tokenize_ragged(t))).unbatch()
        ds = ds.map(lambda s, t: (s, tf.concat([[START], t], 0)[:length], tf.concat([t, [END]], 0)[:length])).cache()
        if shuffle:
            ds = ds.shuffle(len(pairs), seed=self.config.seed, reshuffle_each_iteration=True)
        ds = ds.padded_batch(self.config.translation_batch_size)
        return ds.map(lambda s, ti, to: ({"source": s, "target_in": ti}, to)).prefetch(tf.data.AUTOTUNE)

    def fit_translation(self, model, splits, workdir) -> dict:
        cfg = self.config
        translator = model.translator
        translator.trainable = True
        schedule = WarmupInverseSqrt(cfg.translation_learning_rate, cfg.translation_warmup_steps)
        translator.compile(optimizer=keras.optimizers.Adam(schedule, beta_2=0.98, epsilon=1e-9, clipnorm=1.0),
                           loss=smoothed_loss(0.1), metrics=[token_accuracy])
        phase = cfg.replace(epochs=cfg.translation_epochs, time_budget_s=cfg.translation_budget_s)
        # The pairs repeat within an epoch: a few dozen pairs would otherwise make one-step epochs.
        result = training.fit_model(translator, self.text_batches(self.pairs["train"], True).repeat(),
                                    self.text_batches(self.pairs["val"], False), config=phase, workdir=workdir,
                                    steps_per_epoch=cfg.translation_steps_per_epoch,
                                    batch_size=cfg.translation_batch_size)
        history = result["history"]
        return {"epochs_run": result["epochs_run"], "train_seconds": result["train_seconds"],
                "val_token_accuracy": history.get("val_token_accuracy", [None])[-1], "pairs": len(self.pairs["train"])}

    def speech_batches(self, ds: tf.data.Dataset, shuffle: bool, augment: bool) -> tf.data.Dataset:
        """Elements -> ({"waveform": [B, T] (whole steps), "samples": [B]}, labels [B, L] padded with -1)."""
        cfg = self.config
        table = tf.constant(char_table())

        def prepare(e):
            labels = tf.gather(table, tf.minimum(tf.strings.unicode_decode(e["text"], "UTF-8"), 127))
            return {"waveform": e["waveform"], "samples": tf.shape(e["waveform"])[0]}, labels

        ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).cache()
        if shuffle:
            ds = ds.shuffle(4096, seed=cfg.seed, reshuffle_each_iteration=True)
        # Clips of similar lengths share a batch: less padding for the GRU to run over.
        bounds = [int(s * cfg.sample_rate) for s in (2, 3, 4, 6, 9, 14)]
        sizes = [self.global_batch_size] * (len(bounds) + 1)
        ds = ds.bucket_by_sequence_length(lambda x, y: x["samples"], bounds, sizes,
                                          padding_values=({"waveform": 0.0, "samples": 0}, -1))
        ds = ds.map(lambda x, y: ({**x, "waveform": audio.pad_to_steps(x["waveform"], cfg.step_samples)}, y))
        if augment:
            seeds = tf.data.Dataset.random(seed=cfg.seed, rerandomize_each_iteration=True).batch(2)
            ds = tf.data.Dataset.zip(ds, seeds).map(
                lambda xy, seed: ({**xy[0], "waveform": data.augment(xy[0]["waveform"], seed, cfg)}, xy[1]),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.prefetch(tf.data.AUTOTUNE)

    def training_data(self, splits):
        return (self.speech_batches(splits.train, shuffle=True, augment=self.config.augment),
                self.speech_batches(splits.val, shuffle=False, augment=False))

    # Evaluation -------------------------------------------------------------------------------

    def transcribe_waveforms(self, waves: Sequence[np.ndarray], batch: int = 16,
                             with_lm: bool = False) -> tuple[list[str], list[float]]:
        """Greedy (or, `with_lm`, language-model) transcripts of waveforms at the model rate, through the
        endpoints' decoding."""
        texts, _, confidences = self.transcribe_both(waves, batch, with_lm)
        return texts, confidences

    def transcribe_both(self, waves: Sequence[np.ndarray], batch: int = 16,
                        with_lm: bool = False) -> tuple[list[str], list[str], list[float]]:
        """(transcripts as transcribe_waveforms gives them, greedy transcripts, confidences) from one pass
        of the recognizer."""
        step = self.config.step_samples
        if getattr(self, "_transcribe_fn", None) is None:
            model = self.require_model()
            cfg = self.config

            @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32), tf.TensorSpec([None], tf.int32),
                                          tf.TensorSpec([], tf.bool)])
            def run(x, samples, use_lm):
                lengths = model_lib.logit_lengths(samples, step)
                logits = model.recognizer(x, training=False)
                greedy, confidence, _ = serving.greedy_ctc(logits, lengths, tf.fill([tf.shape(x)[0]], audio.BLANK))
                greedy = serving.tidy(greedy)
                if not model.lm_order:
                    return greedy, greedy, confidence
                text = tf.cond(use_lm, lambda: serving.tidy(serving.lm_decode(model, logits, lengths, cfg)[0]),
                               lambda: greedy)
                return text, greedy, confidence

            self._transcribe_fn = run
        run = self._transcribe_fn
        with_lm = tf.constant(bool(with_lm and self.config.lm_order))

        texts, greedy_texts, confidences = [], [], []
        for i in range(0, len(waves), batch):
            chunk = waves[i:i + batch]
            longest = max(len(w) for w in chunk)
            padded = np.zeros((len(chunk), longest + (-longest) % step), np.float32)
            for j, w in enumerate(chunk):
                padded[j, :len(w)] = w
            text, greedy, confidence = run(tf.constant(padded), tf.constant([len(w) for w in chunk], tf.int32),
                                           with_lm)
            texts += decode_strings(text.numpy())
            greedy_texts += decode_strings(greedy.numpy())
            confidences += confidence.numpy().tolist()
        return texts, greedy_texts, confidences

    def stream_waveform(self, wave: np.ndarray, chunk_seconds: float = 0.5) -> str:
        """The transcript of one clip sent chunk by chunk through the transcribe_stream endpoint."""
        fn = self.endpoints["transcribe_stream"]
        step = self.config.step_samples
        chunk = max(step, int(round(chunk_seconds * self.config.sample_rate / step)) * step)
        wave = np.pad(wave, (0, (-len(wave)) % step)).astype(np.float32)
        state = tf.zeros([1, fn.input_signature[1].shape[1]])
        transcript = tf.constant([""])
        for start in range(0, len(wave), chunk):
            out = fn(audio_chunk=tf.constant(wave[None, start:start + chunk]), state=state, transcript=transcript)
            state, transcript = out["state"], out["transcript"]
        return decode_strings(transcript.numpy())[0].strip()

    def translate(self, texts: Sequence[str], languages: Sequence[str], batch: int = 64) -> list[str]:
        """Translations of English transcripts into each row's language, through the endpoints' decoding."""
        if getattr(self, "_translate_fn", None) is None:
            source, target = self.tokenizers
            cfg = self.config
            self._translate_fn = tf.function(make_translate(self.require_model().translator, source, target,
                                                            cfg.translation_decode, cfg.translation_beam_size, 0.6))
        out = []
        for i in range(0, len(texts), batch):
            rows = tf.constant(list(texts[i:i + batch]))
            result = self._translate_fn(serving.tagged(rows, tf.constant(list(languages[i:i + batch]))))
            out += decode_strings(tf.where(rows == "", "", result["translation"]).numpy())
        return out

    def compute_metrics(self, test):
        import jiwer

        cfg = self.config
        rows = list(test.as_numpy_iterator())
        if cfg.eval_max_clips:
            rows = rows[:cfg.eval_max_clips]
        waves = [r["waveform"] for r in rows]
        references = [r["text"].decode() for r in rows]
        # What serving_default answers (with the language model when there is one), and greedy CTC.
        hypotheses, greedy, confidences = self.transcribe_both(waves, with_lm=True)
        self.datasets()  # the training transcripts come with the data
        frequent = collections.Counter(self.train_transcripts).most_common(1)[0][0]
        # jiwer refuses empty hypotheses lists only; an empty transcript is scored as all deletions.
        metrics = {"wer": jiwer.wer(references, hypotheses), "cer": jiwer.cer(references, hypotheses),
                   "baseline_wer": jiwer.wer(references, [frequent] * len(references)),
                   "baseline_cer": jiwer.cer(references, [frequent] * len(references)),
                   "greedy_wer": jiwer.wer(references, greedy), "greedy_cer": jiwer.cer(references, greedy),
                   "exact_sentences": float(np.mean([h == r for h, r in zip(hypotheses, references)])),
                   "mean_confidence": float(np.mean(confidences)), "test_clips": float(len(rows))}
        translations = {}
        for lang in LANGUAGES:
            keep = [i for i, r in enumerate(rows) if r[lang]]
            if not keep:
                continue
            targets = [rows[i][lang].decode() for i in keep]
            spoken = self.translate([hypotheses[i] for i in keep], [lang] * len(keep))
            gold = self.translate([references[i] for i in keep], [lang] * len(keep))
            translations[lang] = dict(zip(keep, spoken))
            metrics[f"chrf_{lang}"] = corpus_scores(spoken, targets)["chrf"]
            metrics[f"chrf_{lang}_gold_transcript"] = corpus_scores(gold, targets)["chrf"]
            metrics[f"chrf_{lang}_floor"] = metrics[f"chrf_{lang}_gold_transcript"] - 8.0
        metrics.update(self.speed_and_streaming(waves[:cfg.speed_clips]))
        self.samples = [{"reference": references[i], "transcript": hypotheses[i],
                         **{f"translation ({lang})": translations.get(lang, {}).get(i, "") for lang in LANGUAGES},
                         **{f"reference ({lang})": rows[i][lang].decode() for lang in LANGUAGES}}
                        for i in range(min(10, len(rows)))]
        self.write_reports(waves[0] if waves else None, references[:1], metrics)
        return metrics

    def speed_and_streaming(self, waves) -> dict[str, float]:
        """Real-time factors (audio seconds per compute second) of whole clips (greedy, and with the
        language model) and of 0.5 s chunks, and the share of clips whose streamed transcript equals the
        whole clip's greedy one."""
        if not waves:
            return {}
        seconds = sum(len(w) for w in waves) / self.config.sample_rate
        self.transcribe_waveforms(waves[:1])  # trace once
        self.stream_waveform(waves[0][:self.config.sample_rate])
        start = time.perf_counter()
        full = [self.transcribe_waveforms([w])[0][0] for w in waves]
        full_time = time.perf_counter() - start
        start = time.perf_counter()
        streamed = [self.stream_waveform(w) for w in waves]
        stream_time = time.perf_counter() - start
        out = {"rtf_full": seconds / full_time, "rtf_stream": seconds / stream_time,
               "stream_matches_full": float(np.mean([a == b for a, b in zip(full, streamed)]))}
        if self.config.lm_order:
            start = time.perf_counter()
            for w in waves:
                self.transcribe_waveforms([w], with_lm=True)
            out["rtf_lm"] = seconds / (time.perf_counter() - start)
        return out

    def write_reports(self, wave, reference, metrics) -> None:
        from apps.spoken_translation.plots import alignment_png

        self.workdir.mkdir(parents=True, exist_ok=True)
        columns = list(self.samples[0]) if self.samples else []
        lines = [f"Held-out clips ({self.datasets().info.get('source', self.config.data)}); WER "
                 f"{metrics['wer']:.3f}, CER {metrics['cer']:.3f}.", "",
                 "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(str(r[c]).replace("|", "\\|") for c in columns) + " |" for r in self.samples]
        (self.workdir / "samples.md").write_text("\n".join(lines) + "\n")
        if wave is not None:
            recognizer = self.require_model().recognizer
            padded = audio.pad_to_steps(tf.constant(wave[None]), self.config.step_samples)
            logits = recognizer(padded, training=False)[0].numpy()
            mel = recognizer.spectrogram(padded)[0].numpy()
            alignment_png(mel, logits, self.config, reference[0], self.workdir / "ctc_alignment.png")

    # Serving ----------------------------------------------------------------------------------

    def make_endpoints(self):
        source, target = self.tokenizers
        return serving.make_endpoints(self.require_model(), source, target, self.config)

    def encode_request(self, raw_inputs: Sequence[Any]):
        """Items are WAV bytes or paths (translated into target_language), or (WAV, language) pairs."""
        wavs, languages = [], []
        for item in raw_inputs:
            wav, lang = item if isinstance(item, tuple) else (item, self.config.target_language)
            wavs.append(read_bytes(wav))
            languages.append(lang)
        return {"audio_wav_bytes": tf.constant(wavs, tf.string), "target_language": tf.constant(languages, tf.string)}

    def decode_response(self, outputs: Mapping[str, np.ndarray]):
        return [{"transcript": t, "translation": tr, "confidence": round(float(c), 4)}
                for t, tr, c in zip(decode_strings(outputs["transcript"]), decode_strings(outputs["translation"]),
                                    outputs["transcript_confidence"])]

    def sample_inputs(self, n: int = 4):
        waves = [e["waveform"] for e in self.datasets().test.take(n).as_numpy_iterator()]
        return [audio.encode_wav(w, self.config.sample_rate) for w in waves]

    def example_requests(self):
        raw = self.sample_inputs(3)
        wavs = tf.constant(raw, tf.string)
        step = self.config.step_samples
        state_size = sum(self.require_model().recognizer.state_sizes()) + 1
        chunk = np.stack([np.pad(w, (0, 8 * step))[:8 * step]
                          for w in (e["waveform"] for e in self.datasets().test.take(2).as_numpy_iterator())])
        requests = {"serving_default": {"audio_wav_bytes": wavs,
                                        "target_language": tf.constant((["fr", "es"] * 2)[:len(raw)])},
                    "transcribe": {"audio_wav_bytes": wavs}, "transcribe_beam": {"audio_wav_bytes": wavs},
                    "transcribe_stream": {"audio_chunk": tf.constant(chunk, tf.float32),
                                          "state": tf.zeros([len(chunk), state_size]),
                                          "transcript": tf.constant([""] * len(chunk))}}
        if self.config.lm_order:
            requests["transcribe_lm"] = {"audio_wav_bytes": wavs}
        return requests
