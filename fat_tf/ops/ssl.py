"""Building blocks of the semi-supervised methods, for multi-label (sigmoid) outputs.

Every class is its own Bernoulli: divergences are per-class binary and summed over
classes, and sharpening acts on each class probability separately.
"""

from __future__ import annotations

import tensorflow as tf


def sharpen(probabilities: tf.Tensor, temperature: float) -> tf.Tensor:
    """Per-class sharpening ``p^(1/T) / (p^(1/T) + (1-p)^(1/T))``, computed in logit space.

    The formula equals ``sigmoid(logit(p) / T)``, which is how it is evaluated (stable
    near 0 and 1). T < 1 pushes each probability away from 0.5 towards 0 or 1.

    Args:
        probabilities: class probabilities in [0, 1].
        temperature: T > 0.
    """
    p = tf.clip_by_value(tf.cast(probabilities, tf.float32), 1e-7, 1.0 - 1e-7)
    logit = tf.math.log(p) - tf.math.log1p(-p)
    return tf.sigmoid(logit / temperature)


def _logit(p: tf.Tensor) -> tf.Tensor:
    p = tf.clip_by_value(tf.cast(p, tf.float32), 1e-7, 1.0 - 1e-7)
    return tf.math.log(p) - tf.math.log1p(-p)


def align_to_prior(probabilities: tf.Tensor, prior: tf.Tensor, mean_guess: tf.Tensor,
                   epsilon: float = 1e-6) -> tf.Tensor:
    """Distribution alignment for multi-label guesses (after ReMixMatch, per class):
    ``clip(p * prior / mean_guess, 0, 1)``.

    An uncalibrated early model guesses too many (or too few) classes "on"; scaling each
    class by the ratio of the labelled class frequency to the model's average guess for
    it makes the guesses' class frequencies match the labelled ones.

    Args:
        probabilities: ``[B, C]`` guessed probabilities.
        prior: ``[C]`` frequency of each class in the labelled data.
        mean_guess: ``[C]`` the model's average guess per class (a running mean).
        epsilon: floor of ``mean_guess``.
    """
    ratio = tf.cast(prior, tf.float32) / tf.maximum(tf.cast(mean_guess, tf.float32), epsilon)
    return tf.clip_by_value(tf.cast(probabilities, tf.float32) * ratio, 0.0, 1.0)


def sharpen_around(probabilities: tf.Tensor, centre: tf.Tensor,
                   temperature: float) -> tf.Tensor:
    """Per-class sharpening around ``centre`` instead of 0.5:
    ``sigmoid((logit(p) - logit(centre)) / T + logit(centre))``.

    ``p = centre`` is the fixed point; ``p`` above it moves towards 1, below it towards
    0. With ``centre`` the labelled class frequency (a rare class: ~0.02), a guess of
    0.3 counts as evidence for the class instead of being sharpened to 0 as around 0.5.

    Args:
        probabilities: ``[B, C]`` class probabilities.
        centre: ``[C]`` (or scalar) centre per class, in (0, 1).
        temperature: T > 0.
    """
    c = _logit(centre)
    return tf.sigmoid((_logit(probabilities) - c) / temperature + c)


def binary_kl(target_logits: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """KL(Bernoulli(sigmoid(target)) || Bernoulli(sigmoid(logits))), averaged over classes.

    The mean over classes, like the supervised BCE's reduction, so that a divergence term
    keeps its weight relative to the supervised loss whatever the number of classes (a
    sum weighted VAT x20 on Kitchen20 and x80 on FAT2019; on Kitchen20 it drove the
    validation lwlrap from 0.33 to 0.21 within 300 steps).

    Args:
        target_logits: ``[B, C]`` logits of the reference distribution.
        logits: ``[B, C]`` logits of the compared distribution.

    Returns:
        ``[B]`` divergences (float32, >= 0).
    """
    a = tf.cast(target_logits, tf.float32)
    b = tf.cast(logits, tf.float32)
    p = tf.sigmoid(a)
    log_p, log_not_p = tf.math.log_sigmoid(a), tf.math.log_sigmoid(-a)
    log_q, log_not_q = tf.math.log_sigmoid(b), tf.math.log_sigmoid(-b)
    per_class = p * (log_p - log_q) + (1.0 - p) * (log_not_p - log_not_q)
    return tf.reduce_mean(per_class, axis=-1)


def bootstrap_targets(targets: tf.Tensor, probabilities: tf.Tensor,
                      beta: tf.Tensor | float) -> tf.Tensor:
    """Soft bootstrapping (Reed et al., 2015), per class: ``beta * y + (1 - beta) * p``.

    A noisy target moves towards the model's own (stop-gradient) prediction, so labels
    the model confidently disagrees with weigh less as training goes on. ``beta = 1``
    keeps the targets.

    Args:
        targets: ``[B, C]`` targets in [0, 1].
        probabilities: ``[B, C]`` the model's class probabilities (gradient stopped).
        beta: weight of the given targets: a scalar or ``[B]`` (one per example, 1 for
            clips whose labels are trusted).
    """
    beta = tf.cast(beta, tf.float32)
    if beta.shape.rank == 1:
        beta = beta[:, None]
    p = tf.stop_gradient(tf.cast(probabilities, tf.float32))
    return beta * tf.cast(targets, tf.float32) + (1.0 - beta) * p


def confident_pseudo_labels(probabilities: tf.Tensor, positive_threshold: float,
                            negative_threshold: float) -> tuple[tf.Tensor, tf.Tensor]:
    """Hard multi-label pseudo-labels from confident class probabilities (after UPS,
    Rizve et al., 2021): each class of each clip is its own decision.

    A class whose probability is at least ``positive_threshold`` becomes a positive
    target, one at most ``negative_threshold`` a negative target; classes in between
    are masked out of the loss. ``negative_threshold=0`` makes no negative targets
    (positive pseudo-labels only), even for a probability that underflowed to 0.

    Args:
        probabilities: ``[B, C]`` class probabilities of the guessing pass.
        positive_threshold: lowest probability that counts as a confident positive.
        negative_threshold: highest probability that counts as a confident negative
            (0 = none).

    Returns:
        ``(targets, mask)``, both ``[B, C]`` float32 in {0, 1}.
    """
    p = tf.cast(probabilities, tf.float32)
    positive = p >= positive_threshold
    if negative_threshold > 0:
        confident = tf.logical_or(positive, p <= negative_threshold)
    else:
        confident = positive
    return tf.cast(positive, tf.float32), tf.cast(confident, tf.float32)


def normalize_per_example(d: tf.Tensor, epsilon: float = 1e-12) -> tf.Tensor:
    """Scale each example of ``d`` to unit L2 norm over all its non-batch axes.

    Args:
        d: ``[B, ...]`` tensor.
        epsilon: floor of the norm (after scaling the largest entry to 1); an all-zero
            example stays zero.
    """
    d = tf.cast(d, tf.float32)
    axes = tf.range(1, tf.rank(d))
    # divide by the max first so squaring tiny gradients cannot underflow to zero
    d = d / (tf.reduce_max(tf.abs(d), axis=axes, keepdims=True) + 1e-30)
    norm = tf.sqrt(tf.reduce_sum(tf.square(d), axis=axes, keepdims=True))
    return d / (norm + epsilon)


def mix(a: tf.Tensor, b: tf.Tensor, lam: tf.Tensor) -> tf.Tensor:
    """``lam * a + (1 - lam) * b`` with one ``lam`` per example, broadcast over the rest.

    Args:
        a: ``[B, ...]`` tensor.
        b: ``[B, ...]`` tensor of the same shape.
        lam: ``[B]`` mixing coefficients.
    """
    lam = tf.cast(lam, a.dtype)
    lam = tf.reshape(lam, tf.concat([tf.shape(lam), tf.ones([tf.rank(a) - 1], tf.int32)], 0))
    return lam * a + (1 - lam) * tf.cast(b, a.dtype)
