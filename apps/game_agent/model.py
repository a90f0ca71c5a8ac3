"""The policy/value network: a small residual tower over the board planes (AlphaZero's, scaled down).

planes [N, rows, cols, 2] (the side to move's stones, the opponent's) ->
    policy: logits [N, num_actions]; value: [N] in [-1, 1] for the side to move.
"""

from __future__ import annotations

import keras
from keras import layers


def conv_bn(x, filters: int, kernel: int, l2: float, name: str, relu: bool = True):
    x = layers.Conv2D(filters, kernel, padding="same", use_bias=False,
                      kernel_regularizer=keras.regularizers.L2(l2), name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def build_model(config, rows: int, cols: int, num_actions: int) -> keras.Model:
    l2 = config.weight_decay
    planes = keras.Input((rows, cols, 2), name="planes")
    x = conv_bn(planes, config.filters, 3, l2, "stem")
    for i in range(config.blocks):
        skip = x
        x = conv_bn(x, config.filters, 3, l2, f"block{i}_a")
        x = conv_bn(x, config.filters, 3, l2, f"block{i}_b", relu=False)
        x = layers.ReLU(name=f"block{i}_out")(layers.Add(name=f"block{i}_add")([skip, x]))

    p = conv_bn(x, 4, 1, l2, "policy")
    p = layers.Flatten(name="policy_flat")(p)
    policy = layers.Dense(num_actions, kernel_regularizer=keras.regularizers.L2(l2), name="policy")(p)

    v = conv_bn(x, 2, 1, l2, "value")
    v = layers.Flatten(name="value_flat")(v)
    v = layers.Dense(config.value_hidden, activation="relu", kernel_regularizer=keras.regularizers.L2(l2),
                     name="value_hidden")(v)
    v = layers.Dense(1, activation="tanh", name="value_out")(v)
    value = layers.Reshape((), name="value")(v)
    return keras.Model(planes, {"policy": policy, "value": value}, name="policy_value_net")
