"""The one training loop every method shares.

:class:`Method` is a ``keras.Model`` wrapping a tagger (waveform -> logits). Its
``train_step`` asks one hook, :meth:`Method.compute_losses`, for the named loss terms of
a batch, each with its current weight; it sums ``weight * loss``, applies the gradients
to the tagger (with loss scaling under mixed precision) and reports every term and its
weight as metrics (``<term>_loss`` and ``<term>_weight``), so they appear in the progress
bar, the metrics CSV and TensorBoard. Methods differ only in that hook and their state.

``test_step`` scores whole clips: each clip arrives as sliding windows
(:func:`fat_tf.data.pipeline.evaluation_dataset`), the evaluated model (the tagger, or
the EMA teacher for mean teacher) scores every window, window logits are pooled per clip
and fed to the streaming :class:`fat_tf.metrics.Lwlrap`.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from fat_tf.callbacks.ema import ExponentialMovingAverage
from fat_tf.config import MethodConfig
from fat_tf.distribute import is_multi_worker
from fat_tf.metrics import Lwlrap
from fat_tf.models.tagger import tagger_parts
from fat_tf.ops.losses import get_loss, sigmoid_bce
from fat_tf.ops.pooling import clip_logits
from fat_tf.ops.ramps import ema_decay_for_run, sigmoid_rampup
from fat_tf.ops.ssl import bootstrap_targets


class Method(keras.Model):
    """Base training method: plain supervised learning on the labelled batch.

    Subclasses override :meth:`compute_losses` (and set :attr:`loss_terms`, the names
    of the terms it returns, and :attr:`uses_unlabelled`).

    Args:
        tagger: waveform-to-logits model (see :func:`fat_tf.models.build_tagger`).
        num_classes: number of classes.
        loss: supervised loss name (``bce`` or ``hinge``).
        hparams: method hyperparameters.
        total_steps: optimiser steps of the whole run (ramps are fractions of it).
        window_pooling: ``mean`` or ``max`` pooling of window logits per clip.
        seed: seed of the method's random draws.
        jit_frontend: compile the training batches' log-mel with XLA even when the
            train step itself is not compiled (less CPU per step; see DESIGN_NOTES).
        **kwargs: standard Model arguments.
    """

    name_in_registry = "supervised"
    loss_terms: tuple[str, ...] = ("supervised",)
    uses_unlabelled = False
    #: True where the evaluated model already is an average of the trained weights
    #: (mean teacher's teacher): ``evaluation_ema`` then adds no second average.
    averages_weights = False
    #: Whether ``evaluation_ema=auto`` evaluates an EMA of the weights: True where the
    #: method's reference implementation evaluates one and the development benchmark's
    #: validation agreed (MixMatch).
    evaluation_ema_by_default = False

    def __init__(
        self,
        tagger: keras.Model,
        num_classes: int,
        loss: str = "bce",
        hparams: MethodConfig | None = None,
        total_steps: int = 1,
        window_pooling: str = "mean",
        seed: int = 0,
        jit_frontend: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.tagger = tagger
        self.num_classes = num_classes
        self.loss_name = loss
        self.supervised_loss_fn = get_loss(loss)
        self.hparams = hparams or MethodConfig()
        self.total_steps = max(1, int(total_steps))
        self.window_pooling = window_pooling
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.term_trackers = {
            term: (
                keras.metrics.Mean(name=f"{term}_loss"),
                keras.metrics.Mean(name=f"{term}_weight"),
            )
            for term in self.loss_terms
        }
        self.lwlrap_metric = Lwlrap(num_classes, name="lwlrap")
        # validation lwlrap of the alternative models, one metric each (see
        # alternative_models); set by subclasses that have some
        self.alternative_lwlrap: dict[str, Lwlrap] = {}
        self.logmel, self.augment, self.classifier = tagger_parts(tagger)
        self.jit_frontend = bool(jit_frontend)
        self._frontend = (tf.function(self.logmel, jit_compile=True, autograph=False)
                          if self.jit_frontend else self.logmel)
        # the method's own random draws (mixup coefficients, VAT noise, permutations)
        self.seed_generator = keras.random.SeedGenerator(seed + 1009)
        # hparams.evaluation_ema: validation scores, and the run saves, an EMA of the
        # trained weights instead of the weights themselves
        self.averaged = None
        if self.uses_evaluation_ema:
            self.averaged = averaged_copy(tagger, "averaged")

    # ----------------------------------------------------------------- hooks
    def compute_losses(
        self,
        mel: tf.Tensor,
        labels: tf.Tensor,
        unlabelled: tf.Tensor | None,
        tape: tf.GradientTape,
    ) -> dict[str, tuple[tf.Tensor, tf.Tensor | float]]:
        """The loss terms of one training batch: ``{name: (scalar loss, weight)}``.

        Args:
            mel: ``[B, T, F]`` log-mel of the labelled clips (front end applied, no
                augmentation yet; see :meth:`augmented`).
            labels: ``[B, C]`` multi-hot labels.
            unlabelled: ``[B_u, T, F]`` log-mel of the unlabelled clips, or None.
            tape: the gradient tape recording the step; a method may pause it
                (``tape.stop_recording()``) for work that needs no weight gradient.
        """
        logits = self.classifier(self.augmented(mel), training=True)
        return {"supervised": (self.supervised_loss(labels, logits), 1.0)}

    def extra_callbacks(self) -> list[keras.callbacks.Callback]:
        """Callbacks the method needs during ``fit``: the update of the averaged model
        (``evaluation_ema``; mean teacher's teacher)."""
        if self.averaged is None:
            return []
        return [ExponentialMovingAverage(self.tagger, self.averaged, self.run_ema_decay)]

    @property
    def uses_evaluation_ema(self) -> bool:
        """Whether this run keeps a separate EMA of its weights for evaluation:
        ``evaluation_ema`` resolved for this method (``auto``: its
        ``evaluation_ema_by_default``), and never where the evaluated model already is
        such an average (``averages_weights``: mean teacher's teacher)."""
        if self.averages_weights:
            return False
        wanted = self.hparams.evaluation_ema
        return self.evaluation_ema_by_default if wanted == "auto" else bool(wanted)

    @property
    def run_ema_decay(self) -> float:
        """The EMA decay of this run's averaged model: ``ema_decay`` capped so that it
        averages at most ``ema_horizon_fraction`` of the run (:func:`ema_decay_for_run`)."""
        return ema_decay_for_run(self.hparams.ema_decay, self.total_steps,
                                 self.hparams.ema_horizon_fraction)

    @property
    def evaluated_model(self) -> keras.Model:
        """The model that validation scores and that is saved and exported: the tagger,
        or with ``evaluation_ema`` its exponential moving average."""
        return self.tagger if self.averaged is None else self.averaged

    @property
    def alternative_models(self) -> dict[str, keras.Model]:
        """Other models that validation scores too, ``{name: model}`` (mean teacher: the
        student beside the teacher). Each gets a ``<name>_lwlrap`` validation metric, and
        the best checkpoint is the best of every scored model
        (:class:`fat_tf.callbacks.SaveBestModel`), so a run whose teacher falls behind
        its student still keeps its best model."""
        return {}

    # ------------------------------------------------------------- helpers
    def augmented(self, mel: tf.Tensor) -> tf.Tensor:
        """``mel`` with a fresh draw of the training augmentation (the classifier's input)."""
        return self.augment(mel, training=True)

    def batch_logmel(self, inputs, audio_key: str, mel_key: str) -> tf.Tensor | None:
        """Log-mel of one stream of a training batch: taken as given when the pipeline
        delivers cached features (``mel_key``), computed from the waveforms otherwise."""
        if not isinstance(inputs, dict):
            return self._frontend(inputs) if audio_key == "audio" else None
        if mel_key in inputs:
            return inputs[mel_key]
        if audio_key in inputs:
            return self._frontend(inputs[audio_key])
        return None

    @staticmethod
    def labelled_then_unlabelled(mel: tf.Tensor, unlabelled: tf.Tensor | None
                                 ) -> tuple[tf.Tensor, tf.Tensor | None]:
        """The rows a semi-supervised training pass sees, and where they split.

        Args:
            mel: ``[B, T, F]`` labelled log-mel.
            unlabelled: ``[B_u, T, F]`` unlabelled log-mel, or None.

        Returns:
            ``mel`` followed by ``unlabelled``, and ``B`` as the ``labelled`` argument
            of :meth:`classify_training` (None without unlabelled rows).
        """
        if unlabelled is None:
            return mel, None
        return tf.concat([mel, unlabelled], axis=0), tf.shape(mel)[0]

    def classify_training(self, features: tf.Tensor,
                          labelled: tf.Tensor | int | None) -> tf.Tensor:
        """Training-mode logits of ``features`` whose first ``labelled`` rows are
        labelled clips and the rest unlabelled ones.

        With ``batchnorm_statistics=all`` it is one pass; with ``labelled`` the
        unlabelled rows pass separately, normalised by their own batch statistics, and
        BatchNorm's moving statistics (what inference uses) come from the labelled rows
        alone. The same call on inputs of the same shapes draws dropout masks the same
        way, so :class:`DropoutMasks` can replay them.

        Args:
            features: ``[B + B_u, T, F]`` classifier inputs.
            labelled: ``B``, the number of labelled rows first; ``None`` when every
                row is labelled (no unlabelled stream): one pass either way.
        """
        if self.hparams.batchnorm_statistics == "all" or labelled is None:
            return self.classifier(features, training=True)
        logits = self.classifier(features[:labelled], training=True)
        with frozen_batchnorm_statistics(self.classifier):
            unlabelled = self.classifier(features[labelled:], training=True)
        return tf.concat([logits, unlabelled], axis=0)

    def unlabelled_rampup(self, ramp=sigmoid_rampup) -> tf.Tensor:
        """Multiplier in [0, 1] of the unlabelled terms' weights: 0 before
        ``unlabelled_start`` (the labels train the model alone), then ``ramp`` over
        ``rampup_fraction`` of the run.

        Args:
            ramp: ramp shape (:func:`~fat_tf.ops.ramps.sigmoid_rampup` or
                :func:`~fat_tf.ops.ramps.linear_rampup`).
        """
        h = self.hparams
        since = self.progress() - h.unlabelled_start
        return tf.cast(since >= 0.0, tf.float32) * ramp(since, h.rampup_fraction)

    def supervised_loss(self, labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
        """Mean of the configured per-example supervised loss.

        ``labels`` may carry one extra last column flagging train_noisy clips (0 curated,
        1 noisy; a mixed clip holds the mixed flag): a clip's loss is then weighted by
        ``1 - flag + flag * noisy_label_weight`` while the run is before
        ``noisy_label_until``, and by ``1 - flag`` after it (curated-only fine-tuning).
        With ``noisy_bootstrap`` beta < 1, a noisy clip's targets are soft-bootstrapped
        towards the model's own prediction, ``beta * y + (1 - beta) * sigmoid(logits)``
        (:func:`~fat_tf.ops.ssl.bootstrap_targets`; a mixed clip takes
        ``1 - flag * (1 - beta)``, a curated clip keeps its labels).
        """
        if labels.shape[-1] == self.num_classes + 1:
            targets, noisy = labels[..., :-1], tf.cast(labels[..., -1], tf.float32)
            h = self.hparams
            if h.noisy_bootstrap < 1:
                targets = bootstrap_targets(
                    targets, tf.sigmoid(tf.cast(logits, tf.float32)),
                    1.0 - noisy * (1.0 - h.noisy_bootstrap))
            active = tf.cast(self.progress() < h.noisy_label_until, tf.float32)
            weights = 1.0 - noisy + noisy * h.noisy_label_weight * active
            return tf.reduce_mean(weights * self.supervised_loss_fn(targets, logits))
        return tf.reduce_mean(self.supervised_loss_fn(labels, logits))

    def scaled_for_gradients(self, loss: tf.Tensor) -> tf.Tensor:
        """``loss`` times the optimiser's current loss scale (mixed_float16), or unchanged.

        For gradients a method takes itself, outside the main step's loss (VAT's power
        iteration): float16 backward passes need the same protection against underflow.
        Only the direction of such gradients may be used, as they stay scaled.
        """
        optimizer = getattr(self, "optimizer", None)
        return loss if optimizer is None else optimizer.scale_loss(loss)

    def progress(self) -> tf.Tensor:
        """Fraction of the run done (float32, 0 at the first step), from the optimiser's
        step counter, so ramps have the same shape in short and long runs."""
        return tf.cast(self.optimizer.iterations, tf.float32) / self.total_steps

    def call(self, inputs, training=False):
        """Logits for waveforms ``[B, L]`` or pooled clip logits for window dicts."""
        if isinstance(inputs, dict) and "windows" in inputs:
            return self.clip_logits(inputs)
        if isinstance(inputs, dict):
            inputs = inputs["audio"]
        return self.tagger(inputs, training=training)

    def clip_logits(self, inputs: dict) -> tf.Tensor:
        """Pooled clip logits ``[B, C]`` of the evaluated model on sliding-window inputs.

        Args:
            inputs: ``{"windows": [B, W, L], "window_mask": [B, W]}``.
        """
        return clip_logits(self.evaluated_model, inputs["windows"], inputs["window_mask"],
                           self.window_pooling)

    # ---------------------------------------------------------- Keras steps
    @property
    def metrics(self):
        trackers = [self.loss_tracker]
        for loss_tracker, weight_tracker in self.term_trackers.values():
            trackers += [loss_tracker, weight_tracker]
        return trackers + [self.lwlrap_metric, *self.alternative_lwlrap.values()]

    def train_step(self, data):
        """One optimiser step; under a ``tf.distribute`` strategy, one replica's share.

        Each replica's loss terms are means over its own examples. Gradients of all
        replicas are *summed* by the optimiser, so the loss they differentiate is the
        total divided by ``num_replicas_in_sync`` (what Keras' own losses do), which
        makes the update that of the mean over the global batch; the metrics track the
        undivided loss. Mixed precision's loss scale applies on top. Under several
        replicas, each replica also draws its own random numbers
        (:meth:`replica_random_draws`) and BatchNorm moving statistics are averaged
        across replicas after the step (:meth:`sync_replica_statistics`).
        """
        inputs, labels = data
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with self.replica_random_draws():
            mel = self.batch_logmel(inputs, "audio", "logmel")
            unlabelled = self.batch_logmel(inputs, "unlabelled", "unlabelled_logmel")
            variables = self.tagger.trainable_variables
            with tf.GradientTape() as tape:
                terms = self.compute_losses(mel, labels, unlabelled, tape)
                total = tf.add_n(
                    [tf.cast(weight, tf.float32) * loss for loss, weight in terms.values()]
                )
                per_replica = total / replicas if replicas > 1 else total
                scaled = self.optimizer.scale_loss(per_replica)
            grads = tape.gradient(scaled, variables)
            self.optimizer.apply(grads, variables)
        self.sync_replica_statistics()
        self.loss_tracker.update_state(total)
        for term, (loss, weight) in terms.items():
            loss_tracker, weight_tracker = self.term_trackers[term]
            loss_tracker.update_state(loss)
            weight_tracker.update_state(weight)
        return _step_logs({m.name: m.result() for m in self.metrics
                           if not isinstance(m, Lwlrap)})

    # ------------------------------------------------- distributed training
    def _maybe_symbolic_build(self, *args, **kwargs):
        # Private hook of Keras' TF trainer (tests/test_distribute.py checks it still
        # exists). For a model created under a strategy, Keras pulls one batch and
        # all-reduces it across replicas only to build the model symbolically; that
        # fails on dict inputs under MultiWorkerMirroredStrategy. A method is built by
        # fat_tf.training.build_method (model called, optimiser built), so skip it then.
        if (self._distribute_strategy is not None and self.tagger.built
                and self.optimizer is not None and self.optimizer.built):
            return None
        return super()._maybe_symbolic_build(*args, **kwargs)

    def replica_random_draws(self):
        """Context manager: under several replicas, every replica draws its own random
        numbers inside the block (augmentation, dropout, mixup partners, VAT noise).

        Keras seed generators are mirrored variables, identical on every replica, so
        without this each replica would repeat replica 0's draws on its own examples.
        On entry, each replica adds ``replica_id * REPLICA_SEED_STRIDE`` to the seed
        half of every seed generator's state (its local copy only); on exit it takes
        it away. Every replica draws equally often, so the copies are identical again
        after the block and checkpoints hold one consistent state. A no-op with one
        replica, so single-device runs draw exactly as before.
        """
        return _ReplicaSeedOffset(self)

    def sync_replica_statistics(self) -> None:
        """Under several replicas, set every BatchNorm moving mean and variance of the
        tagger to its mean over the replicas (one all-reduce per step).

        Each replica normalises with its own batch statistics (unless a layer is
        ``synchronized``), so the moving statistics, which Keras updates only on the
        replica's own copy, would drift apart; averaging keeps one consistent state,
        which is what evaluation, the EMA teacher and checkpoints read. Averaging the
        per-replica moving variances ignores the spread of the per-replica means, the
        usual approximation without synchronised BatchNorm. A no-op with one replica.
        """
        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return
        statistics = _batchnorm_statistics(self.tagger)
        if not statistics:
            return
        means = context.all_reduce(
            tf.distribute.ReduceOp.MEAN, [tf.identity(v.value) for v in statistics]
        )
        for variable, mean in zip(statistics, means):
            variable.assign(mean)

    def test_step(self, data):
        inputs, labels = data
        if tf.distribute.get_strategy().num_replicas_in_sync > 1:
            # a last batch with fewer clips than replicas leaves some replica nothing,
            # and TensorFlow's layers fail on empty batches: skip the model there
            logits = tf.cond(
                tf.shape(labels)[0] > 0,
                lambda: tf.cast(self.clip_logits(inputs), tf.float32),
                lambda: tf.zeros([0, self.num_classes], tf.float32),
            )
        else:
            logits = self.clip_logits(inputs)
        # per clip, so that val_loss is the mean over clips however batches are split
        # (an empty replica share adds nothing)
        self.loss_tracker.update_state(sigmoid_bce(labels, logits))
        self.lwlrap_metric.update_state(labels, logits)
        for name, model in self.alternative_models.items():
            self.alternative_lwlrap[name].update_state(
                labels, clip_logits(model, inputs["windows"], inputs["window_mask"],
                                    self.window_pooling))
        return _step_logs(self.evaluation_results())

    def evaluation_results(self) -> dict[str, tf.Tensor]:
        """Validation loss (mean over clips) and lwlrap of everything evaluated so far.

        Keras keeps a metric's state per replica and sums it only when read outside
        the step, while the step's logs are per-replica results averaged, which for a
        ratio such as lwlrap (or a mean over unequal shares of a last batch) is not the
        result on all clips. Under several replicas the states are therefore summed
        across replicas here (one all-reduce per evaluation step) before the ratios
        are taken.
        """
        context = tf.distribute.get_replica_context()
        lwlraps = {"lwlrap": self.lwlrap_metric, **{
            f"{name}_lwlrap": metric for name, metric in self.alternative_lwlrap.items()}}
        if context is None or context.num_replicas_in_sync == 1:
            return {"loss": self.loss_tracker.result(),
                    **{key: metric.result() for key, metric in lwlraps.items()}}
        total, count = context.all_reduce(
            tf.distribute.ReduceOp.SUM, [tf.identity(self.loss_tracker.total.value),
                                         tf.identity(self.loss_tracker.count.value)])
        results = {"loss": tf.math.divide_no_nan(total, count)}
        for key, metric in lwlraps.items():
            precision_sum, positives = context.all_reduce(
                tf.distribute.ReduceOp.SUM, [tf.identity(metric.precision_sum.value),
                                             tf.identity(metric.positives.value)])
            results[key] = tf.math.divide_no_nan(tf.reduce_sum(precision_sum),
                                                 tf.reduce_sum(positives))
        return results

    def predict_step(self, data):
        inputs = data[0] if isinstance(data, tuple) else data
        return self(inputs, training=False)

    def get_config(self):
        # A Method is rebuilt from the run config, never from this dict; it is here so
        # Keras can describe the model.
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "loss": self.loss_name,
            "total_steps": self.total_steps,
            "window_pooling": self.window_pooling,
        }


def averaged_copy(tagger: keras.Model, name: str) -> keras.Model:
    """A non-trainable copy of ``tagger`` starting from its exact weights, to be kept an
    average of them (:class:`~fat_tf.callbacks.ema.ExponentialMovingAverage`).

    Args:
        tagger: the trained model.
        name: the copy's name (``teacher``, ``averaged``).
    """
    copy = keras.models.clone_model(tagger)
    copy.name = name
    copy.set_weights(tagger.get_weights())
    copy.trainable = False
    return copy


class frozen_batchnorm_statistics:
    """Context manager: BatchNorm layers of ``model`` may run in training mode (batch
    statistics) inside the block, but their moving mean and variance are restored on
    exit, so extra forward passes (VAT's perturbed passes, MixMatch's label guessing)
    leave the statistics exactly as the main pass set them.

    Under a ``tf.distribute`` strategy it works in replica context: each replica saves
    and restores its own copy of the statistics.

    Args:
        model: the model whose BatchNormalization layers are protected.
    """

    def __init__(self, model: keras.Model):
        self.variables = _batchnorm_statistics(model)
        self.saved: list[tf.Tensor] = []

    def __enter__(self):
        self.saved = [tf.identity(v.value) for v in self.variables]
        return self

    def __exit__(self, *exc):
        for variable, value in zip(self.variables, self.saved):
            variable.assign(value)
        return False


class DropoutMasks:
    """Make several forward passes of ``model`` draw the same dropout masks.

    :meth:`record` notes the state of the seed generator of every Dropout layer of
    ``model``; :meth:`replay` puts it back, so the next pass (of inputs of the same
    shape) draws exactly the masks the recorded pass drew. VAT compares a clean pass
    with perturbed passes: with independent masks their divergence would be mostly
    dropout noise (the reference implementation seeds the passes identically too).

    Args:
        model: the model whose Dropout layers are replayed.
    """

    def __init__(self, model: keras.Model):
        self.states = [layer.seed_generator.state for layer in dropout_layers(model)]
        self.saved: list[tf.Tensor] = []

    def record(self) -> None:
        """Remember the seed states (call before the pass whose masks are replayed)."""
        self.saved = [tf.identity(v.value) for v in self.states]

    def replay(self) -> None:
        """Restore the recorded seed states (call before each pass that must match)."""
        for variable, value in zip(self.states, self.saved):
            variable.assign(value)


def dropout_layers(model: keras.Model) -> list:
    """Every active ``keras.layers.Dropout`` inside ``model`` (nested models included).

    Args:
        model: the model to search.

    Returns:
        The Dropout layers with a rate above 0, in the model's layer order.
    """
    return [layer for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, keras.layers.Dropout) and layer.rate > 0]


def _step_logs(logs: dict) -> dict:
    """A step's logs as Keras' TF trainer can reduce them across replicas.

    Under ``MultiWorkerMirroredStrategy`` over several workers, Keras 3 reduces each
    log with ``strategy.reduce("MEAN", value, axis=0)``, which fails on scalars
    (tensorflow/tensorflow#72388); there each value is returned with shape ``[1]``.
    That reduction averages over the axis and the replicas together, so callbacks and
    History get a scalar again: the mean of the replicas' values, which are all the
    same synchronised metric value.
    """
    if not is_multi_worker(tf.distribute.get_strategy()):
        return logs
    return {k: tf.reshape(v, [1]) for k, v in logs.items()}


#: Seed offset between consecutive replicas (see :meth:`Method.replica_random_draws`).
REPLICA_SEED_STRIDE = 1_000_003


def _batchnorm_statistics(model: keras.Model) -> list:
    """The moving means and variances of ``model``'s BatchNormalization layers."""
    return [v for v in model.non_trainable_variables
            if v.name in ("moving_mean", "moving_variance")]


class _ReplicaSeedOffset:
    """See :meth:`Method.replica_random_draws`."""

    def __init__(self, method: Method):
        self.states = [v for v in method.non_trainable_variables
                       if v.name == "seed_generator_state"]
        self.offset = None

    def __enter__(self):
        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1 or not self.states:
            return self
        replica = tf.cast(context.replica_id_in_sync_group, "int64")
        self.offset = tf.stack([replica * REPLICA_SEED_STRIDE, tf.constant(0, "int64")])
        for state in self.states:
            state.assign(state.value + tf.cast(self.offset, state.dtype))
        return self

    def __exit__(self, *exc):
        if self.offset is not None:
            for state in self.states:
                state.assign(state.value - tf.cast(self.offset, state.dtype))
            self.offset = None
        return False
