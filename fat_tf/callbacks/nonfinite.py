"""Stop training at the first NaN or infinite loss or weight, with a clear message."""

from __future__ import annotations

import math

import keras

from fat_tf.errors import FatTfError


class NonFiniteLossError(FatTfError, RuntimeError):
    """Training produced a NaN or infinite loss (or weights)."""


def _float_weights(weights) -> list:
    """The floating-point variables among ``weights``."""
    return [w for w in weights if "float" in str(w.dtype)]


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stop at the first batch whose loss, or whose first or last trainable weight, is
    NaN or infinite, with a clear message.

    At the end of every epoch it also checks that the loss and every floating-point
    weight of the model are finite (an optimiser step can turn weights into NaN after
    the loss it reported was still finite). Put it *first* in the callback list: its
    error then stops the epoch before later callbacks write the CSV row, the best
    model or the backup, so the last completed epoch's backup and best model stay as
    they were and a rerun resumes from finite weights.
    """

    def set_model(self, model):
        super().set_model(model)
        # A finite loss does not prove finite gradients: TF's fused BatchNorm + ReLU
        # kernels map NaN activations to 0, so NaN inputs can give a finite loss and
        # NaN weights. A NaN gradient reaches the first and the last layer's weights, so
        # checking those two small tensors per batch catches it at once.
        trainable = _float_weights(model.trainable_weights)
        self._sentinels = trainable[:1] + trainable[-1:] if len(trainable) > 1 else trainable

    def on_train_batch_end(self, batch, logs=None):
        self._check(logs, self._sentinels, f"at batch {batch + 1}")

    def on_epoch_end(self, epoch, logs=None):
        self._check(logs, _float_weights(self.model.weights), f"in epoch {epoch + 1}")

    def _check(self, logs, weights, when: str):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self._stop(f"loss became {float(loss)} {when}")
        for weight in weights:
            if not bool(keras.ops.all(keras.ops.isfinite(weight.value))):
                self._stop(f"weight {weight.path} became non-finite {when}")

    def _stop(self, what: str):
        self.model.stop_training = True
        raise NonFiniteLossError(
            f"{what}; training stopped. The last completed epoch's backup and best model "
            "are kept. Try a lower learning rate (optim.lr_max) or float32 precision."
        )
