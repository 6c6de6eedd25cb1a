"""cnn_jax: convolutional networks in JAX/Flax.

Importing the package appends measured default XLA flags to ``XLA_FLAGS`` when no JAX
backend exists yet (see ``cnn_jax.xla_defaults``; opt out with
``CNN_JAX_XLA_DEFAULTS=0``).
"""

from cnn_jax import xla_defaults  # noqa: F401  (sets the default XLA flags)

__version__ = "0.1.0"
