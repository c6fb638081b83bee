"""Pixel (and LiteSRNet's perceptual) losses on RGB in 0..255, computed on a 0..1 scale (so SSIM has its usual
constants).

Models trained on several SR outputs (HFDN's multi-supervision) get the same loss on each output: Keras applies
a single loss function to every output of a multi-output model.
"""
from __future__ import annotations

from tfsr.errors import TfsrError
from tfsr.keras import tf

CHARBONNIER_EPSILON = 1e-3


def _unit(y_true, y_pred):
    return tf.cast(y_true, tf.float32) / 255.0, tf.cast(y_pred, tf.float32) / 255.0


def l1(y_true, y_pred):
    t, p = _unit(y_true, y_pred)
    return tf.reduce_mean(tf.abs(t - p), axis=[1, 2, 3])


def mse(y_true, y_pred):
    t, p = _unit(y_true, y_pred)
    return tf.reduce_mean(tf.square(t - p), axis=[1, 2, 3])


def charbonnier(y_true, y_pred):
    t, p = _unit(y_true, y_pred)
    return tf.reduce_mean(tf.sqrt(tf.square(t - p) + CHARBONNIER_EPSILON**2), axis=[1, 2, 3])


def l1_ssim(y_true, y_pred):
    """L1 + (1 - SSIM): SSIM of Wang et al. (11x11 Gaussian window) on RGB, range 1."""
    t, p = _unit(y_true, y_pred)
    return l1(y_true, y_pred) + (1.0 - tf.image.ssim(t, tf.clip_by_value(p, 0.0, 1.0), max_val=1.0))


# Keras' own file of VGG16's ImageNet weights without the classifier (None: an untrained VGG16, for tests)
VGG16_WEIGHTS = ("https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
                 "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")  # fmt: skip
VGG16_WEIGHTS_MD5 = "6d6bbae143d832006294945121d1f1fc"
VGG16_FEATURES = ("block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3")  # relu1_2, 2_2, 3_3, 4_3


class MsePlusVgg16:
    """LiteSRNet's loss: MSE + 0.01 x the mean of the MSEs between VGG16's relu1_2, relu2_2, relu3_3 and relu4_3
    features of SR and HR, both fed in [0, 1] without ImageNet normalisation, as the authors' code feeds
    torchvision's VGG16. Keras ships VGG16's original (Caffe) ImageNet weights, not torchvision's, and they expect
    other inputs (BGR, 0..255, mean subtracted): the perceptual term has the authors' form, not their scale."""

    __name__ = "mse_vgg16"  # Keras names a scope after it: no "+"

    @staticmethod
    def fetch() -> str | None:
        """The local file of VGG16's weights, downloaded once (~58 MB) into ~/.keras/models."""
        from tfsr.keras import keras

        if VGG16_WEIGHTS is None:
            return None
        try:
            return keras.utils.get_file(VGG16_WEIGHTS.rsplit("/", 1)[1], VGG16_WEIGHTS, cache_subdir="models",
                                        file_hash=VGG16_WEIGHTS_MD5)  # fmt: skip
        except Exception as exc:  # noqa: BLE001  (Keras raises a bare Exception when the download fails)
            raise TfsrError(f"the loss mse+0.01vgg16 needs VGG16's ImageNet weights, which Keras downloads once and "
                            f"could not ({exc}); connect to the internet once, or pass --loss mse") from None  # fmt: skip

    def __init__(self, weight: float = 0.01):
        from tfsr.keras import keras

        vgg = keras.applications.VGG16(include_top=False, weights=self.fetch())
        vgg.trainable = False
        self.features = keras.Model(vgg.input, [vgg.get_layer(name).output for name in VGG16_FEATURES])
        self.weight = weight

    def __call__(self, y_true, y_pred):
        t, p = _unit(y_true, y_pred)
        distances = [tf.reduce_mean(tf.square(tf.cast(a, tf.float32) - tf.cast(b, tf.float32)), axis=[1, 2, 3])
                     for a, b in zip(self.features(t), self.features(p))]  # fmt: skip
        return mse(y_true, y_pred) + self.weight * tf.add_n(distances) / len(distances)


LOSSES = {"l1": l1, "mse": mse, "l1+ssim": l1_ssim, "charbonnier": charbonnier, "mse+0.01vgg16": MsePlusVgg16}


def _named_loss(name: str):
    if name not in LOSSES:
        raise TfsrError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    return LOSSES[name]


def check_loss(name: str) -> None:
    """Fails early, in one line, when the loss called ``name`` is unknown or its network's weights cannot be had;
    builds nothing."""
    loss = _named_loss(name)
    if isinstance(loss, type):
        loss.fetch()


def get_loss(name: str):
    """The loss called ``name`` (a recipe's or ``--loss``); a perceptual loss fetches its weights and builds its
    network here (inside the distribution strategy's scope when called there)."""
    loss = _named_loss(name)
    return loss() if isinstance(loss, type) else loss
