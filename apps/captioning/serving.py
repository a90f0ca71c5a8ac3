"""Caption decoding inside the graph, and the exported endpoints (stock TF ops only).

serving_default: image_bytes string [N] (encoded JPEG/PNG/GIF/BMP, any size) -> caption string [N]
                 (greedy decoding)
serving_beam:    image_bytes string [N] -> captions string [N, beam_width], scores float32 [N, beam_width]
                 (beam search; scores are log-probabilities, best first)
serving_score:   image_bytes string [N], caption string [N] -> log_probability float32 [N]
                 (how likely the model finds a given caption: standardized and tokenized in the graph)

Both decoders are bounded tf.while_loops over a fixed [N, L] token buffer: the decoder re-reads the
whole buffer every step (its causal attention ignores the not-yet-written positions), which keeps
every shape static at the cost of recomputing the prefix; captions are short.
A log-probability is the sum of log p(word) over the caption's words and its [end] token.
"""

from __future__ import annotations

import tensorflow as tf

from apps.captioning.text import END, START, with_markers
from core.data import check_utf8, decode_resize_images
from core.export import run_model

NEG = -1e9  # "impossible" without the inf - inf = nan of a true -inf


class Decoder:
    """Greedy and beam-search captioning over a trained encoder and decoder.

    Args:
        encoder: images [N, S, S, 3] (0..255) -> features [N, T, D].
        decoder: [features, tokens [N, L]] -> logits [N, L, V].
        vocabulary: the token strings, index = id (0 = padding, 1 = [UNK]).
        length: decoder positions L (the caption has at most L - 1 words plus [end]).
    """

    def __init__(self, encoder, decoder, vocabulary: list[str], length: int):
        self.encoder = encoder
        self.decoder = decoder
        self.length = length
        self.vocabulary = vocabulary
        self.start_id = vocabulary.index(START)
        self.end_id = vocabulary.index(END)
        # Never generated: padding, unknown words and a second [start].
        banned = [0, 1, self.start_id]
        self.penalty = tf.constant([NEG if i in banned else 0.0 for i in range(len(vocabulary))], tf.float32)

    def _next_log_probs(self, features, tokens, t):
        """log p(token at t + 1 | image, tokens[:, :t + 1]) for every word: [N, V]."""
        logits = self.decoder([features, tokens[:, :self.length]], training=False)
        return tf.nn.log_softmax(tf.cast(tf.gather(logits, t, axis=1), tf.float32))

    def _start_buffer(self, shape):
        start = tf.fill([*shape, 1], tf.constant(self.start_id, tf.int32))
        return tf.concat([start, tf.zeros([*shape, self.length], tf.int32)], axis=-1)

    def greedy(self, images):
        """-> (token ids [N, L + 1] starting with [start], log-probabilities [N])."""
        return self._greedy(run_model(self.encoder, images))

    def _greedy(self, features):
        n = tf.shape(features)[0]
        positions = tf.range(self.length + 1)

        def step(t, tokens, done, scores):
            log_probs = self._next_log_probs(features, tokens, t)
            best = tf.argmax(log_probs + self.penalty, axis=-1, output_type=tf.int32)
            best = tf.where(done, 0, best)
            gained = tf.gather(log_probs, best, batch_dims=1)
            scores += tf.where(done, 0.0, gained)
            tokens = tf.where(positions[None] == t + 1, best[:, None], tokens)
            return t + 1, tokens, done | tf.equal(best, self.end_id), scores

        _, tokens, _, scores = tf.while_loop(
            lambda t, tokens, done, scores: tf.logical_not(tf.reduce_all(done)),
            step, (tf.constant(0), self._start_buffer([n]), tf.zeros([n], tf.bool), tf.zeros([n])),
            maximum_iterations=self.length)
        return tokens, scores

    def beam(self, images, beam_width: int):
        """-> (token ids [N, B, L + 1], log-probabilities [N, B]), best hypothesis first.

        A finished hypothesis can only be continued by padding at no cost, so it competes with the
        unfinished ones on its final score; the search stops when all B kept hypotheses are finished.
        The greedy caption is a candidate too, so the best beam is never less likely than greedy.
        """
        image_features = run_model(self.encoder, images)
        n = tf.shape(image_features)[0]
        vocab = len(self.vocabulary)
        features = tf.repeat(image_features, beam_width, axis=0)  # [N * B, T, D], beams of an image together
        positions = tf.range(self.length + 1)
        finished_step = tf.constant([0.0] + [NEG] * (vocab - 1), tf.float32)
        # Only beam 0 is live at first: the others would duplicate it.
        scores = tf.tile(tf.constant([[0.0] + [NEG] * (beam_width - 1)]), [n, 1])

        def step(t, tokens, done, scores):
            flat = tf.reshape(tokens, [n * beam_width, self.length + 1])
            log_probs = tf.reshape(self._next_log_probs(features, flat, t), [n, beam_width, vocab])
            step_scores = tf.where(done[..., None], finished_step, log_probs + self.penalty)
            total = tf.reshape(scores[..., None] + step_scores, [n, beam_width * vocab])
            scores, index = tf.math.top_k(total, k=beam_width)
            parent, word = index // vocab, index % vocab
            tokens = tf.gather(tokens, parent, batch_dims=1)
            done = tf.gather(done, parent, batch_dims=1)
            tokens = tf.where(positions[None, None] == t + 1, word[..., None], tokens)
            return t + 1, tokens, done | tf.equal(word, self.end_id), scores

        _, tokens, _, scores = tf.while_loop(
            lambda t, tokens, done, scores: tf.logical_not(tf.reduce_all(done)),
            step, (tf.constant(0), self._start_buffer([n, beam_width]), tf.zeros([n, beam_width], tf.bool),
                   scores),
            maximum_iterations=self.length)
        # Beam search can prune the path greedy decoding follows and end up less likely than greedy;
        # the greedy caption competes in the final choice (unless already there), so it never does.
        greedy_tokens, greedy_scores = self._greedy(image_features)
        duplicate = tf.reduce_any(tf.reduce_all(tokens == greedy_tokens[:, None], axis=-1), axis=-1)
        greedy_scores = tf.where(duplicate, NEG, greedy_scores)
        tokens = tf.concat([tokens, greedy_tokens[:, None]], axis=1)
        scores, best = tf.math.top_k(tf.concat([scores, greedy_scores[:, None]], axis=1), k=beam_width)
        return tf.gather(tokens, best, batch_dims=1), scores

    def detokenize(self, tokens):
        """Token ids [..., L + 1] -> caption strings [...]: the words between [start] and [end]."""
        words = tf.gather(tf.constant(self.vocabulary), tokens[..., 1:])
        keep = (tokens[..., 1:] != 0) & (tokens[..., 1:] != self.end_id)
        return tf.strings.strip(tf.strings.reduce_join(tf.where(keep, words + " ", ""), axis=-1))

    def log_probability(self, images, token_ids):
        """Teacher-forced log-probability of tokenized captions [N, L + 1] (as the vectorizer makes them)."""
        token_ids = tf.cast(token_ids, tf.int32)
        logits = self.decoder([run_model(self.encoder, images), token_ids[:, :-1]], training=False)
        targets = token_ids[:, 1:]
        log_probs = tf.gather(tf.nn.log_softmax(tf.cast(logits, tf.float32)), targets, batch_dims=2)
        return tf.reduce_sum(tf.where(targets != 0, log_probs, 0.0), axis=-1)


def make_endpoints(decoder: Decoder, vectorizer, image_size: int, beam_width: int) -> dict:
    size = (image_size, image_size)
    image_bytes_spec = tf.TensorSpec([None], tf.string, name="image_bytes")

    @tf.function(input_signature=[image_bytes_spec])
    def serve_greedy(image_bytes):
        tokens, _ = decoder.greedy(decode_resize_images(image_bytes, size))
        return {"caption": decoder.detokenize(tokens)}

    @tf.function(input_signature=[image_bytes_spec])
    def serve_beam(image_bytes):
        tokens, scores = decoder.beam(decode_resize_images(image_bytes, size), beam_width)
        return {"captions": decoder.detokenize(tokens), "scores": scores}

    @tf.function(input_signature=[image_bytes_spec, tf.TensorSpec([None], tf.string, name="caption")])
    def serve_score(image_bytes, caption):
        tf.debugging.assert_equal(
            tf.shape(image_bytes), tf.shape(caption),
            message="serving_score needs one caption per image: image_bytes and caption differ in length")
        images = decode_resize_images(image_bytes, size)
        caption = check_utf8(caption, "caption")
        return {"log_probability": decoder.log_probability(images, vectorizer(with_markers(caption)))}

    return {"serving_default": serve_greedy, "serving_beam": serve_beam, "serving_score": serve_score}
