"""Make ``keras.models.load_model("RUN/best.keras")`` work after ``import fat_tf``.

A saved tagger refers to fat_tf's layers by their registered names (``fat_tf>LogMel``,
``fat_tf>ConvBlock``...), which Keras only knows once the modules defining them have
run their ``@keras.saving.register_keras_serializable`` decorators. Importing those
modules imports TensorFlow (seconds), which ``import fat_tf`` must not do: every
command's ``--help`` and its argument errors would wait for it.

So ``import fat_tf`` calls :func:`install`, which costs nothing: as soon as Keras is
imported (at once if it already is), every registered name in :data:`KERAS_OBJECTS`
gets a :class:`Deferred` stand-in in Keras' global custom objects. Loading a model calls
the stand-in's ``from_config``, which imports the real module (its decorator then
replaces the stand-in with the real class) and delegates to the real class. Nothing
of fat_tf is imported until a model is loaded, and importing fat_tf's modules directly
replaces the stand-ins as before.

Only the standard library is imported here.
"""

from __future__ import annotations

import importlib
import importlib.abc
import sys
import threading

#: Registered name -> module defining it, for every class fat_tf registers with
#: ``@keras.saving.register_keras_serializable(package="fat_tf")`` (a test checks that
#: this table lists all of them).
KERAS_OBJECTS = {
    "fat_tf>LogMel": "fat_tf.layers.logmel",
    "fat_tf>FusedBatchNormalization": "fat_tf.layers.normalization",
    "fat_tf>RandomTimeFlip": "fat_tf.layers.augment",
    "fat_tf>RandomTimeShift": "fat_tf.layers.augment",
    "fat_tf>SpecAugment": "fat_tf.layers.augment",
    "fat_tf>RandomTimeCrop": "fat_tf.layers.augment",
    "fat_tf>ConvBlock": "fat_tf.models.cnn",
    "fat_tf>GlobalTimeFreqPool": "fat_tf.models.head",
    "fat_tf>CosineAnnealing": "fat_tf.ops.schedules",
    "fat_tf>LinearWarmup": "fat_tf.ops.schedules",
    "fat_tf>Lwlrap": "fat_tf.metrics",
}

_lock = threading.Lock()


class Deferred:
    """Stands in for a fat_tf class in Keras' custom objects until it is needed.

    Args:
        registered_name: e.g. ``fat_tf>LogMel``.
        module: the module whose import registers the real class.
    """

    def __init__(self, registered_name: str, module: str):
        self.registered_name = registered_name
        self.module = module

    def resolve(self):
        """Import the real class's module and return the real class."""
        import keras

        importlib.import_module(self.module)
        real = keras.saving.get_custom_objects().get(self.registered_name)
        if real is None or isinstance(real, Deferred):
            raise ImportError(f"{self.module} did not register {self.registered_name}")
        return real

    def from_config(self, config, *args, **kwargs):
        """Build the real object (what Keras calls while loading a model)."""
        return self.resolve().from_config(config, *args, **kwargs)

    def __call__(self, *args, **kwargs):
        return self.resolve()(*args, **kwargs)

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.resolve(), name)

    def __repr__(self) -> str:
        return f"<deferred {self.registered_name} from {self.module}>"


def register_deferred() -> None:
    """Put a :class:`Deferred` in Keras' global custom objects for every name of
    :data:`KERAS_OBJECTS` not registered yet (Keras must be imported)."""
    keras = sys.modules["keras"]
    objects = keras.saving.get_custom_objects()
    for name, module in KERAS_OBJECTS.items():
        objects.setdefault(name, Deferred(name, module))


class _KerasImportHook(importlib.abc.MetaPathFinder):
    """Calls :func:`register_deferred` right after the ``keras`` package has run."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras":
            return None
        spec = None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run = loader.exec_module

        # Stay installed until Keras has actually run: a spec may only be looked at
        # (TensorFlow's import calls importlib.util.find_spec("keras")).
        def exec_module(module):
            try:
                run(module)
            finally:
                vars(loader).pop("exec_module", None)
            _remove_hook()
            register_deferred()

        try:
            loader.exec_module = exec_module  # this spec's loader only
        except AttributeError:  # a loader with slots: load models after importing fat_tf.models
            pass
        return spec


def _remove_hook() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _KerasImportHook)]


def install() -> None:
    """Register the stand-ins now if Keras is imported, else when it is."""
    with _lock:
        keras = sys.modules.get("keras")
        if keras is not None and hasattr(getattr(keras, "saving", None), "get_custom_objects"):
            _remove_hook()
            register_deferred()
        elif not any(isinstance(f, _KerasImportHook) for f in sys.meta_path):
            sys.meta_path.insert(0, _KerasImportHook())
