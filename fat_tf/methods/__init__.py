"""Training methods: one module per method over :class:`fat_tf.methods.base.Method`.

:data:`METHODS` maps each ``--method`` name to its class.
"""

from fat_tf.config import METHOD_NAMES, ConfigError
from fat_tf.methods.base import Method
from fat_tf.methods.meanteacher import MeanTeacher
from fat_tf.methods.mixmatch import MixMatch
from fat_tf.methods.mixup import Mixup
from fat_tf.methods.pseudolabel import PseudoLabel
from fat_tf.methods.supervised import Supervised
from fat_tf.methods.vat import VAT

METHODS: dict[str, type[Method]] = {
    cls.name_in_registry: cls
    for cls in (Supervised, Mixup, VAT, MeanTeacher, MixMatch, PseudoLabel)
}
if tuple(METHODS) != METHOD_NAMES:  # the names' one home is fat_tf.config (checked there)
    raise ImportError(f"fat_tf.config.METHOD_NAMES {METHOD_NAMES} differ from {tuple(METHODS)}")


def get_method(name: str) -> type[Method]:
    """The method class registered as ``name`` (ConfigError, a ValueError, if none is)."""
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; choose from {sorted(METHODS)}") from None


__all__ = ["METHODS", "Method", "get_method"]
