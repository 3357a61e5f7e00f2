"""Hyperparameter search over fat_tf training runs with keras-tuner (``fat-tf tune``).

* :mod:`fat_tf.tuning.space` — search-space files (which config fields, how sampled);
  each method's default is ``spaces/<method>.json``;
* :mod:`fat_tf.tuning.oracles` — the random, Bayesian and Hyperband oracles, with a
  limit on failures in a row;
* :mod:`fat_tf.tuning.trials` — one trial: a complete training run in its run folder;
* :mod:`fat_tf.tuning.table` — ``trials.csv`` and ``trials.md``;
* :mod:`fat_tf.tuning.search` — :func:`~fat_tf.tuning.search.run_search`: the search
  folder, resuming, distributed search.

The command line is :mod:`fat_tf.tune`. Nothing is imported here, so reading a search
space does not import keras-tuner.
"""
