"""Scoring whole clips with a trained tagger: what ``evaluate``, ``predict``, ``export``,
``report`` and the Python API share.

* :mod:`fat_tf.inference.scoring`: the scoring settings (window, hop, cap, pooling,
  TTA) worked out from a run's config, NumPy helpers (``sigmoid``, ``pad_batch``,
  batching), scoring files with a Keras tagger (``score_clips``) and a run on a labelled
  split (``score_run``);
* :mod:`fat_tf.inference.windows`: the same scoring inside a TensorFlow graph (cutting
  windows, scoring them, pooling them);
* :mod:`fat_tf.inference.clip_module`: the ``tf.Module`` an export is made of, with its
  signatures;
* :mod:`fat_tf.inference.loaded`: opening a run folder or an export folder for scoring.

The command modules import these, never each other. ``scoring`` and ``loaded`` import
no TensorFlow until they score or load; ``windows`` and ``clip_module`` do, so commands
import them inside the functions that need them (``--help`` stays instant).
"""
