"""Supervised training on the labelled batch only (the reference recipe)."""

from fat_tf.methods.base import Method


class Supervised(Method):
    """Plain supervised learning: the base class's loss, nothing added.

    Args: see :class:`fat_tf.methods.base.Method`.
    """

    name_in_registry = "supervised"
