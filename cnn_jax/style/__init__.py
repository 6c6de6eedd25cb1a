"""Neural style transfer: Gatys et al.'s optimization and Li et al.'s universal WCT.

* ``features``: VGG-19's convolutions as a named-feature extractor (``conv1_1`` ...
  ``relu5_4``, ``pool1`` ...) with ``cnn_jax.models.VGG19``'s parameter tree, and the
  preprocessing that matches the weights (torchvision or Caffe).
* ``losses``: Gram matrices, content, style and total-variation losses.
* ``transfer``: image optimization with L-BFGS or Adam, coarse-to-fine, colour
  preservation; ``gatys_loss``, the objective itself.
* ``wct``: whitening and colouring transforms (``cnn_jax.style.wct.wct``; the
  submodule keeps the name) and the decoders that invert ``relu1_1`` ... ``relu5_1``.
* ``images``: reading and writing images.
"""

from cnn_jax.style.features import (
    LAYERS,
    PREPROCESSING,
    VGGFeatures,
    deprocess,
    load_vgg19,
    min_image_size,
    preprocess,
    select_params,
)
from cnn_jax.style.images import load_image, save_image
from cnn_jax.style.losses import (
    CONTENT_LAYERS,
    STYLE_LAYERS,
    StyleWeights,
    content_loss,
    gram_matrix,
    layer_style_loss,
    style_loss,
    total_loss,
    tv_loss,
)
from cnn_jax.style.transfer import (
    gatys_loss,
    luminance,
    match_luminance,
    preserve_colour,
    stylize,
    stylize_multiscale,
)
from cnn_jax.style.wct import (
    WCTAutoencoder,
    WCTDecoder,
    reconstruction_loss,
    universal_stylize,
)

__all__ = [
    "CONTENT_LAYERS",
    "LAYERS",
    "PREPROCESSING",
    "STYLE_LAYERS",
    "StyleWeights",
    "VGGFeatures",
    "WCTAutoencoder",
    "WCTDecoder",
    "content_loss",
    "deprocess",
    "gatys_loss",
    "gram_matrix",
    "layer_style_loss",
    "load_image",
    "load_vgg19",
    "luminance",
    "match_luminance",
    "min_image_size",
    "preprocess",
    "preserve_colour",
    "reconstruction_loss",
    "save_image",
    "select_params",
    "style_loss",
    "stylize",
    "stylize_multiscale",
    "total_loss",
    "tv_loss",
    "universal_stylize",
]
