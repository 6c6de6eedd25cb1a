"""Installation script for cnn_jax.

``pip install -e .`` installs the library; ``pip install -e ".[test]"`` adds what
the test suite needs (PyTorch CPU is only an optional test oracle, installed by
``.ci/run``, never a runtime dependency); ``".[dev]"`` adds the linter.
"""

from pathlib import Path

from setuptools import find_packages, setup

# Version ranges are the ones this project is tested with (see README.md).
INSTALL_REQUIRES = [
    "jax>=0.10.2,<0.11",
    "jaxlib>=0.10.2,<0.11",
    "flax>=0.12.8,<0.13",
    "optax>=0.2.8,<0.3",
    "orbax-checkpoint>=0.12.8,<0.13",
    "tensorflow-datasets>=4.9.10,<5",
    "ml-collections>=1.1.0,<2",
    "absl-py>=2.1,<3",
    "numpy>=2.0,<3",
    "pillow>=10,<14",  # decodes the CIFAR-10 JPEGs
    # tensorflow-datasets imports it when preparing data but declares it only for py<3.9
    "importlib_resources>=6,<8",
    "tensorboard>=2.16,<3",  # event files (no TensorFlow needed)
    "safetensors>=0.4,<1",  # weight files without pickles
    "h5py>=3.10,<4",  # Keras weight files
]

EXTRAS_REQUIRE = {
    "test": [
        "pytest>=9.0,<10",
        "scipy>=1.14,<2",
        "ruff>=0.17,<0.18",  # tests/test_repo.py checks the tree is ruff-clean
        "keras>=3.15,<4",  # reference for the Keras-converted models (JAX backend)
        "matplotlib>=3.8,<4",  # notebooks/capsules.ipynb runs in tests/test_repo.py
    ],
    # Figures: cnn_jax.viz.plots, experiments.visualize, experiments.capsules_figures,
    # the notebooks (cnn_jax.viz computes without it).
    "viz": ["matplotlib>=3.8,<4"],
    # PyTorch CPU as a reference implementation in tests and the reader of .pth weight
    # files; install it with `pip install torch==2.13.0 torchvision==0.28.0` (see
    # .ci/run). The library imports it only to read a .pth file.
    "torch": ["torch>=2.13,<2.15", "torchvision>=0.28,<0.30"],
    "dev": [
        "pytest>=9.0,<10",
        "scipy>=1.14,<2",
        "ruff>=0.17,<0.18",
    ],
}

setup(
    name="cnn_jax",
    version="0.1.0",
    description="Convolutional networks in JAX/Flax: exact ops, layers, models and training.",
    long_description=(Path(__file__).parent / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["cnn_jax", "cnn_jax.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    license="Apache-2.0",
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
