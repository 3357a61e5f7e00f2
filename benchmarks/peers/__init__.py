"""Independent reimplementations of fat_tf in other frameworks, used as benchmark peers.

* :mod:`peers.torch_tagger` — the same log-mel tagger and training methods in PyTorch.
"""
