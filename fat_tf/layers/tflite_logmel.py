"""The log-mel of :class:`~fat_tf.layers.LogMel` from TFLite builtin ops only.

TFLite's RFFT kernel only takes power-of-two lengths, and TFLite's dynamic-range
quantisation turns large constant matmul weights into int8. So the TFLite graph the
export writes computes the layer's own steps (:mod:`fat_tf.layers.logmel`) with two
substitutes: the ``n_fft``-point spectrum (2560 = 512 * 5 in the FAT2019 recipe) from
power-of-two RFFTs of the decimated frames and one small DFT
(:func:`power_spectrum_pow2`), and the mel filterbank as a gather and segment sum over its
nonzero entries (:func:`sparse_mel_projection`). Every op is a TFLite builtin (no Flex
delegate needed); :func:`tflite_logmel` puts them together.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from fat_tf.layers import logmel as lm


def split_power_of_two(n: int) -> tuple[int, int]:
    """``n = p * m`` with ``p`` the largest power of two dividing ``n`` and ``m`` odd.

    Args:
        n: a positive integer.

    Returns:
        ``(p, m)``.
    """
    p = 1
    while n % (2 * p) == 0:
        p *= 2
    return p, n // p


def power_spectrum_pow2(frames, n_fft: int, power: float = 2.0):
    """``|rfft(frames[..., :n_fft])| ** power`` using only power-of-two RFFTs.

    TFLite's RFFT2D kernel requires power-of-two lengths. With ``n_fft = P * m`` (``P`` a
    power of two, ``m`` odd) this is one decimation-in-time step of the Cooley-Tukey FFT:
    the ``m`` sub-sequences ``x[q::m]`` get a ``P``-point RFFT each (mirrored to all ``P``
    bins by conjugate symmetry), are multiplied by twiddle factors, and an ``m``-point DFT
    (a small matmul) across them gives bin ``l * P + p``. Float32 accuracy is that of
    ``tf.signal.rfft`` (~3e-7 relative). When ``n_fft`` is a power of two this is just
    the RFFT.

    Args:
        frames: float32 ``[..., L]`` windowed frames, ``L >= n_fft`` (cropped to
            ``n_fft``), static rank.
        n_fft: FFT length (even).
        power: exponent of the magnitude (2 = power spectrum).

    Returns:
        float32 ``[..., n_fft // 2 + 1]``.
    """
    p_len, m = split_power_of_two(n_fft)
    bins = n_fft // 2 + 1
    x = frames[..., :n_fft]
    if m == 1:
        spec = tf.signal.rfft(x, fft_length=[n_fft])
        real, imag = tf.math.real(spec), tf.math.imag(spec)
        energy = tf.math.square(real) + tf.math.square(imag)
    else:
        lead = tf.shape(x)[:-1]
        rank = x.shape.rank
        x = tf.reshape(x, tf.concat([lead, [p_len, m]], 0))
        x = tf.transpose(x, list(range(rank - 1)) + [rank, rank - 1])  # [..., m, P]
        half = tf.signal.rfft(x, fft_length=[p_len])  # [..., m, P/2 + 1]
        mirror = np.concatenate([np.arange(p_len // 2 + 1), np.arange(p_len // 2 - 1, 0, -1)])
        sign = np.where(np.arange(p_len) > p_len // 2, -1.0, 1.0).astype(np.float32)
        y_re = tf.gather(tf.math.real(half), mirror.astype(np.int32), axis=-1)
        y_im = tf.gather(tf.math.imag(half), mirror.astype(np.int32), axis=-1) * sign
        theta = 2.0 * np.pi * np.outer(np.arange(m), np.arange(p_len)) / n_fft
        cos, sin = np.cos(theta).astype(np.float32), np.sin(theta).astype(np.float32)
        z_re = y_re * cos + y_im * sin  # Y_q[p] * exp(-2 pi i q p / n_fft)
        z_im = y_im * cos - y_re * sin
        phi = 2.0 * np.pi * np.outer(np.arange(m), np.arange(m)) / m
        dft_cos, dft_sin = np.cos(phi).astype(np.float32), np.sin(phi).astype(np.float32)

        def across(z, matrix):  # sum_q z[..., q, p] * matrix[q, l] -> [..., l, p]
            return tf.einsum("...qp,ql->...lp", z, matrix)

        x_re = across(z_re, dft_cos) + across(z_im, dft_sin)
        x_im = across(z_im, dft_cos) - across(z_re, dft_sin)
        energy = tf.math.square(x_re) + tf.math.square(x_im)
        energy = tf.reshape(energy, tf.concat([lead, [n_fft]], 0))[..., :bins]
    if power == 2.0:
        return energy
    if power == 1.0:
        return tf.math.sqrt(energy)
    return tf.math.pow(energy, power / 2.0)


def sparse_mel_projection(weights: np.ndarray) -> Callable:
    """``power @ weights`` over the filterbank's nonzero entries only, with no constant
    matrix operand.

    Gathers the bins each mel reads, scales them by their weights and sums them per mel
    (``unsorted_segment_sum``). Same values as the dense or banded matmul up to float
    summation order, ~13x fewer multiply-adds than the banded one for the FAT2019
    filterbank, and, having no matmul with a constant weight, it is left in float32 by
    TFLite's dynamic-range quantisation (which quantises matmul weights of 1024 elements
    or more to int8, ruining the log-mel: measured errors of ~6 standard deviations).

    Args:
        weights: ``[bins, mels]`` filterbank.

    Returns:
        ``f(power [B, F, bins]) -> mel power [B, F, mels]``.
    """
    bins, mels = np.nonzero(weights)
    values = weights[bins, mels].astype(np.float32)

    def project(power):
        picked = tf.gather(power, bins.astype(np.int32), axis=-1) * values  # [B, F, nnz]
        summed = tf.math.unsorted_segment_sum(tf.transpose(picked, [2, 0, 1]),
                                              mels.astype(np.int32), weights.shape[1])
        return tf.transpose(summed, [1, 2, 0])

    return project


def tflite_logmel(layer) -> Callable:
    """A function computing ``layer(x)`` (a :class:`~fat_tf.layers.LogMel`) from TFLite
    builtin ops: the layer's own steps with :func:`power_spectrum_pow2` as the FFT and
    :func:`sparse_mel_projection` as the mel filterbank.

    Args:
        layer: the tagger's ``LogMel`` layer.

    Returns:
        ``f(waveform [B, T]) -> log-mel [B, frames, n_mels]``.
    """
    window = lm.periodic_hann(layer.n_fft)
    weights = lm.mel_filterbank(layer.sample_rate, layer.n_fft, layer.n_mels, layer.fmin,
                                layer.fmax)
    mel = sparse_mel_projection(weights)

    def call(x):
        x = tf.cast(x, tf.float32)
        pad = layer.n_fft // 2 if layer.center else 0
        blocks, frames = lm.to_blocks(x, layer.n_fft, layer.hop_length, pad, layer.pad_mode)
        spec = power_spectrum_pow2(lm.windowed_frames(blocks, frames, window), layer.n_fft,
                                   layer.power)
        out = lm.power_to_db(mel(spec), layer.amin, layer.top_db)
        if layer.standardize:
            out = lm.standardize(out)
        return tf.cast(out, layer.compute_dtype)

    return call
