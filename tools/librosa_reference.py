"""The librosa log-mel that fat_tf's front end (:class:`fat_tf.layers.LogMel`) is measured
against, shared by its golden test (``tests/layers/test_logmel.py``) and its benchmark
(``benchmarks/frontend.py``), so both compare with the same computation.

``tools/`` is not a package: put the folder on ``sys.path`` and ``from librosa_reference
import librosa_logmel``. librosa (the ``dev`` and ``bench`` extras) is imported on the
first call, so importing this module does not need it.
"""

from __future__ import annotations

import numpy as np


def librosa_logmel(clips: np.ndarray, config, *, pad_mode: str) -> np.ndarray:
    """A front-end config's log-mel computed with librosa (and numpy for the clamp).

    ``librosa.feature.melspectrogram`` (Slaney mel scale and norm, ``config``'s FFT, hop,
    band, power and centring), ``librosa.power_to_db`` with ``ref=1.0`` and
    ``config.amin``, then per clip: the ``config.top_db`` clamp below the clip's maximum
    and, when ``config.standardize``, zero mean and unit variance over the clip.

    Args:
        clips: ``[samples]`` or ``[batch, samples]`` float32.
        config: a :class:`fat_tf.config.FrontEndConfig`.
        pad_mode: how librosa pads the signal's ends when centring frames (``constant``
            or ``reflect``); explicit because the test checks both and the benchmark
            uses the config's.

    Returns:
        ``[..., frames, mels]`` float32 (librosa's ``[..., mels, frames]`` transposed).
    """
    import librosa

    mel = librosa.feature.melspectrogram(
        y=clips,
        sr=config.sample_rate,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        n_mels=config.n_mels,
        fmin=config.fmin,
        fmax=config.fmax,
        power=config.power,
        center=config.center,
        pad_mode=pad_mode,
    )
    db = librosa.power_to_db(mel, ref=1.0, amin=config.amin, top_db=None)
    axes = (-2, -1)
    if config.top_db is not None:
        db = np.maximum(db, db.max(axis=axes, keepdims=True) - config.top_db)
    if config.standardize:
        db = (db - db.mean(axis=axes, keepdims=True)) / (db.std(axis=axes, keepdims=True) + 1e-6)
    return np.swapaxes(db, -1, -2)
