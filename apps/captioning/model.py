"""Image encoder (compact CNN, keras.applications or TF Hub) -> Transformer decoder with causal self-attention
and cross-attention.

    images [N, S, S, 3] (float32, 0..255) --encoder--> image tokens [N, T, dim]
    tokens [N, L] (int, 0 = padding)      --decoder--> next-token logits [N, L, vocabulary]

The training model joins the two (`images`, `tokens` in; logits out) and keeps them as the nested
models "encoder" and "decoder", so that decoding runs the encoder once per image and the decoder
once per generated token.
"""

from __future__ import annotations

import keras
from keras import layers

from core.backbones import backbone_features
from core.layers import ConvBlock, PositionalEmbedding, ResidualBlock, TransformerDecoderBlock, TransformerEncoderBlock


@keras.saving.register_keras_serializable(package="captioning")
class GridPositions(layers.Layer):
    """Adds a learned vector per feature-map cell, so cross-attention knows where a feature sits.

    Input and output: [N, T, dim] for a fixed number of cells T. Convolutions alone only hint at
    position (through padding); "left of" and "above" need it explicitly.
    """

    def build(self, input_shape):
        self.table = self.add_weight(name="table", shape=tuple(input_shape[1:]),
                                     initializer=keras.initializers.RandomNormal(stddev=0.02))
        super().build(input_shape)

    def call(self, x):
        return x + keras.ops.cast(self.table, x.dtype)[None]


def build_encoder(config) -> keras.Model:
    images = keras.Input((config.image_size, config.image_size, 3), name="images")
    if config.backbone:  # frozen: the projection and the decoder learn
        x = backbone_features(config.backbone, images, config.image_size, config.weights)
    else:
        x = layers.Rescaling(1.0 / 255)(images)
        x = ConvBlock(config.width, strides=2)(x)
        for stage in range(config.stages):
            x = ResidualBlock(config.width * 2 ** stage, strides=1 if stage == 0 else 2)(x)
    # A feature map gives one token per cell; a feature vector (a hub feature-vector module) one token.
    x = layers.Reshape((-1, x.shape[-1]))(x)
    x = GridPositions()(layers.Dense(config.dim)(x))
    for _ in range(config.encoder_layers):
        x = TransformerEncoderBlock(config.dim, config.num_heads, config.ff_dim, config.dropout)(x)
    features = layers.LayerNormalization(epsilon=1e-5)(x)
    return keras.Model(images, features, name="encoder")


def build_decoder(config, vocabulary_size: int, max_length: int, num_image_tokens: int) -> keras.Model:
    features = keras.Input((num_image_tokens, config.dim), name="features")
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    x = PositionalEmbedding(vocabulary_size, max_length, config.dim)(tokens)
    x = layers.Dropout(config.dropout)(x)
    for _ in range(config.decoder_layers):
        x = TransformerDecoderBlock(config.dim, config.num_heads, config.ff_dim, config.dropout)(x, features)
    x = layers.LayerNormalization(epsilon=1e-5)(x)
    logits = layers.Dense(vocabulary_size, dtype="float32", name="logits")(x)
    return keras.Model([features, tokens], logits, name="decoder")


def build_model(config, vocabulary_size: int, max_length: int) -> keras.Model:
    """(images, tokens) -> next-token logits; sub-models "encoder" and "decoder" for decoding."""
    if vocabulary_size < 4 + config.beam_width:
        raise ValueError("vocabulary_size must leave beam_width words besides padding, [UNK], [start] "
                         f"and [end]. Received: vocabulary_size={vocabulary_size}, "
                         f"beam_width={config.beam_width}")
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2. Received: max_length={max_length}")
    if config.dim % config.num_heads:
        raise ValueError(f"dim must be a multiple of num_heads. Received: dim={config.dim}, "
                         f"num_heads={config.num_heads}")
    encoder = build_encoder(config)
    decoder = build_decoder(config, vocabulary_size, max_length, encoder.output.shape[1])
    images = keras.Input((config.image_size, config.image_size, 3), name="images")
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    logits = decoder([encoder(images), tokens])
    return keras.Model({"images": images, "tokens": tokens}, logits, name="captioner")
