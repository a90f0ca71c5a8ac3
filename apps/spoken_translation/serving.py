"""Exported endpoints of the spoken translator (stock TF ops only).

serving_default:   audio_wav_bytes (string [N], 16-bit PCM WAV, any rate 1-384 kHz, up to max_seconds),
                   target_language (string [N], "fr" or "es") -> transcript (string [N]),
                   translation (string [N]), transcript_confidence (float32 [N]); transcribed as
                   transcribe_lm does when the model has a language model, else as transcribe
transcribe:        audio_wav_bytes [N] -> transcript, transcript_confidence     (greedy CTC)
transcribe_beam:   audio_wav_bytes [N] -> transcript, transcript_confidence     (CTC beam search)
transcribe_lm:     audio_wav_bytes [N] -> transcript, transcript_confidence     (CTC prefix beam search with
                   the character language model; only when lm_order > 0)
transcribe_stream: audio_chunk (float32 [N, T] at the model rate, T a multiple of step_samples),
                   state (float32 [N, S], zeros to start), transcript (string [N], "" to start)
                   -> transcript (the partial transcript so far), state (to send with the next chunk)

A clip fed chunk by chunk to transcribe_stream (the last chunk zero-padded to whole steps) ends with
the transcript `transcribe` gives for the whole clip (after stripping a trailing space).
"""

from __future__ import annotations

import tensorflow as tf

from apps.spoken_translation.audio import ALPHABET, BLANK, waveform_batch
from apps.spoken_translation.lm import lm_beam_search
from apps.spoken_translation.model import logit_lengths
from apps.translation.serving import make_translate
from core.data import check_utf8

TAGS = {"fr": "xxfr", "es": "xxes"}  # the source-side token that tells the translator the target language


def tagged(texts, languages):
    """English texts and target languages -> the translator's source strings."""
    tags = tf.where(tf.equal(languages, "fr"), TAGS["fr"], TAGS["es"])
    return tf.strings.join([tags, texts], separator=" ")


def greedy_ctc(logits, lengths, previous):
    """Best class per step, repeats merged (also across chunks: `previous` is the class before the first
    step, BLANK for none), blanks dropped -> (raw text [B], geometric-mean top probability [B], last class [B])."""
    best = tf.argmax(logits, axis=-1, output_type=tf.int32)
    steps = tf.shape(best)[1]
    valid = tf.range(steps)[None, :] < lengths[:, None]
    before = tf.concat([previous[:, None], best[:, :-1]], axis=1)
    keep = tf.logical_and(valid, tf.logical_and(best != BLANK, best != before))
    chars = tf.gather(tf.constant(list(ALPHABET)), tf.where(keep, best, 0))
    text = tf.strings.reduce_join(tf.where(keep, chars, ""), axis=1)
    top = tf.reduce_max(tf.nn.log_softmax(logits, axis=-1), axis=-1)
    mean_log = tf.math.divide_no_nan(tf.reduce_sum(tf.where(valid, top, 0.0), axis=1),
                                     tf.cast(lengths, tf.float32))
    confidence = tf.where(lengths > 0, tf.exp(mean_log), 0.0)
    last = tf.where(lengths > 0, tf.gather(best, tf.maximum(lengths - 1, 0), batch_dims=1), previous)
    return text, confidence, last


def lm_decode(model, logits, lengths, config):
    """CTC prefix beam search with the model's character language model -> (raw text [N], score [N])."""
    return lm_beam_search(logits, lengths, model.lm_keys, model.lm_log_probs, model.lm_order, config.lm_alpha,
                          config.lm_beta, config.lm_beam)


def tidy(text):
    """Single spaces, none at the ends."""
    return tf.strings.strip(tf.strings.regex_replace(text, " +", " "))


def make_endpoints(model, source_tokenizer, target_tokenizer, config) -> dict:
    recognizer = model.recognizer
    step = recognizer.step_samples
    state_size = sum(recognizer.state_sizes()) + 1  # + the last class (plus one; 0: none) for merging repeats
    translate = make_translate(model.translator, source_tokenizer, target_tokenizer, config.translation_decode,
                               config.translation_beam_size, 0.6)

    def recognize(audio_wav_bytes):
        """-> logits [N, steps, C] and valid steps [N]; an empty request makes no model call."""
        waves, samples = waveform_batch(audio_wav_bytes, config)
        lengths = logit_lengths(samples, step)
        logits = tf.cond(tf.size(waves) > 0, lambda: recognizer(waves, training=False),
                         lambda: tf.zeros([tf.shape(waves)[0], 0, len(ALPHABET) + 1]))
        return logits, lengths

    def transcribe_greedy(audio_wav_bytes):
        logits, lengths = recognize(audio_wav_bytes)
        text, confidence, _ = greedy_ctc(logits, lengths, tf.fill([tf.shape(logits)[0]], BLANK))
        return {"transcript": tidy(text), "transcript_confidence": confidence}

    def transcribe_with_lm(audio_wav_bytes):
        logits, lengths = recognize(audio_wav_bytes)
        _, confidence, _ = greedy_ctc(logits, lengths, tf.fill([tf.shape(logits)[0]], BLANK))
        text, _ = lm_decode(model, logits, lengths, config)
        return {"transcript": tidy(text), "transcript_confidence": confidence}

    heard_by = transcribe_with_lm if model.lm_order else transcribe_greedy

    wav_spec = tf.TensorSpec([None], tf.string, name="audio_wav_bytes")

    @tf.function(input_signature=[wav_spec], autograph=False)
    def transcribe(audio_wav_bytes):
        return transcribe_greedy(audio_wav_bytes)

    @tf.function(input_signature=[wav_spec], autograph=False)
    def transcribe_beam(audio_wav_bytes):
        logits, lengths = recognize(audio_wav_bytes)
        n = tf.shape(logits)[0]

        def decode():
            # The decoder's blank is the last class, as in ALPHABET + blank.
            decoded, log_probs = tf.nn.ctc_beam_search_decoder(tf.transpose(logits, [1, 0, 2]), lengths,
                                                               beam_width=config.beam_width, top_paths=1)
            ids = tf.sparse.to_dense(decoded[0], default_value=-1)
            ids = tf.pad(ids, [[0, n - tf.shape(ids)[0]], [0, 0]], constant_values=-1)
            chars = tf.gather(tf.constant(list(ALPHABET)), tf.maximum(ids, 0))
            return tf.strings.reduce_join(tf.where(ids >= 0, chars, ""), axis=1), log_probs[:, 0]

        # The decoder refuses an empty batch.
        text, log_prob = tf.cond(n > 0, decode, lambda: (tf.zeros([0], tf.string), tf.zeros([0])))
        per_step = tf.math.divide_no_nan(log_prob, tf.cast(lengths, tf.float32))
        return {"transcript": tidy(text), "transcript_confidence": tf.where(lengths > 0, tf.exp(per_step), 0.0)}

    @tf.function(input_signature=[wav_spec, tf.TensorSpec([None], tf.string, name="target_language")],
                 autograph=False)
    def serve(audio_wav_bytes, target_language):
        language = tf.strings.strip(tf.strings.lower(check_utf8(target_language, "target_language")))
        known = tf.logical_or(tf.equal(language, "fr"), tf.equal(language, "es"))
        checks = [
            tf.debugging.Assert(tf.reduce_all(known), [
                "Unknown target_language: expected 'fr' or 'es'; received",
                tf.boolean_mask(target_language, tf.logical_not(known))], summarize=4),
            tf.debugging.Assert(tf.equal(tf.size(target_language), tf.size(audio_wav_bytes)), [
                "target_language must have one row per audio_wav_bytes row; received", tf.size(target_language),
                "target_language rows for", tf.size(audio_wav_bytes), "audio_wav_bytes rows"])]
        with tf.control_dependencies(checks):
            heard = heard_by(audio_wav_bytes)
        text = heard["transcript"]
        translation = tf.cond(tf.size(text) > 0, lambda: translate(tagged(text, language))["translation"],
                              lambda: tf.zeros([0], tf.string))
        return {"transcript": text, "translation": tf.where(text == "", "", translation),
                "transcript_confidence": heard["transcript_confidence"]}

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name="audio_chunk"),
                                  tf.TensorSpec([None, state_size], tf.float32, name="state"),
                                  tf.TensorSpec([None], tf.string, name="transcript")], autograph=False)
    def transcribe_stream(audio_chunk, state, transcript):
        transcript = check_utf8(transcript, "transcript")
        n, samples = tf.shape(audio_chunk)[0], tf.shape(audio_chunk)[1]
        checks = [
            tf.debugging.Assert(tf.logical_or(tf.equal(samples % step, 0), tf.equal(n, 0)), [
                f"audio_chunk must hold a multiple of {step} samples ({step / config.sample_rate * 1000:g} ms at "
                f"{config.sample_rate} Hz; zero-pad the last chunk); received", samples, "samples"]),
            tf.debugging.Assert(tf.logical_and(tf.equal(tf.shape(state)[0], n), tf.equal(tf.size(transcript), n)), [
                "state and transcript must have one row per audio_chunk row; received", tf.shape(state)[0],
                "state rows and", tf.size(transcript), "transcript rows for", n, "audio_chunk rows"]),
            tf.debugging.Assert(tf.reduce_all(tf.math.is_finite(audio_chunk)), ["audio_chunk holds NaN or Inf"])]
        with tf.control_dependencies(checks):
            model_state = state[:, :state_size - 1]
            previous = tf.cast(tf.round(state[:, state_size - 1]), tf.int32) - 1
        previous = tf.where(previous < 0, BLANK, previous)

        def step_chunk():
            logits, new_state = recognizer.run(audio_chunk, model_state, training=False)
            lengths = tf.fill([n], tf.shape(logits)[1])
            text, _, last = greedy_ctc(logits, lengths, previous)
            joined = tf.strings.regex_replace(tf.strings.join([transcript, text]), " +", " ")
            return (tf.strings.regex_replace(joined, "^ ", ""),
                    tf.concat([new_state, tf.cast(last + 1, tf.float32)[:, None]], axis=1))

        new_text, new_state = tf.cond(tf.logical_and(n > 0, samples > 0), step_chunk,
                                      lambda: (tf.identity(transcript), tf.identity(state)))
        return {"transcript": new_text, "state": new_state}

    endpoints = {"serving_default": serve, "transcribe": transcribe, "transcribe_beam": transcribe_beam,
                 "transcribe_stream": transcribe_stream}
    if model.lm_order:
        endpoints["transcribe_lm"] = tf.function(transcribe_with_lm, input_signature=[wav_spec], autograph=False)
    return endpoints
