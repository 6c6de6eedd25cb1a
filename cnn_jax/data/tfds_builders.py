"""A tensorflow-datasets builder for MR (``rt_polarity``), which tfds lacks.

Importing this module imports ``tensorflow_datasets`` (not TensorFlow) and registers the
builder under the tfds name ``rt_polarity``; :mod:`cnn_jax.data` only imports it when
``source='tfds'`` is asked for MR. Preparing it needs no TensorFlow when written in the
``array_record`` format::

    from cnn_jax.data.tfds_builders import RtPolarity
    builder = RtPolarity(data_dir="~/tensorflow_datasets")
    builder.download_and_prepare(
        file_format="array_record",
        # Optional: a folder with rt-polarity.pos and rt-polarity.neg; without it the
        # builder downloads Pang & Lee's rt-polaritydata.tar.gz.
        download_config=tfds.download.DownloadConfig(manual_dir="../shared/data/rt_polarity"),
    )
    source = builder.as_data_source(split="train")

The single ``train`` split holds all 10,662 sentences with an ``index`` (negative
sentences first, in file order, then positive ones), so the deterministic folds of
:func:`cnn_jax.data.load_dataset` can be cut from it exactly as from the local files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

__all__ = ["RtPolarity"]

_URL = "https://www.cs.cornell.edu/people/pabo/movie-review-data/rt-polaritydata.tar.gz"
_FILES = ("rt-polarity.neg", "rt-polarity.pos")


class RtPolarity(tfds.core.GeneratorBasedBuilder):
    """MR: Movie Review sentence polarity (Pang & Lee 2005), as used by Kim (2014)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}  # noqa: RUF012 - tfds' convention
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Optionally place rt-polarity.pos and rt-polarity.neg (latin-1, one sentence a "
        "line) in the manual directory; otherwise they are downloaded from " + _URL
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Movie Review sentence polarity, 5,331 positive and 5,331 negative.",
            features=tfds.features.FeaturesDict(
                {
                    "sentence": tfds.features.Text(),
                    "label": tfds.features.ClassLabel(names=["negative", "positive"]),
                    "index": np.int32,
                }
            ),
            supervised_keys=("sentence", "label"),
            homepage="https://www.cs.cornell.edu/people/pabo/movie-review-data/",
            citation=(
                "@inproceedings{pang2005seeing, title={Seeing stars: Exploiting class "
                "relationships for sentiment categorization with respect to rating "
                "scales}, author={Pang, Bo and Lee, Lillian}, booktitle={ACL}, year={2005}}"
            ),
        )

    def _split_generators(self, dl_manager: Any) -> dict[str, Iterator]:
        folder = None
        try:
            manual = dl_manager.manual_dir
            if all(os.path.isfile(os.path.join(manual, f)) for f in _FILES):
                folder = os.fspath(manual)
        except (AssertionError, ValueError):
            folder = None
        if folder is None:  # pragma: no cover - needs internet
            folder = os.path.join(
                os.fspath(dl_manager.download_and_extract(_URL)), "rt-polaritydata"
            )
        return {"train": self._generate_examples(folder)}

    def _generate_examples(self, folder: str) -> Iterator[tuple[int, dict[str, Any]]]:
        index = 0
        for label, fname in enumerate(_FILES):
            with open(os.path.join(folder, fname), encoding="latin-1") as f:
                for line in f:
                    sentence = line.strip()
                    if not sentence:
                        continue
                    yield index, {"sentence": sentence, "label": label, "index": index}
                    index += 1
