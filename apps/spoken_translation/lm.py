"""A character n-gram language model and CTC prefix beam search that consults it, in stock TF ops.

The recognizer hears sounds; English spelling is mostly in the text. The language model is learned
from the training transcripts and any English text given (`lm_text`), with Witten-Bell interpolation
so every context has a full distribution over the 28 characters:

    P(c | h) = (count(h, c) + types(h) * P(c | h minus its oldest character)) / (count(h) + types(h))

Only contexts seen at least `min_count` times keep a row; the rest back off to the longest seen
suffix. Contexts are codes in base 29 (0 = before the sentence, 1 + class otherwise; newest character
least significant), kept sorted with the order in the key so the graph finds them by binary search.

Decoding keeps `beam` prefixes; each frame extends them by every character, merges prefixes that
became equal (CTC's blank and repeat rules), and ranks by acoustic log-probability plus
`alpha` * LM log-probability plus `beta` per character.

    >>> lm = CharNgram.fit(["please enter", "please hold"], order=4)
    >>> texts, scores = lm_beam_search(logits, lengths, lm.keys, lm.log_probs, lm.order, 0.5, 1.0, beam=8)
"""

from __future__ import annotations

import collections
import dataclasses

import numpy as np
import tensorflow as tf

from apps.spoken_translation.audio import ALPHABET, BLANK

BASE = len(ALPHABET) + 1  # context digits: 0 = before the sentence, 1 + class for a character
HASH_MODULUS = 2_147_483_647  # prefix identity for merging beams (collisions are ~1e-9 per pair)


@dataclasses.dataclass
class CharNgram:
    """Interpolated character n-gram probabilities: sorted `keys` (context code * order + context length)
    and the matching `log_probs` rows [rows, len(ALPHABET)]."""

    order: int
    keys: np.ndarray
    log_probs: np.ndarray

    @classmethod
    def fit(cls, texts, order: int = 6, min_count: int = 2) -> CharNgram:
        if order < 1:
            raise ValueError(f"order must be at least 1. Received: order={order}")
        index = {ch: i for i, ch in enumerate(ALPHABET)}
        counts = [collections.defaultdict(lambda: np.zeros(len(ALPHABET), np.float64)) for _ in range(order)]
        for text in texts:
            ids = [index[ch] for ch in text if ch in index]
            digits = [0] * (order - 1) + [i + 1 for i in ids]
            for pos, target in enumerate(ids):
                history = digits[pos:pos + order - 1]  # the order-1 digits before the target
                for k in range(order):
                    counts[k][context_code(history, k)][target] += 1
        if not counts[0]:
            raise ValueError("The language model needs text with at least one character of the alphabet.")
        levels: list[dict[int, np.ndarray]] = []
        keys, rows = [], []
        for k in range(order):
            level = {}
            for code, c in sorted(counts[k].items()):
                total = c.sum()
                if k and total < min_count:
                    continue
                if k == 0:
                    backoff = np.full(len(ALPHABET), 1.0 / len(ALPHABET))
                else:  # the longest kept suffix of the context (without its oldest digits)
                    backoff = next(levels[j][code % BASE ** j] for j in range(k - 1, -1, -1)
                                   if code % BASE ** j in levels[j])
                # Witten-Bell: the lower order weighs as much as the distinct characters seen after h.
                types = float((c > 0).sum())
                level[code] = (c + types * backoff) / (total + types)
                keys.append(code * order + k)
                rows.append(np.log(level[code]))
            levels.append(level)
        keys = np.array(keys, np.int64)
        order_of = np.argsort(keys)  # sorted, so the graph finds a context by binary search
        return cls(order, keys[order_of], np.array(rows, np.float32)[order_of])

    def log_prob(self, text: str) -> float:
        """Log-probability of a transcript's characters (no end of sentence), for tests and inspection."""
        index = {code: row for row, code in enumerate(self.keys.tolist())}
        digits, total = [0] * (self.order - 1), 0.0
        for ch in text:
            total += float(self.log_probs[lookup_row(index, digits, self.order), ALPHABET.index(ch)])
            digits = digits[1:] + [ALPHABET.index(ch) + 1] if self.order > 1 else digits
        return total


def context_code(digits: list[int], k: int) -> int:
    """The code of the last k digits (the newest least significant)."""
    code = 0
    for d in digits[len(digits) - k:] if k else []:
        code = code * BASE + d
    return code


def lookup_row(index: dict, digits: list[int], order: int) -> int:
    """Row of the longest kept context ending the history `digits` (order - 1 of them)."""
    for k in range(order - 1, -1, -1):
        key = context_code(digits, k) * order + k
        if key in index:
            return index[key]
    raise AssertionError("the empty context always has a row")


def lm_rows(keys, context, order: int):
    """Rows of the longest kept contexts ending in `context` ([B] codes of the last order - 1 digits);
    `keys` sorted ascending."""
    rows = tf.zeros(tf.shape(context), tf.int32)  # the empty context: key 0 sorts first
    last = tf.size(keys) - 1
    for k in range(1, order):  # shortest first, so a longer hit overwrites it
        query = context % BASE ** k * order + k
        at = tf.minimum(tf.searchsorted(keys, query, out_type=tf.int32), last)
        rows = tf.where(tf.gather(keys, at) == query, at, rows)
    return rows


def segment_logsumexp(values, segments, count):
    """log(sum(exp(values))) per segment, -inf for segments of -inf only."""
    top = tf.math.unsorted_segment_max(values, segments, count)
    safe = tf.where(tf.math.is_finite(top), top, 0.0)
    total = tf.math.unsorted_segment_sum(tf.exp(values - tf.gather(safe, segments)), segments, count)
    return tf.where(tf.math.is_finite(top), safe + tf.math.log(total), -np.inf)


def prefix_beam_search(log_probs, length, keys, log_prob_rows, order: int, alpha: float, beta: float,
                       beam: int):
    """One clip: log_probs [T, C] (blank last), `length` valid steps -> (class ids [L] of the best prefix,
    its score: acoustic + alpha * LM + beta * characters)."""
    chars = len(ALPHABET)
    steps = tf.shape(log_probs)[0]
    span = BASE ** max(order - 1, 0)
    neg = tf.constant(-np.inf, tf.float32)
    # One live beam, the empty prefix (key 0); the others are dead, with keys no prefix hashes to.
    first = tf.one_hot(0, beam, on_value=0.0, off_value=-np.inf)
    state = (tf.constant(0), tf.zeros([beam, steps + 1], tf.int32), tf.zeros([beam], tf.int32),
             tf.fill([beam], -1), tf.zeros([beam], tf.int64), -tf.range(beam, dtype=tf.int64),
             first, tf.fill([beam], neg), tf.zeros([beam]))

    def body(t, prefix, size, last, context, key, blank, nonblank, lm):
        y = log_probs[t]
        total = tf.experimental.numpy.logaddexp(blank, nonblank)
        # The same prefix: after a blank, or the last character held.
        stay_blank = total + y[BLANK]
        stay_nonblank = tf.where(last >= 0, nonblank + tf.gather(y, tf.maximum(last, 0)), neg)
        # One more character c: a repeat of the last one needs a blank between.
        c = tf.range(chars)
        repeat = c[None, :] == last[:, None]
        ext_nonblank = tf.where(repeat, blank[:, None], total[:, None]) + y[None, :chars]
        rows = lm_rows(keys, context, order)
        ext_lm = lm[:, None] + alpha * tf.gather(log_prob_rows, rows) + beta
        ext_key = (key[:, None] * 31 + tf.cast(c[None, :] + 1, tf.int64)) % HASH_MODULUS
        # Candidates: the beam stays (first `beam`), then every extension; equal prefixes merge.
        all_key = tf.concat([key, tf.reshape(ext_key, [-1])], 0)
        all_blank = tf.concat([stay_blank, tf.fill([beam * chars], neg)], 0)
        all_nonblank = tf.concat([stay_nonblank, tf.reshape(ext_nonblank, [-1])], 0)
        all_lm = tf.concat([lm, tf.reshape(ext_lm, [-1])], 0)
        unique, segment = tf.unique(all_key)
        count = tf.size(unique)
        merged_blank = segment_logsumexp(all_blank, segment, count)
        merged_nonblank = segment_logsumexp(all_nonblank, segment, count)
        first_of = tf.math.unsorted_segment_min(tf.range(tf.size(all_key)), segment, count)
        merged_lm = tf.gather(all_lm, first_of)
        score = tf.experimental.numpy.logaddexp(merged_blank, merged_nonblank) + merged_lm
        score = tf.concat([score, tf.fill([beam], neg)], 0)  # fewer unique prefixes than beams early on
        _, best = tf.math.top_k(score, beam)
        pick = tf.gather(tf.concat([first_of, tf.zeros([beam], tf.int32)], 0), best)
        alive = best < count
        parent = tf.where(pick < beam, pick, (pick - beam) // chars)
        added = tf.where(pick < beam, -1, (pick - beam) % chars)
        grown = added >= 0
        old_size = tf.gather(size, parent)
        prefix = tf.where(tf.logical_and(grown[:, None], tf.one_hot(old_size, steps + 1, on_value=True,
                                                                    off_value=False)),
                          added[:, None], tf.gather(prefix, parent))
        size = old_size + tf.cast(grown, tf.int32)
        last = tf.where(grown, added, tf.gather(last, parent))
        context = tf.where(grown, (tf.gather(context, parent) * BASE + tf.cast(added + 1, tf.int64)) % span,
                           tf.gather(context, parent))
        new_key = tf.gather(all_key, pick)
        blank = tf.where(alive, tf.gather(tf.concat([merged_blank, tf.fill([beam], neg)], 0), best), neg)
        nonblank = tf.where(alive, tf.gather(tf.concat([merged_nonblank, tf.fill([beam], neg)], 0), best), neg)
        lm = tf.gather(all_lm, pick)
        return t + 1, prefix, size, last, context, new_key, blank, nonblank, lm

    out = tf.while_loop(lambda t, *_: t < length, body, state, maximum_iterations=steps)
    _, prefix, size, _, _, _, blank, nonblank, lm = out
    final = tf.experimental.numpy.logaddexp(blank, nonblank) + lm
    best = tf.argmax(final, output_type=tf.int32)
    return prefix[best, :size[best]], final[best]


def lm_beam_search(logits, lengths, keys, log_prob_rows, order: int, alpha: float, beta: float, beam: int):
    """logits [N, T, C], valid steps [N], the LM's sorted `keys` and `log_prob_rows` -> (transcripts [N]
    (raw, untidied), scores [N])."""
    log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
    alphabet = tf.constant(list(ALPHABET))

    def one(args):
        ids, score = prefix_beam_search(args[0], args[1], keys, log_prob_rows, order, alpha, beta, beam)
        return tf.strings.reduce_join(tf.gather(alphabet, ids)), score

    return tf.map_fn(one, (log_probs, tf.cast(lengths, tf.int32)),
                     fn_output_signature=(tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.float32)))
