"""fat_tf: multi-label audio tagging with semi-supervised learning, in Keras 3 / TensorFlow.

Built around the Freesound Audio Tagging 2019 task. See README.md and DESIGN.md.
"""

__version__ = "0.1.0"
