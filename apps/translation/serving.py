"""In-graph decoding and the exported endpoints of the translator (stock TF ops only).

serving_default:   text (string [N]) -> translation (string [N])   beam search (or greedy, per config)
translate_greedy:  text (string [N]) -> translation (string [N])   greedy decoding
translate_beam:    text (string [N]) -> translation (string [N])   beam search with length penalty

Both decoders are bounded tf.while_loops over `Translator.decode_step` (key/value cache): at most
`min(max_length, 2 * source length + 10)` steps, stopping as soon as every sequence has ended.
An empty (or all-whitespace) input translates to an empty string.
"""

from __future__ import annotations

import tensorflow as tf

from apps.translation.tokenizer import END, PAD, START, UNK
from core.data import check_utf8

NEGATIVE = -1e9


def _step_budget(source_ids: tf.Tensor, max_length: int) -> tf.Tensor:
    lengths = tf.reduce_sum(tf.cast(source_ids != PAD, tf.int32), axis=1)
    source_length = tf.reduce_max(tf.concat([lengths, [0]], 0))
    return tf.minimum(max_length, 2 * source_length + 10)


def _log_probs(logits: tf.Tensor) -> tf.Tensor:
    """Log-probabilities that never choose padding, [UNK] or [START]."""
    vocab = tf.shape(logits)[-1]
    banned = tf.reduce_sum(tf.one_hot([PAD, UNK, START], vocab), axis=0) > 0
    return tf.nn.log_softmax(tf.where(banned, NEGATIVE, tf.cast(logits, tf.float32)), axis=-1)


def greedy_decode(model, source_ids: tf.Tensor) -> tf.Tensor:
    """Source ids [B, S] -> target ids [B, max_length] (then [END], then padding)."""
    batch = tf.shape(source_ids)[0]
    length = model.max_length
    context, mask = model.encode(source_ids, training=False)
    cross = model.cross_cache(context)

    def cond(step, token, cache, done, out):
        return tf.logical_not(tf.reduce_all(done))

    def body(step, token, cache, done, out):
        logits, cache = model.decode_step(token, step, cache, cross, mask)
        next_token = tf.argmax(_log_probs(logits), axis=-1, output_type=tf.int32)
        next_token = tf.where(done, PAD, next_token)
        out = out + next_token[:, None] * tf.one_hot(step, length, dtype=tf.int32)[None]
        return step + 1, next_token, cache, tf.logical_or(done, next_token == END), out

    state = (tf.constant(0), tf.fill([batch], START), model.empty_cache(batch), tf.zeros([batch], tf.bool),
             tf.zeros([batch, length], tf.int32))
    *_, out = tf.while_loop(cond, body, state, maximum_iterations=_step_budget(source_ids, length))
    return out


def beam_decode(model, source_ids: tf.Tensor, beam_size: int = 4, length_penalty: float = 0.6) -> tf.Tensor:
    """Source ids [B, S] -> best target ids [B, max_length] by beam search.

    Hypotheses are ranked by log-probability / ((5 + length) / 6) ** length_penalty (GNMT); an ended
    hypothesis keeps its score and length and competes with the live ones at every step.
    """
    batch = tf.shape(source_ids)[0]
    k, length = beam_size, model.max_length
    context, mask = model.encode(source_ids, training=False)
    context, mask = tf.repeat(context, k, axis=0), tf.repeat(mask, k, axis=0)
    cross = model.cross_cache(context)
    offsets = (tf.range(batch) * k)[:, None]

    def penalty(lengths):
        return tf.pow((5.0 + tf.cast(lengths, tf.float32)) / 6.0, length_penalty)

    def cond(step, token, cache, scores, lengths, done, seqs):
        return tf.logical_not(tf.reduce_all(done))

    def body(step, token, cache, scores, lengths, done, seqs):
        logits, cache = model.decode_step(token, step, cache, cross, mask)
        log_probs = tf.reshape(_log_probs(logits), [batch, k, -1])
        vocab = tf.shape(log_probs)[-1]
        # An ended hypothesis may only be extended by padding, at no cost.
        pad_only = tf.where(tf.range(vocab) == PAD, 0.0, NEGATIVE)[None, None]
        log_probs = tf.where(done[..., None], pad_only, log_probs)
        totals = scores[..., None] + log_probs  # [B, K, V]
        new_lengths = tf.where(done, lengths, step + 1)
        ranked = tf.reshape(totals / penalty(new_lengths)[..., None], [batch, -1])
        _, flat = tf.math.top_k(ranked, k=k)
        beam, next_token = flat // vocab, flat % vocab
        scores = tf.gather(tf.reshape(totals, [batch, -1]), flat, batch_dims=1)
        was_done = tf.gather(done, beam, batch_dims=1)
        lengths = tf.gather(new_lengths, beam, batch_dims=1)
        next_token = tf.where(was_done, PAD, next_token)
        seqs = tf.gather(seqs, beam, batch_dims=1)
        seqs = seqs + next_token[..., None] * tf.one_hot(step, length, dtype=tf.int32)[None, None]
        rows = tf.reshape(offsets + beam, [-1])
        cache = tf.nest.map_structure(lambda c: tf.gather(c, rows), cache)
        done = tf.logical_or(was_done, next_token == END)
        return step + 1, tf.reshape(next_token, [-1]), cache, scores, lengths, done, seqs

    # Only the first beam is live at the start, so the first step does not pick k copies of one token.
    scores = tf.tile(tf.concat([[0.0], tf.fill([k - 1], NEGATIVE)], 0)[None], [batch, 1])
    state = (tf.constant(0), tf.fill([batch * k], START), model.empty_cache(batch * k), scores,
             tf.zeros([batch, k], tf.int32), tf.zeros([batch, k], tf.bool), tf.zeros([batch, k, length], tf.int32))
    _, _, _, scores, lengths, _, seqs = tf.while_loop(
        cond, body, state, maximum_iterations=_step_budget(source_ids, length))
    best = tf.argmax(scores / penalty(tf.maximum(lengths, 1)), axis=1, output_type=tf.int32)
    return tf.gather(seqs, best, batch_dims=1)


def make_translate(model, source_tokenizer, target_tokenizer, decode: str, beam_size: int,
                   length_penalty: float):
    """text [N] -> translation [N] as a traceable Python function (wrapped in tf.function by callers)."""
    if decode not in ("greedy", "beam"):
        raise ValueError(f"decode must be 'greedy' or 'beam'. Received: decode={decode!r}")

    def translate(text):
        source_ids = source_tokenizer.tokenize(check_utf8(text, "text"))
        if decode == "beam" and beam_size > 1:
            ids = beam_decode(model, source_ids, beam_size, length_penalty)
        else:
            ids = greedy_decode(model, source_ids)
        translation = target_tokenizer.detokenize(ids)
        has_words = tf.reduce_any(source_ids != PAD, axis=1)
        return {"translation": tf.where(has_words, translation, "")}

    return translate


def make_endpoints(model, source_tokenizer, target_tokenizer, decode: str = "beam", beam_size: int = 4,
                   length_penalty: float = 0.6) -> dict:
    spec = [tf.TensorSpec([None], tf.string, name="text")]

    def endpoint(mode):
        return tf.function(make_translate(model, source_tokenizer, target_tokenizer, mode, beam_size,
                                          length_penalty), input_signature=spec)

    return {"serving_default": endpoint(decode), "translate_greedy": endpoint("greedy"),
            "translate_beam": endpoint("beam")}
