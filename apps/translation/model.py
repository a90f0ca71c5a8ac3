"""An encoder-decoder Transformer for translation, built from the core Transformer blocks.

    source ids [B, S] -> PositionalEmbedding -> N x TransformerEncoderBlock -> LayerNorm = context
    target ids [B, T] -> PositionalEmbedding -> M x TransformerDecoderBlock(context) -> LayerNorm
                      -> logits over the target vocabulary [B, T, V] (float32)

Training calls the model on whole sequences (teacher forcing). Decoding calls `decode_step` one token
at a time with a key/value cache, so a step costs one position instead of the whole prefix; it reuses
the very sub-layers the blocks train, and a test checks that both paths give the same logits.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from core.layers import PositionalEmbedding, TransformerDecoderBlock, TransformerEncoderBlock

NEGATIVE = -1e9  # additive mask; large but finite so a fully masked row is uniform, not NaN


@keras.saving.register_keras_serializable(package="catalogue")
class Translator(keras.Model):
    """Encoder-decoder Transformer over token ids (0 = padding).

    Args:
        source_vocab_size, target_vocab_size: id ranges of the two tokenizers.
        max_length: longest source or target sequence (size of the position tables and decode cache).
        dim, num_heads, ff_dim: width, attention heads and feed-forward width of every block.
        encoder_layers, decoder_layers: block counts.
        dropout: dropout rate inside blocks and after the embeddings.
        shared_embeddings: one embedding table for both languages (needs a shared vocabulary).
        tie_output: the output projection reuses the target embedding table (fewer parameters).

    Example:
        >>> m = Translator(1000, 1200, max_length=32, dim=64, num_heads=4, ff_dim=128)
        >>> m({"source": ops.ones((2, 7), "int32"), "target_in": ops.ones((2, 5), "int32")}).shape
        (2, 5, 1200)
    """

    def __init__(self, source_vocab_size, target_vocab_size, max_length, dim=256, num_heads=4, ff_dim=1024,
                 encoder_layers=3, decoder_layers=3, dropout=0.1, shared_embeddings=False, tie_output=True,
                 **kwargs):
        super().__init__(**kwargs)
        if dim % num_heads:
            raise ValueError(f"dim must be divisible by num_heads. Received: dim={dim}, num_heads={num_heads}")
        if shared_embeddings and source_vocab_size != target_vocab_size:
            raise ValueError("shared_embeddings needs one vocabulary for both languages. Received: "
                             f"source_vocab_size={source_vocab_size}, target_vocab_size={target_vocab_size}")
        self.source_vocab_size = source_vocab_size
        self.target_vocab_size = target_vocab_size
        self.max_length = max_length
        self.dim = dim
        self.num_heads = num_heads
        self.ff_dim = ff_dim
        self.encoder_layers = encoder_layers
        self.decoder_layers = decoder_layers
        self.dropout = dropout
        self.shared_embeddings = shared_embeddings
        self.tie_output = tie_output

        self.source_embedding = PositionalEmbedding(source_vocab_size, max_length, dim, name="source_embedding")
        self.target_embedding = (self.source_embedding if shared_embeddings else
                                 PositionalEmbedding(target_vocab_size, max_length, dim, name="target_embedding"))
        self.embedding_dropout = layers.Dropout(dropout)
        self.encoder = [TransformerEncoderBlock(dim, num_heads, ff_dim, dropout, name=f"encoder_{i}")
                        for i in range(encoder_layers)]
        self.encoder_norm = layers.LayerNormalization(epsilon=1e-5, name="encoder_norm")
        self.decoder = [TransformerDecoderBlock(dim, num_heads, ff_dim, dropout, name=f"decoder_{i}")
                        for i in range(decoder_layers)]
        self.decoder_norm = layers.LayerNormalization(epsilon=1e-5, name="decoder_norm")
        self.projection = None if tie_output else layers.Dense(target_vocab_size, name="projection")

    def build(self, input_shape=None):
        if self.tie_output:
            self.output_bias = self.add_weight(shape=(self.target_vocab_size,), initializer="zeros",
                                               name="output_bias")
        super().build(input_shape)

    # Teacher-forced path (training and scoring) -------------------------------------------------

    def encode(self, source_ids, training=None):
        """Source ids [B, S] -> (context [B, S, dim], mask [B, S])."""
        return encode(self, source_ids, training)

    def logits(self, hidden):
        if self.projection is not None:
            return ops.cast(self.projection(hidden), "float32")
        table = ops.cast(self.target_embedding.tokens.embeddings, hidden.dtype)
        return ops.cast(ops.matmul(hidden, ops.transpose(table)), "float32") + self.output_bias

    def decode(self, target_in, context, context_mask, training=None):
        """Target ids so far [B, T] -> next-token logits at every position [B, T, V]."""
        x = self.embedding_dropout(self.target_embedding(target_in), training=training)
        for block in self.decoder:
            x = block(x, context, context_mask=context_mask, training=training)
        return self.logits(self.decoder_norm(x))

    def call(self, inputs, training=None):
        context, mask = self.encode(inputs["source"], training=training)
        return self.decode(inputs["target_in"], context, mask, training=training)

    # Incremental path (decoding) ----------------------------------------------------------------

    def cross_cache(self, context):
        """Per decoder block, the projected keys and values of the context: computed once per input."""
        context = ops.copy(context)  # a fresh tensor without the Keras mask, which Dense layers would warn about
        return tuple((block.cross.key_dense(context), block.cross.value_dense(context)) for block in self.decoder)

    def empty_cache(self, batch_size):
        """Per decoder block, zeroed self-attention keys and values [B, max_length, heads, head_dim]."""
        shape = (batch_size, self.max_length, self.num_heads, self.dim // self.num_heads)
        return tuple((ops.zeros(shape, self.compute_dtype), ops.zeros(shape, self.compute_dtype))
                     for _ in self.decoder)

    def decode_step(self, token, step, cache, cross, context_mask):
        """One decoding step: token ids [B] at position `step` -> (logits [B, V], updated cache)."""
        emb = self.target_embedding
        scale = ops.cast(ops.sqrt(float(self.dim)), emb.compute_dtype)
        x = emb.tokens(token[:, None]) * scale + emb.positions(ops.reshape(step, (1,)))[None]
        here = ops.one_hot(step, self.max_length, dtype=x.dtype)[None, :, None, None]
        seen = ops.arange(self.max_length)[None, None, :] <= step  # [1, 1, L]
        new_cache = []
        for block, (keys, values), (cross_keys, cross_values) in zip(self.decoder, cache, cross):
            h = block.norm1(x)
            attention = block.self_attention
            # Each position is written once, so adding the one-hot slice is an in-place write.
            keys = keys + attention.key_dense(h) * here
            values = values + attention.value_dense(h) * here
            new_cache.append((keys, values))
            x = x + _attend(attention, attention.query_dense(h), keys, values, seen)
            h = block.norm_cross(x)
            x = x + _attend(block.cross, block.cross.query_dense(h), cross_keys, cross_values,
                            context_mask[:, None, :])
            x = x + block.ff(block.norm2(x))
        return self.logits(self.decoder_norm(x))[:, 0], tuple(new_cache)

    def get_config(self):
        return {**super().get_config(), "source_vocab_size": self.source_vocab_size,
                "target_vocab_size": self.target_vocab_size, "max_length": self.max_length, "dim": self.dim,
                "num_heads": self.num_heads, "ff_dim": self.ff_dim, "encoder_layers": self.encoder_layers,
                "decoder_layers": self.decoder_layers, "dropout": self.dropout,
                "shared_embeddings": self.shared_embeddings, "tie_output": self.tie_output}


def encode(owner, source_ids, training=None):
    """The encoder's pass, shared by Translator and SentenceEncoder (which hold the same layers)."""
    mask = ops.not_equal(source_ids, 0)
    x = owner.embedding_dropout(owner.source_embedding(source_ids), training=training)
    for block in owner.encoder:
        x = block(x, mask=mask, training=training)
    return owner.encoder_norm(x), mask


class SentenceEncoder(keras.Model):
    """A trained translator's encoder as a sentence embedding, the module `catalogue export translation
    --hub` publishes: source ids [B, S] -> [B, dim], the encoder's outputs averaged over the real
    (non-padding) tokens. It holds the translator's encoder layers only, so it carries no decoder weights.
    """

    def __init__(self, translator: Translator, **kwargs):
        super().__init__(**kwargs)
        self.source_embedding = translator.source_embedding
        self.embedding_dropout = translator.embedding_dropout
        self.encoder = list(translator.encoder)
        self.encoder_norm = translator.encoder_norm

    def call(self, source_ids, training=None):
        context, mask = encode(self, source_ids, training)
        weights = ops.cast(mask, context.dtype)[..., None]
        return ops.sum(context * weights, axis=1) / ops.maximum(ops.sum(weights, axis=1), 1.0)


def _attend(attention, query, keys, values, mask):
    """Scaled dot-product attention of projected [B, 1, H, D] queries, then the layer's output projection."""
    depth = ops.cast(ops.shape(query)[-1], query.dtype)
    scores = ops.einsum("bqhd,bkhd->bhqk", query / ops.sqrt(depth), keys)
    # Softmax in float32: NEGATIVE would overflow to -inf in float16 and a fully masked row to NaN.
    scores = ops.where(mask[:, None], ops.cast(scores, "float32"), NEGATIVE)
    weights = ops.cast(ops.softmax(scores, axis=-1), values.dtype)
    return attention.output_dense(ops.einsum("bhqk,bkhd->bqhd", weights, values))


def build_model(config, source_vocab_size: int, target_vocab_size: int) -> Translator:
    """The Translator for `config`, built (weights created) so it can load weights or be exported."""
    model = Translator(source_vocab_size, target_vocab_size, max_length=config.max_length, dim=config.dim,
                       num_heads=config.num_heads, ff_dim=config.ff_dim, encoder_layers=config.encoder_layers,
                       decoder_layers=config.decoder_layers, dropout=config.dropout,
                       shared_embeddings=config.shared_vocab, tie_output=config.tie_output, name="translator")
    model({"source": ops.ones((1, 2), "int32"), "target_in": ops.ones((1, 2), "int32")})
    return model
