"""fat_tf: multi-label audio tagging with semi-supervised learning, in Keras 3 / TensorFlow.

Built around the Freesound Audio Tagging 2019 task. See README.md (use) and
DESIGN_NOTES.md (the decisions the code takes) in the source repository.
"""

__version__ = "0.1.0"

from fat_tf import keras_objects as _keras_objects  # standard library only

# keras.models.load_model("RUN/best.keras") works after `import fat_tf`, without
# importing TensorFlow here (see fat_tf/keras_objects.py).
_keras_objects.install()


def load(path, model: str | None = None, *, pooling: str | None = None, tta: bool = False):
    """Open a run folder or an export folder as a :class:`fat_tf.api.Tagger`.

    ``tagger = fat_tf.load("runs/demo")``, then ``tagger.predict("clip.flac")``,
    ``tagger.embed(...)``, ``tagger.frames(...)``, ``tagger.class_names``. TensorFlow is
    imported here, not by ``import fat_tf``.

    Args:
        path: a run folder (``python -m fat_tf.train``) or an export folder
            (``python -m fat_tf.export``).
        model: ``final`` (the final model, ``model.keras``; the default) or ``best``
            (the best-validation checkpoint, ``best.keras``); run folders only.
        pooling: window pooling, ``mean`` or ``max`` (default: the run's config); fixed in
            an export.
        tta: time-reversal test-time augmentation; fixed in an export.
    """
    from fat_tf.api import load as _load

    return _load(path, model, pooling=pooling, tta=tta)
