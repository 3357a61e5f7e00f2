"""Random draws that XLA can compile.

TensorFlow samples Gamma (and so ````keras.random.beta``) with ``StatelessRandomGammaV3``,
which has no XLA kernel: a train step that mixes examples (mixup, MixMatch) could not be
compiled with ``jit_compile``. :func:`beta` draws Beta variates from normal and uniform
draws only, with Marsaglia and Tsang's Gamma method (2000) run as a fixed number of
vectorised proposals.
"""

from __future__ import annotations

import keras
import tensorflow as tf

#: Proposals per Gamma variate. Marsaglia-Tsang accepts a proposal with probability
#: above 0.95 for every shape >= 1 (used here, see :func:`gamma`), so all of them are
#: rejected with probability below 0.05 ** 16 ~ 2e-21; that draw then keeps its last
#: proposal.
PROPOSALS = 16


def gamma(shape, concentration: float, seed) -> tf.Tensor:
    """Gamma(``concentration``, 1) variates (float32), XLA-compilable.

    Shapes below 1 use Gamma(a) = Gamma(a + 1) * U^(1 / a).

    Args:
        shape: output shape.
        concentration: the Gamma shape parameter ``a > 0`` (a Python number).
        seed: a ``keras.random.SeedGenerator`` (or int seed).
    """
    if not concentration > 0:
        raise ValueError(f"the Gamma shape parameter must be > 0, got {concentration}")
    boosted = concentration < 1.0
    a = concentration + 1.0 if boosted else concentration
    d = a - 1.0 / 3.0
    c = 1.0 / (9.0 * d) ** 0.5
    shape = tuple(shape)
    z = keras.random.normal((PROPOSALS, *shape), seed=seed)
    u = keras.random.uniform((PROPOSALS, *shape), seed=seed)
    v = (1.0 + c * z) ** 3
    positive = v > 0.0
    safe_v = tf.where(positive, v, 1.0)
    accept = positive & (
        tf.math.log(tf.maximum(u, 1e-37)) < 0.5 * z**2 + d - d * safe_v + d * tf.math.log(safe_v)
    )
    # the first accepted proposal (or the last one if none was accepted)
    index = tf.argmax(tf.cast(accept, tf.int32), axis=0, output_type=tf.int32)
    index = tf.where(tf.reduce_any(accept, axis=0), index, PROPOSALS - 1)
    first = tf.one_hot(index, PROPOSALS, axis=0, dtype=tf.float32)
    sample = tf.reduce_sum(first * d * safe_v, axis=0)
    if boosted:
        boost = keras.random.uniform(shape, seed=seed)
        sample = sample * tf.maximum(boost, 1e-37) ** (1.0 / concentration)
    return sample


def beta(shape, alpha: float, beta_: float, seed) -> tf.Tensor:
    """Beta(``alpha``, ``beta_``) variates (float32) as ``X / (X + Y)`` of Gamma draws.

    Args:
        shape: output shape.
        alpha: first concentration (> 0).
        beta_: second concentration (> 0).
        seed: a ``keras.random.SeedGenerator`` (or int seed).
    """
    x = gamma(shape, alpha, seed)
    y = gamma(shape, beta_, seed)
    total = x + y
    # both draws can underflow to 0 for tiny concentrations: split evenly then
    return tf.where(total > 0.0, x / tf.maximum(total, 1e-37), 0.5)
