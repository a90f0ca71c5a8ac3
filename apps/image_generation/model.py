"""A class-conditional DCGAN trained with the non-saturating loss, R1, DiffAugment, an auxiliary class loss and an
EMA generator.

Images live in [-1, 1] inside the model. The generator maps (noise [N, latent], class id [N]) to
images [N, S, S, 3]; the discriminator scores (image, class id) with a projection head (Miyato & Koyama
2018): score = w.h + embed(class).h, so the class steers every score without being concatenated to
pixels, and a classifier head (AC-GAN) whose loss asks the generator for images of the class it was given.
`ConditionalGAN` bundles both, the generator's moving average (what samples and is served) and
the judge: the image_classification app's compact CNN, trained on the same data before the GAN, whose
features give the validation KID that picks the best epoch.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

CLUSTERS = 10  # classes of the unconditional judge: k-means clusters of the training images
UNCONDITIONAL_CLASSES = [""]  # the one class of an unconditional model: the empty label


def conditional_batch_norm(x, embedded, channels: int):
    """BatchNorm whose scale and shift depend on the class (de Vries et al. 2017): the class steers every
    stage of the generator, not only its input."""
    x = layers.BatchNormalization(center=False, scale=False)(x)
    gamma = layers.Reshape((1, 1, channels))(layers.Dense(channels, kernel_initializer="zeros")(embedded))
    beta = layers.Reshape((1, 1, channels))(layers.Dense(channels, kernel_initializer="zeros")(embedded))
    return layers.ReLU()(x * (1.0 + gamma) + beta)


def build_generator(config, num_classes: int, name: str = "generator") -> keras.Model:
    """(noise [N, latent], class id [N]) -> images [N, S, S, 3] in [-1, 1]: 4x4, then upsample + conv."""
    noise = keras.Input((config.latent_dim,), name="noise")
    label = keras.Input((), dtype="int32", name="label")
    embedded = layers.Embedding(num_classes, config.latent_dim, name="class_embedding")(label)
    x = layers.Concatenate()([noise, embedded])
    channels = config.width
    x = layers.Dense(4 * 4 * channels, use_bias=False)(x)
    x = layers.Reshape((4, 4, channels))(x)
    x = conditional_batch_norm(x, embedded, channels)
    size = 4
    while size < config.image_size:
        channels = max(channels // 2, 16)
        x = layers.UpSampling2D(2)(x)
        x = layers.Conv2D(channels, 3, padding="same", use_bias=False)(x)
        x = conditional_batch_norm(x, embedded, channels)
        size *= 2
    images = layers.Conv2D(3, 3, padding="same", activation="tanh", dtype="float32", name="rgb")(x)
    return keras.Model([noise, label], images, name=name)


def build_discriminator(config, num_classes: int, classify: bool = True) -> keras.Model:
    """(images [N, S, S, 3] in [-1, 1], class id [N]) -> (one realness logit per image [N], class logits
    [N, classes]: the auxiliary classifier of AC-GAN, Odena et al. 2017, trainable when `classify`).

    No normalisation layers: R1 regularises it, and batch statistics would let real and generated
    batches tell each other apart.
    """
    images = keras.Input((config.image_size, config.image_size, 3), name="images")
    label = keras.Input((), dtype="int32", name="label")
    channels = config.d_width
    x = layers.LeakyReLU(0.2)(layers.Conv2D(channels, 3, padding="same")(images))
    size = config.image_size
    while size > 4:
        channels = min(channels * 2, 512)
        x = layers.LeakyReLU(0.2)(layers.Conv2D(channels, 4, strides=2, padding="same")(x))
        size //= 2
    h = layers.LeakyReLU(0.2)(layers.Dense(channels)(layers.Flatten()(x)))
    unconditional = layers.Dense(1)(h)[:, 0]
    projection = layers.Embedding(num_classes, channels, name="class_projection")(label)
    score = unconditional + keras.ops.sum(projection * h, axis=-1)
    class_logits = layers.Dense(num_classes, trainable=classify, name="class_logits")(h)
    float32 = lambda t: layers.Activation("linear", dtype="float32")(t)  # noqa: E731 - under mixed precision
    return keras.Model([images, label], [float32(score), float32(class_logits)], name="discriminator")


def diff_augment(images: tf.Tensor, policies: list[str]) -> tf.Tensor:
    """DiffAugment (Zhao et al. 2020): random, differentiable changes applied to real and fake alike, so
    a discriminator on a small data set cannot memorise it and the generator still learns the clean
    distribution. Images in [-1, 1], [N, S, S, C]."""
    n = tf.shape(images)[0]
    if "color" in policies:
        images = images + tf.random.uniform([n, 1, 1, 1], -0.5, 0.5)
        mean = tf.reduce_mean(images, axis=3, keepdims=True)
        images = (images - mean) * tf.random.uniform([n, 1, 1, 1], 0.0, 2.0) + mean
        mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
        images = (images - mean) * tf.random.uniform([n, 1, 1, 1], 0.5, 1.5) + mean
    if "translation" in policies:
        size = images.shape[1]
        pad = max(size // 8, 1)
        padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        shift = tf.random.uniform([n, 2], 0, 2 * pad + 1, dtype=tf.int32)
        rows = tf.range(size)[None, :] + shift[:, :1]
        cols = tf.range(size)[None, :] + shift[:, 1:]
        images = tf.gather(tf.gather(padded, rows, axis=1, batch_dims=1), cols, axis=2, batch_dims=1)
    if "cutout" in policies:
        size = images.shape[1]
        half = size // 4  # a square of half the side
        centre = tf.random.uniform([n, 2], 0, size, dtype=tf.int32)
        grid = tf.range(size)[None, :]
        inside_rows = tf.abs(grid - centre[:, :1]) < half
        inside_cols = tf.abs(grid - centre[:, 1:]) < half
        keep = 1.0 - tf.cast(inside_rows[:, :, None] & inside_cols[:, None, :], images.dtype)
        images = images * keep[..., None]
    return images


def kernel_inception_distance(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """Unbiased squared MMD with the cubic polynomial kernel (Binkowski et al. 2018) of two feature sets."""
    a, b = tf.cast(a, tf.float32), tf.cast(b, tf.float32)
    dims = tf.cast(tf.shape(a)[1], tf.float32)
    n, m = tf.cast(tf.shape(a)[0], tf.float32), tf.cast(tf.shape(b)[0], tf.float32)
    k_aa = (tf.matmul(a, a, transpose_b=True) / dims + 1.0) ** 3
    k_bb = (tf.matmul(b, b, transpose_b=True) / dims + 1.0) ** 3
    k_ab = (tf.matmul(a, b, transpose_b=True) / dims + 1.0) ** 3
    same_a = (tf.reduce_sum(k_aa) - tf.linalg.trace(k_aa)) / (n * (n - 1.0))
    same_b = (tf.reduce_sum(k_bb) - tf.linalg.trace(k_bb)) / (m * (m - 1.0))
    return same_a + same_b - 2.0 * tf.reduce_mean(k_ab)


class ConditionalGAN(keras.Model):
    """Generator, discriminator, the generator's moving average and the judge, with their training step.

    Args:
        generator, discriminator, ema_generator: as built above (ema_generator a second generator).
        judge: a classifier of images in 0..255 with a nested "features" model and a "probabilities"
            layer (apps.image_classification.model.build_model); frozen here.
        latent_dim: noise length; r1_gamma: R1 weight; ema: moving-average decay;
        augmentations: DiffAugment policies; class_weight: weight of the auxiliary classification loss.

    Example:
        >>> gan = build_model(config, num_classes=10)
        >>> gan.compile(keras.optimizers.Adam(1e-3, 0.5), keras.optimizers.Adam(1e-3, 0.5))
        >>> gan.fit(tf.data.Dataset of (images in [-1, 1], int labels), validation_data=...)
    """

    def __init__(self, generator, discriminator, ema_generator, judge, latent_dim: int, r1_gamma: float,
                 ema: float, augmentations=(), conditional: bool = True, class_weight: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.ema_generator = ema_generator
        self.judge = judge
        self.latent_dim = latent_dim
        self.r1_gamma = r1_gamma
        self.ema = ema
        self.augmentations = list(augmentations)
        self.class_weight = class_weight
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.r1_tracker = keras.metrics.Mean(name="r1")
        self.kid_tracker = keras.metrics.Mean(name="kid")
        self.conditional = conditional  # without classes, there is no class accuracy of samples to track
        self.accuracy_tracker = keras.metrics.Mean(name="class_accuracy")
        self.d_optimizer = None
        self.built = True  # every part above is a built functional model

    @property
    def metrics(self):
        return [self.d_loss_tracker, self.g_loss_tracker, self.r1_tracker, self.kid_tracker,
                *([self.accuracy_tracker] if self.conditional else [])]

    def call(self, inputs, training=False):
        """(noise, class ids) -> images in [-1, 1] from the moving-average generator."""
        return self.ema_generator(inputs, training=False)

    def judge_outputs(self, images):
        """Images in [-1, 1] -> (judge features, class probabilities)."""
        pixels = (tf.cast(images, tf.float32) + 1.0) * 127.5
        features = self.judge.get_layer("features")(pixels, training=False)
        return features, self.judge.get_layer("probabilities")(features)

    def compile(self, g_optimizer, d_optimizer, **kwargs):
        """The generator's optimizer is `self.optimizer` (fit's step counter); both are built here so that
        BackupAndRestore restores their state."""
        super().compile(optimizer=g_optimizer, **kwargs)
        self.d_optimizer = d_optimizer
        g_optimizer.build(self.generator.trainable_variables)
        d_optimizer.build(self.discriminator.trainable_variables)

    def _augment(self, images):
        return diff_augment(images, self.augmentations) if self.augmentations else images

    def _class_loss(self, labels, logits):
        if not self.class_weight:
            return tf.constant(0.0)
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))

    def train_step(self, data):
        real, labels = data
        labels = tf.cast(labels, tf.int32)
        n = tf.shape(real)[0]
        # Each replica's losses are means over its share of the batch; the optimizers sum gradients
        # over replicas, so dividing by their number gives the gradient of the global mean.
        scale = 1.0 / tf.distribute.get_strategy().num_replicas_in_sync

        fake = self.generator([tf.random.normal([n, self.latent_dim]), labels], training=True)
        with tf.GradientTape() as tape:
            real_aug = self._augment(real)
            with tf.GradientTape() as r1_tape:
                r1_tape.watch(real_aug)
                real_logits, real_classes = self.discriminator([real_aug, labels], training=True)
                summed = tf.reduce_sum(real_logits)  # inside the tape, or it has no gradient
            gradients = r1_tape.gradient(summed, real_aug)
            r1 = tf.reduce_mean(tf.reduce_sum(tf.square(gradients), axis=[1, 2, 3]))
            fake_logits, _ = self.discriminator([self._augment(fake), labels], training=True)
            d_loss = tf.reduce_mean(tf.nn.softplus(-real_logits)) + tf.reduce_mean(tf.nn.softplus(fake_logits))
            # The classifier head learns the classes from real images only, so it cannot learn to accept
            # the generator's mistakes.
            d_class = self._class_loss(labels, real_classes)
            d_total = (d_loss + 0.5 * self.r1_gamma * r1 + self.class_weight * d_class) * scale
        d_vars = self.discriminator.trainable_variables
        self.d_optimizer.apply_gradients(zip(tape.gradient(d_total, d_vars), d_vars))

        with tf.GradientTape() as tape:
            fake = self.generator([tf.random.normal([n, self.latent_dim]), labels], training=True)
            fake_logits, fake_classes = self.discriminator([self._augment(fake), labels], training=True)
            g_loss = tf.reduce_mean(tf.nn.softplus(-fake_logits))  # non-saturating
            g_total = (g_loss + self.class_weight * self._class_loss(labels, fake_classes)) * scale
        g_vars = self.generator.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(g_total, g_vars), g_vars))

        # The decay warms up (as tf.train.ExponentialMovingAverage's num_updates) so that a short run's
        # average is not dominated by its first, random generators. BatchNorm statistics are averaged too:
        # the EMA copy runs in inference mode.
        step = tf.cast(self.optimizer.iterations, tf.float32)
        decay = tf.minimum(self.ema, (1.0 + step) / (10.0 + step))
        for weight, average in zip(self.generator.weights, self.ema_generator.weights):
            average.assign(decay * average + (1.0 - decay) * weight)

        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        self.r1_tracker.update_state(r1)
        return {m.name: m.result() for m in self.metrics[:3]}

    def test_step(self, data):
        """KID (judge features, this batch's real images vs. as many samples of the same classes) and
        the judge's accuracy on those samples."""
        real, labels = data
        labels = tf.cast(labels, tf.int32)
        fake = self.ema_generator([tf.random.normal([tf.shape(real)[0], self.latent_dim]), labels],
                                  training=False)
        real_features, _ = self.judge_outputs(real)
        fake_features, probabilities = self.judge_outputs(fake)
        self.kid_tracker.update_state(kernel_inception_distance(real_features, fake_features))
        if self.conditional:
            correct = tf.equal(tf.argmax(probabilities, axis=-1, output_type=tf.int32), labels)
            self.accuracy_tracker.update_state(tf.reduce_mean(tf.cast(correct, tf.float32)))
        return {m.name: m.result() for m in self.metrics[3:]}


def build_model(config, num_classes: int) -> ConditionalGAN:
    """The untrained GAN for `config` and `num_classes`, built, the EMA copy equal to the generator.

    Conditional models need at least 2 classes (the judge classifies them); an unconditional one has one
    class, and its judge learns CLUSTERS pseudo-classes instead (metrics.pseudo_classes).
    """
    from apps.image_classification import Config as JudgeConfig
    from apps.image_classification.model import build_model as build_classifier

    if config.conditional and num_classes < 2:
        raise ValueError(f"A conditional GAN needs at least 2 classes (the judge classifies them); set "
                         f"conditional=false for unlabeled images. Received: num_classes={num_classes}")
    if not config.conditional and num_classes != 1:
        raise ValueError(f"An unconditional GAN has one class. Received: num_classes={num_classes}")
    generator = build_generator(config, num_classes)
    ema_generator = build_generator(config, num_classes, name="ema_generator")
    ema_generator.set_weights(generator.get_weights())
    judge_config = JudgeConfig(image_size=config.image_size, width=config.judge_width, depth=config.judge_depth,
                               augment=False, seed=config.seed)
    judge = build_classifier(judge_config, num_classes if config.conditional else CLUSTERS)
    judge.trainable = False
    # One class has nothing to classify; an untrained head stays frozen, so every trainable weight gets a gradient.
    class_weight = config.class_weight if config.conditional else 0.0
    gan = ConditionalGAN(generator, build_discriminator(config, num_classes, classify=class_weight > 0),
                         ema_generator, judge, config.latent_dim, config.r1_gamma, config.ema,
                         config.augmentations(), conditional=config.conditional, class_weight=class_weight,
                         name="gan")
    return gan
