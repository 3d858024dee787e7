"""Data sets: IDX reading, MNIST / Fashion-MNIST look-up and download, keyed batching.

The package is laid out by role, and every public name is importable from ``fnnet.datasets``:

- :mod:`fnnet.datasets.idx`: :func:`read_idx`, the bounded reader of IDX files (raw or gzip);
- :mod:`fnnet.datasets.sources`: :func:`load_mnist` (``"mnist-small"`` embedded, ``"mnist"``,
  ``"fashion-mnist"`` or a directory), :func:`load_mnist_test`, :func:`search_paths` and the
  checked :func:`download`;
- :mod:`fnnet.datasets.sequence`: :func:`load_sequence` (the sequel's ``"addition"`` and
  ``"date"`` question/answer tasks, shipped, or a file), :func:`read_sequence_file`,
  :func:`decode` and :func:`encode` between ids and strings;
- :mod:`fnnet.datasets.batching`: :func:`shuffle`, :func:`train_val_split` and :func:`batches`,
  which draw their randomness from an explicit :class:`fnnet.random.Key` and never write into
  their inputs;
- :mod:`fnnet.datasets.augment`: keyed, pure augmentations of image batches ``(N, C, H, W)``:
  :class:`RandomCrop`, :class:`RandomTranslate`, :class:`HorizontalFlip`, :class:`RandomErasing`
  and :func:`compose`.

>>> from fnnet.datasets import load_mnist
>>> (x_train, t_train), (x_test, t_test) = load_mnist()
>>> x_train.shape, t_test.shape
((8000, 784), (2000,))
"""

from __future__ import annotations

from fnnet.datasets.augment import (
    Augmentation,
    Compose,
    HorizontalFlip,
    RandomCrop,
    RandomErasing,
    RandomTranslate,
    compose,
)
from fnnet.datasets.batching import batches, shuffle, train_val_split
from fnnet.datasets.idx import read_idx
from fnnet.datasets.sequence import (
    MAX_SEQUENCE_FILE_BYTES,
    SEQUENCE_TASKS,
    SequenceData,
    decode,
    encode,
    load_sequence,
    read_sequence_file,
)
from fnnet.datasets.sources import (
    MNIST_SMALL_TEST,
    MNIST_SMALL_TRAIN,
    NUM_CLASSES,
    download,
    load_mnist,
    load_mnist_test,
    search_paths,
)

__all__ = [
    "NUM_CLASSES",
    "MNIST_SMALL_TRAIN",
    "MNIST_SMALL_TEST",
    "read_idx",
    "load_mnist",
    "load_mnist_test",
    "search_paths",
    "download",
    "shuffle",
    "train_val_split",
    "batches",
    "Augmentation",
    "RandomCrop",
    "RandomTranslate",
    "HorizontalFlip",
    "RandomErasing",
    "Compose",
    "compose",
    "SequenceData",
    "SEQUENCE_TASKS",
    "MAX_SEQUENCE_FILE_BYTES",
    "load_sequence",
    "read_sequence_file",
    "decode",
    "encode",
]
