"""cnn_jax: convolutional networks in JAX/Flax.

Importing cnn_jax (or any of its modules) changes nothing process-wide: no environment
variable, no JAX configuration. Entry points that want cnn_jax's measured XLA:CPU
defaults call :func:`apply_xla_cpu_defaults` before the first JAX computation.
"""

from cnn_jax.xla_defaults import apply_xla_cpu_defaults

__all__ = ["__version__", "apply_xla_cpu_defaults"]

__version__ = "0.1.0"
