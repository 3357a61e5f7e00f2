"""FAT2019 data layer: manifests (CSV + folder validation), WAV header checks, pipelines.

The manifest API is importable from here without TensorFlow::

    from fat_tf.data import load_dataset
    ds = load_dataset("path/to/fat2019")        # raises DataError naming file and line
    ds.curated.paths, ds.curated.labels         # [N] paths, [N, C] multi-hot float32

``python -m fat_tf.data check DIR`` validates a whole folder and prints a summary;
``python -m fat_tf.data download`` fetches FAT2019 (:mod:`fat_tf.data.fetch`).
"""

from fat_tf.data.manifest import (
    DatasetLayout,
    DataWarning,
    FatDataset,
    Manifest,
    load_dataset,
    read_manifest,
    read_test_manifest,
)
from fat_tf.data.manifest_csv import parse_labels, read_class_names
from fat_tf.data.wav import WavInfo, check_wav, read_wav_info

__all__ = [
    "DataWarning",
    "DatasetLayout",
    "FatDataset",
    "Manifest",
    "WavInfo",
    "check_wav",
    "load_dataset",
    "parse_labels",
    "read_class_names",
    "read_manifest",
    "read_test_manifest",
    "read_wav_info",
]
