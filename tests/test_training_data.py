"""How a run splits curated clips and uses train_noisy (labelled, unlabelled or not at all)."""

import numpy as np
import pytest

from fat_tf.config import ConfigError
from fat_tf.data.manifest import load_dataset
from fat_tf.errors import FatTfError
from fat_tf.presets import get_preset
from fat_tf.training import split_data


@pytest.fixture(scope="module")
def dataset(tiny_demo_dir):
    return load_dataset(tiny_demo_dir)


def config(**overrides):
    return get_preset("small").replace(**overrides)


def test_noisy_is_unlabelled_for_ssl_methods(dataset):
    unlabelled = config(**{"train.method": "vat", "data.noisy_usage": "unlabelled"})
    data = split_data(dataset, unlabelled, uses_unlabelled=True)
    assert data.unlabelled_paths == dataset.noisy.paths
    assert len(data.train_paths) + len(data.validation) == len(dataset.curated)
    assert not set(data.train_paths) & set(dataset.noisy.paths)
    assert not set(data.train_paths) & set(data.validation.paths)


def test_auto_uses_noisy_labels_and_for_ssl_also_noisy_audio(dataset):
    """The default: noisy labels at noisy_label_weight (flag column) for every method,
    and the noisy audio as the unlabelled stream of the semi-supervised ones."""
    assert config().data.noisy_usage == "auto"
    n_curated = len(dataset.curated)
    supervised = split_data(dataset, config(), uses_unlabelled=False)
    assert supervised.unlabelled_paths is None
    ssl = split_data(dataset, config(**{"train.method": "meanteacher"}), uses_unlabelled=True)
    assert ssl.unlabelled_paths == dataset.noisy.paths
    for data in (supervised, ssl):
        n_train = n_curated - len(data.validation)
        assert data.train_paths[n_train:] == dataset.noisy.paths
        np.testing.assert_array_equal(data.train_labels[n_train:, -1], 1.0)
        np.testing.assert_array_equal(data.train_labels[:n_train, -1], 0.0)
    both = split_data(dataset, config(**{"data.noisy_usage": "both"}), uses_unlabelled=True)
    np.testing.assert_array_equal(both.train_labels, ssl.train_labels)
    with pytest.raises(ConfigError, match="noisy_usage must be one of"):
        config(**{"data.noisy_usage": "sometimes"})


def test_noisy_labels_as_extra_labelled_data(dataset):
    unweighted = config(**{"data.noisy_usage": "labelled", "method.noisy_label_weight": 1.0})
    data = split_data(dataset, unweighted, uses_unlabelled=False)
    assert data.unlabelled_paths is None
    n_curated = len(dataset.curated) - len(data.validation)
    assert data.train_paths[n_curated:] == dataset.noisy.paths
    np.testing.assert_array_equal(data.train_labels[n_curated:], dataset.noisy.labels)


def test_weighted_noisy_labels_carry_a_noisy_flag_column(dataset):
    weighted = config(**{"data.noisy_usage": "labelled", "method.noisy_label_weight": 0.3})
    data = split_data(dataset, weighted, uses_unlabelled=False)
    n_curated = len(dataset.curated) - len(data.validation)
    classes = len(dataset.class_names)
    assert data.train_labels.shape == (len(data.train_paths), classes + 1)
    np.testing.assert_array_equal(data.train_labels[:n_curated, -1], 0.0)
    np.testing.assert_array_equal(data.train_labels[n_curated:, -1], 1.0)
    np.testing.assert_array_equal(data.train_labels[n_curated:, :-1], dataset.noisy.labels)
    assert data.validation.labels.shape[1] == classes
    fine_tune = config(**{"data.noisy_usage": "labelled", "method.noisy_label_weight": 1.0,
                          "method.noisy_label_until": 0.7})
    assert split_data(dataset, fine_tune, False).train_labels.shape[1] == classes + 1
    with pytest.raises(ConfigError, match="noisy_label_until"):
        config(**{"method.noisy_label_until": 1.5})


def test_noisy_unused_and_ssl_needs_it(dataset):
    data = split_data(dataset, config(**{"data.noisy_usage": "none"}), uses_unlabelled=False)
    assert data.train_labels.shape[1] == len(dataset.class_names)
    assert len(data.train_paths) == len(dataset.curated) - len(data.validation)
    with pytest.raises(FatTfError, match="needs unlabelled audio"):
        split_data(dataset, config(**{"data.noisy_usage": "labelled", "train.method": "vat"}),
                   uses_unlabelled=True)


def test_labelled_fraction_keeps_every_class(dataset):
    curated = config(**{"data.noisy_usage": "none"})
    full = split_data(dataset, curated, uses_unlabelled=False)
    part = split_data(dataset, curated.replace(**{"data.labelled_fraction": 0.25}),
                      uses_unlabelled=False)
    assert len(part.train_paths) < 0.5 * len(full.train_paths)
    assert np.all(part.train_labels.sum(axis=0) >= 1)
    assert part.validation.fnames == full.validation.fnames  # same held-out clips
