"""Caption text, the same in training and serving: standardization, markers, vocabulary, token ids."""

from __future__ import annotations

from collections import Counter

import keras
import tensorflow as tf


def standardize(text: tf.Tensor) -> tf.Tensor:
    """Lower case, punctuation to spaces, single spaces: how captions are compared and tokenized."""
    text = tf.strings.lower(text, encoding="utf-8")
    text = tf.strings.regex_replace(text, r"[[:punct:]]", " ")
    text = tf.strings.regex_replace(text, r"\s+", " ")
    return tf.strings.strip(text)


START, END = "[start]", "[end]"  # survive standardization: it runs before they are added


def with_markers(captions: tf.Tensor) -> tf.Tensor:
    """The decoder's view of a caption: "[start] standardized words [end]"."""
    return tf.strings.join([START + " ", standardize(captions), " " + END])


def make_vectorizer(vocabulary: list[str], length: int) -> keras.layers.TextVectorization:
    """Marked captions -> int64 ids [N, length + 1] (decoder input [:, :-1], target [:, 1:]), in the graph."""
    vectorizer = keras.layers.TextVectorization(
        standardize=None, split="whitespace", output_sequence_length=length + 1, vocabulary=vocabulary)
    vectorizer(tf.constant([START]))  # lookup layers must be built before an export tracks them
    return vectorizer


def standardize_list(captions) -> list[str]:
    """Python strings through the same in-graph standardization."""
    if len(captions) == 0:
        return []
    return [c.decode("utf-8") for c in standardize(tf.constant(list(captions))).numpy()]


def learn_vocabulary(standardized: list[str], max_words: int) -> list[str]:
    """"", [UNK], then the most frequent words of the standardized training captions (ties by spelling).

    Counted here rather than by TextVectorization.adapt so that equal counts always order the same
    way: token ids must not change between the run that trained the weights and a later reload.
    """
    counts = Counter(word for caption in standardized for word in caption.split())
    frequent = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:max(0, max_words - 4)]
    return ["", "[UNK]", START, END] + [word for word, _ in frequent]
