"""Sample-quality measures in a classifier's feature space, and the per-class Gaussian-in-PCA baseline.

Inception weights cannot be downloaded here, so FID and KID are measured in the feature space of the
judge (the image_classification app's compact CNN trained on the same data): numbers compare models on
one data set and judge, not with published FIDs.
"""

from __future__ import annotations

import numpy as np


def kid(a: np.ndarray, b: np.ndarray) -> float:
    """Unbiased squared MMD with the kernel (a.b / d + 1)^3 (Binkowski et al. 2018)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d = a.shape[1]
    k_aa, k_bb, k_ab = ((x @ y.T / d + 1.0) ** 3 for x, y in ((a, a), (b, b), (a, b)))
    n, m = len(a), len(b)
    return float((k_aa.sum() - np.trace(k_aa)) / (n * (n - 1)) + (k_bb.sum() - np.trace(k_bb)) / (m * (m - 1))
                 - 2.0 * k_ab.mean())


def fid(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets."""
    from scipy import linalg

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root, _ = linalg.sqrtm(cov_a @ cov_b, disp=False)
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2.0 * np.real(root)))


def two_sample_accuracy(real: np.ndarray, generated: np.ndarray, seed: int = 0) -> float:
    """Held-out accuracy of a linear classifier (shrinkage LDA) telling real from generated features, by
    5-fold cross validation on balanced sets: 0.5 means indistinguishable to it."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    n = min(len(real), len(generated))
    x = np.concatenate([real[:n], generated[:n]])
    y = np.concatenate([np.ones(n), np.zeros(n)])
    # Closed form: logistic regression took seconds per fold on separable features.
    classifier = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    return float(np.mean(cross_val_score(classifier, x, y, cv=folds)))


def nearest_distances(queries: np.ndarray, references: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Euclidean distance (pixels scaled to [0, 1], per pixel RMS) from each query to its nearest reference."""
    q = queries.reshape(len(queries), -1).astype(np.float64) / 255.0
    r = references.reshape(len(references), -1).astype(np.float64) / 255.0
    r_norms = (r ** 2).sum(1)
    out = []
    for start in range(0, len(q), chunk):
        block = q[start:start + chunk]
        squared = (block ** 2).sum(1)[:, None] + r_norms[None, :] - 2.0 * block @ r.T
        out.append(np.sqrt(np.maximum(squared.min(1), 0.0) / q.shape[1]))
    return np.concatenate(out)


def training_nearest_fraction(queries: np.ndarray, train: np.ndarray, held_out: np.ndarray) -> dict[str, float]:
    """How often a query's nearest image among train + held_out is a training image, against chance.

    Images the model never saw (held_out) and those it trained on come from one distribution: for samples
    that do not depend on which images were trained on, each of the pooled images is equally likely to be
    the nearest, so a training image is with probability len(train) / (len(train) + len(held_out)),
    however typical or blurry the samples are. Memorised samples sit nearer their training images and push
    the fraction above chance; `z` is the excess in binomial standard deviations.
    """
    nearer = nearest_distances(queries, train) < nearest_distances(queries, held_out)
    chance = len(train) / (len(train) + len(held_out))
    fraction = float(np.mean(nearer))
    return {"fraction": fraction, "chance": chance,
            "z": (fraction - chance) / np.sqrt(chance * (1.0 - chance) / max(len(queries), 1))}


def principal_axes(centred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(variances, unit axes as rows), largest first, from the eigenvectors of the smaller Gram matrix
    (an SVD of a 1,348 x 768 matrix took 13 s on a busy 2-core machine, this about one)."""
    n, d = centred.shape
    if n >= d:
        values, vectors = np.linalg.eigh(centred.T @ centred)
        axes = vectors.T
    else:
        values, vectors = np.linalg.eigh(centred @ centred.T)
        axes = (centred.T @ vectors).T / np.sqrt(np.maximum(values, 1e-12))[:, None]
    order = np.argsort(values)[::-1]
    keep = order[values[order] > 1e-9 * max(values.max(), 1e-12)]
    return values[keep], axes[keep]


class PcaGaussian:
    """The baseline generator: pixels projected on the principal components that explain `variance` of
    the training images, one full-covariance Gaussian of the coefficients per class, samples projected
    back. It knows every class's mean and correlations, but not what lies off a Gaussian."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, num_classes: int, variance: float = 0.95,
                 seed: int = 0):
        x = images.reshape(len(images), -1).astype(np.float64)
        self.shape = images.shape[1:]
        self.mean = x.mean(0)
        variances, self.basis = principal_axes(x - self.mean)
        explained = np.cumsum(variances) / np.sum(variances)
        smallest_class = min(int(np.sum(labels == c)) for c in range(num_classes))
        # A full covariance needs more examples of a class than components.
        self.components = int(min(np.searchsorted(explained, variance) + 1, max(smallest_class - 1, 1)))
        self.basis = self.basis[: self.components]
        self.classes = []
        for c in range(num_classes):
            coefficients = (x[labels == c] - self.mean) @ self.basis.T
            self.classes.append((coefficients.mean(0), np.cov(coefficients, rowvar=False)
                                 + 1e-6 * np.eye(self.components)))
        self.rng = np.random.default_rng(seed)

    def sample(self, labels: np.ndarray) -> np.ndarray:
        """uint8-range float images [N, *shape] of the given classes."""
        out = np.empty((len(labels), int(np.prod(self.shape))))
        for c in np.unique(labels):
            where = np.flatnonzero(labels == c)
            mean, cov = self.classes[c]
            coefficients = self.rng.multivariate_normal(mean, cov, size=len(where))
            out[where] = coefficients @ self.basis + self.mean
        return np.clip(out, 0.0, 255.0).reshape(len(labels), *self.shape).astype(np.float32)


def pseudo_classes(train: np.ndarray, others: list[np.ndarray], k: int, seed: int = 0) -> list[np.ndarray]:
    """k-means clusters of images [N, S, S, 3] in the PCA space of the training images' pixels (as
    DeepCluster, Caron et al. 2018): classes for an unlabeled set, so that the judge trained on them
    learns features that tell the data's main modes apart. Returns the cluster ids of `train`, then of
    each of `others`."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    flat = lambda x: np.asarray(x, np.float32).reshape(len(x), -1) / 255.0  # noqa: E731
    pca = PCA(n_components=min(32, len(train), flat(train).shape[1]), random_state=seed).fit(flat(train))
    kmeans = KMeans(n_clusters=min(k, len(train)), n_init=4, random_state=seed).fit(pca.transform(flat(train)))
    return [kmeans.labels_.astype(np.int32)] + [kmeans.predict(pca.transform(flat(x))).astype(np.int32)
                                                 for x in others]
