"""Reusable Keras layers: convolutional blocks and Transformer blocks.

Every layer passes `**kwargs` to its parent, keeps one attribute per init argument and has a
`get_config`, so models built from them save, reload and export.
"""

from __future__ import annotations

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="catalogue")
class ConvBlock(layers.Layer):
    """Conv2D -> BatchNorm -> activation.

    Args:
        filters: output channels.
        kernel_size: convolution window.
        strides: convolution stride (2 halves the resolution).
        activation: activation name.

    Example:
        >>> y = ConvBlock(32, strides=2)(keras.ops.zeros((1, 64, 64, 3)))  # (1, 32, 32, 32)
    """

    def __init__(self, filters, kernel_size=3, strides=1, activation="swish", **kwargs):
        super().__init__(**kwargs)
        if filters <= 0:
            raise ValueError(f"filters must be positive. Received: filters={filters}")
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.activation = activation
        self.conv = layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=False)
        # momentum 0.9: moving statistics settle within the few hundred steps of small-data runs.
        self.norm = layers.BatchNormalization(momentum=0.9)
        self.act = layers.Activation(activation)

    def call(self, x, training=None):
        return self.act(self.norm(self.conv(x), training=training))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "activation": self.activation}


@keras.saving.register_keras_serializable(package="catalogue")
class ResidualBlock(layers.Layer):
    """Two ConvBlocks with a shortcut (projected when the shape changes): a ResNet-style stage unit.

    Args:
        filters: output channels.
        strides: stride of the first convolution.
        activation: activation name.
    """

    def __init__(self, filters, strides=1, activation="swish", **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.strides = strides
        self.activation = activation
        self.block1 = ConvBlock(filters, 3, strides, activation)
        self.conv2 = layers.Conv2D(filters, 3, padding="same", use_bias=False)
        # Zero-initialised last norm: each block starts as the identity, which trains deep nets faster.
        self.norm2 = layers.BatchNormalization(momentum=0.9, gamma_initializer="zeros")
        self.project = None
        self.act = layers.Activation(activation)

    def build(self, input_shape):
        if input_shape[-1] != self.filters or self.strides != 1:
            self.project = keras.Sequential([
                layers.Conv2D(self.filters, 1, strides=self.strides, use_bias=False),
                layers.BatchNormalization(momentum=0.9),
            ])
        super().build(input_shape)

    def call(self, x, training=None):
        shortcut = x if self.project is None else self.project(x, training=training)
        y = self.norm2(self.conv2(self.block1(x, training=training)), training=training)
        return self.act(y + shortcut)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "strides": self.strides,
                "activation": self.activation}


def classifier_head(x, num_classes: int, dropout: float):
    """Features -> class probabilities: dropout, then a softmax Dense named "probabilities".

    The softmax runs in float32 even under mixed precision, so scores and the loss stay exact.

    Example:
        >>> probabilities = classifier_head(features, num_classes=10, dropout=0.2)
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2. Received: num_classes={num_classes}")
    x = layers.Dropout(dropout)(x)
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name="probabilities")(x)


@keras.saving.register_keras_serializable(package="catalogue")
class PositionalEmbedding(layers.Layer):
    """Token embedding plus a learned position embedding; token id 0 is padding and is masked.

    Args:
        vocab_size: number of token ids (0 = padding).
        max_length: longest sequence the position table covers.
        dim: embedding width.

    Example:
        >>> emb = PositionalEmbedding(1000, 64, 128)
        >>> emb(keras.ops.ones((2, 10), "int32")).shape  # (2, 10, 128)
    """

    def __init__(self, vocab_size, max_length, dim, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.max_length = max_length
        self.dim = dim
        self.tokens = layers.Embedding(vocab_size, dim)
        self.positions = layers.Embedding(max_length, dim)
        self.supports_masking = True

    def call(self, token_ids):
        length = ops.shape(token_ids)[-1]
        positions = ops.arange(0, length, dtype="int32")
        # Scaling by sqrt(dim) keeps token embeddings on the scale of the position embeddings.
        scale = ops.cast(ops.sqrt(float(self.dim)), self.compute_dtype)
        return self.tokens(token_ids) * scale + self.positions(positions)[None]

    def compute_mask(self, token_ids, mask=None):
        return ops.not_equal(token_ids, 0)

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size,
                "max_length": self.max_length, "dim": self.dim}


@keras.saving.register_keras_serializable(package="catalogue")
class TransformerEncoderBlock(layers.Layer):
    """Pre-norm Transformer encoder block: self-attention and a feed-forward net, each residual.

    Args:
        dim: model width.
        num_heads: attention heads.
        ff_dim: hidden width of the feed-forward net.
        dropout: dropout rate.
    """

    def __init__(self, dim, num_heads, ff_dim, dropout=0.1, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.num_heads = num_heads
        self.ff_dim = ff_dim
        self.dropout = dropout
        self.norm1 = layers.LayerNormalization(epsilon=1e-5)
        self.attention = layers.MultiHeadAttention(num_heads, dim // num_heads, dropout=dropout)
        self.norm2 = layers.LayerNormalization(epsilon=1e-5)
        self.ff = keras.Sequential([layers.Dense(ff_dim, activation="gelu"), layers.Dense(dim)])
        self.drop = layers.Dropout(dropout)
        self.supports_masking = True

    def call(self, x, mask=None, training=None):
        attention_mask = None if mask is None else ops.logical_and(mask[:, None, :], mask[:, :, None])
        h = self.norm1(x)
        x = x + self.drop(self.attention(h, h, attention_mask=attention_mask, training=training),
                          training=training)
        return x + self.drop(self.ff(self.norm2(x)), training=training)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "num_heads": self.num_heads,
                "ff_dim": self.ff_dim, "dropout": self.dropout}


@keras.saving.register_keras_serializable(package="catalogue")
class TransformerDecoderBlock(layers.Layer):
    """Pre-norm Transformer decoder block: causal self-attention, optional cross-attention, feed-forward.

    Call with `decoder_block(x)` for a decoder-only (GPT-style) model, or
    `decoder_block(x, context)` to attend over encoder outputs (captioning, translation).

    Args:
        dim: model width.
        num_heads: attention heads.
        ff_dim: hidden width of the feed-forward net.
        dropout: dropout rate.
        cross_attention: whether the block attends over a `context` sequence.
    """

    def __init__(self, dim, num_heads, ff_dim, dropout=0.1, cross_attention=True, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.num_heads = num_heads
        self.ff_dim = ff_dim
        self.dropout = dropout
        self.cross_attention = cross_attention
        self.norm1 = layers.LayerNormalization(epsilon=1e-5)
        self.self_attention = layers.MultiHeadAttention(num_heads, dim // num_heads, dropout=dropout)
        if cross_attention:
            self.norm_cross = layers.LayerNormalization(epsilon=1e-5)
            self.cross = layers.MultiHeadAttention(num_heads, dim // num_heads, dropout=dropout)
        self.norm2 = layers.LayerNormalization(epsilon=1e-5)
        self.ff = keras.Sequential([layers.Dense(ff_dim, activation="gelu"), layers.Dense(dim)])
        self.drop = layers.Dropout(dropout)
        self.supports_masking = True

    def call(self, x, context=None, mask=None, context_mask=None, training=None):
        h = self.norm1(x)
        # Padding sits at the end of sequences, so the causal mask alone keeps real tokens from
        # attending to padding; padded positions are excluded from the loss by the caller.
        x = x + self.drop(self.self_attention(h, h, use_causal_mask=True, training=training),
                          training=training)
        if self.cross_attention:
            if context is None:
                raise ValueError("This decoder block was built with cross_attention=True and needs a context.")
            cross_mask = None if context_mask is None else ops.broadcast_to(
                context_mask[:, None, :], (ops.shape(x)[0], ops.shape(x)[1], ops.shape(context)[1]))
            h = self.norm_cross(x)
            x = x + self.drop(self.cross(h, context, attention_mask=cross_mask, training=training),
                              training=training)
        return x + self.drop(self.ff(self.norm2(x)), training=training)

    def compute_mask(self, x, context=None, mask=None, context_mask=None):
        return mask

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "num_heads": self.num_heads,
                "ff_dim": self.ff_dim, "dropout": self.dropout, "cross_attention": self.cross_attention}
