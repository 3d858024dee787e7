"""Data augmentation: a few test images and several keyed random versions of each, in one grid.

Each column after the first applies the same augmentation to all the images with its own key
(``fold_in(key, column)``), so every image gets its own random offset and coin in every column.
MNIST digits get ``RandomCrop(pad=3)`` (a shift of up to 3 pixels with zero fill); a mirrored digit
is another symbol, so they are not flipped. Fashion-MNIST clothes are also mirrored with
probability 1/2. The grid is drawn to a PNG when matplotlib is installed.

With ``--compare`` it also trains the book's SimpleConvNet on only :data:`COMPARE_TRAIN` training
images of ``mnist-small`` for :data:`COMPARE_EPOCHS` epochs (Adam, lr 0.001, batches of 50), once
on the raw images and once with ``fit(augment=RandomCrop(pad=2))``, and prints both accuracies on
its 2,000 test images (about a minute; with ``--quick`` a few seconds on fewer images and epochs).
``--quick`` also draws at most 3 versions of each image.

Run: ``python examples/augment_figure.py [--data mnist|fashion-mnist] [--images 8] [--versions 5]
[--compare] [--out runs/augment.png]``; the last line is ``augmented <n> images, mean abs change
<c>``, the mean absolute pixel change over all versions. The exit status is non-zero unless the
change is positive, no augmented image holds more ink (sum of pixels) than its original (zero fill
can only push ink out of the frame, and a mirror keeps it), and, with a full ``--compare``, the
augmented run scores higher than the plain one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from _common import example_parser, finish, positive_int, run_main, save_figure
from fnnet import models
from fnnet.datasets import Augmentation, Compose, HorizontalFlip, RandomCrop, compose, load_mnist, load_mnist_test
from fnnet.optim import adam
from fnnet.random import fold_in, key as make_key
from fnnet.train import fit
from fnnet.typing import Array

#: Pixels of zeros around each side before the crop (a shift of up to this many pixels).
PAD = 3
#: Ink may grow by float32 rounding of the sum only.
INK_TOL = 1e-3
#: ``--compare``: training images and epochs (and with ``--quick``), and the crop's padding.
COMPARE_TRAIN, COMPARE_EPOCHS = 500, 20
QUICK_TRAIN, QUICK_EPOCHS, QUICK_TEST = 100, 2, 200
COMPARE_PAD = 2
#: The largest grid drawn: rows (images) and augmented columns (versions).
MAX_IMAGES, MAX_VERSIONS = 100, 20


def first_test_images(data: str, n: int) -> tuple[Array, Array]:
    """The first ``n`` test images ``(n, 1, 28, 28)`` in [0, 1] and their labels."""
    if data == "mnist":
        x, t = load_mnist_test(flatten=False)
    else:
        _, (x, t) = load_mnist("fashion-mnist", flatten=False)
    return x[:n], t[:n]


def augmentation(data: str) -> Augmentation:
    """Shifts for digits; shifts and mirrors for clothes."""
    crop = RandomCrop(pad=PAD)
    return crop if data == "mnist" else compose(crop, HorizontalFlip(p=0.5))


def draw_grid(original: Array, versions: list[Array], title: str) -> Callable[[Any], Any]:
    """A ``save_figure`` drawer: one row per image, the original first, then its versions."""

    def draw(plt: Any) -> Any:
        n, cols = len(original), 1 + len(versions)
        fig, axes = plt.subplots(n, cols, figsize=(1.2 * cols, 1.2 * n + 0.4), squeeze=False)
        for i in range(n):
            for j, img in enumerate([original] + versions):
                ax = axes[i, j]
                ax.imshow(img[i, 0], cmap="gray", vmin=0.0, vmax=1.0)
                ax.set_xticks([])
                ax.set_yticks([])
                if i == 0:
                    ax.set_title("original" if j == 0 else f"key {j}", fontsize=8)
        fig.suptitle(title, fontsize=9)
        fig.tight_layout()
        return fig

    return draw


def compare(seed: int, quick: bool) -> tuple[float, float]:
    """Test accuracy of a SimpleConvNet trained on a few images, without and with random crops."""
    (x, t), (x_test, t_test) = load_mnist("mnist-small", flatten=False)
    n, epochs = (QUICK_TRAIN, QUICK_EPOCHS) if quick else (COMPARE_TRAIN, COMPARE_EPOCHS)
    if quick:
        x_test, t_test = x_test[:QUICK_TEST], t_test[:QUICK_TEST]
    accs = []
    for aug in (None, RandomCrop(pad=COMPARE_PAD)):
        result = fit(
            models.simple_convnet(), adam(0.001), (x[:n], t[:n]), key=make_key(seed), epochs=epochs,
            batch_size=50, test=(x_test, t_test), eval_train=False, progress="quiet", augment=aug,
        )  # fmt: skip
        accs.append(result.history.metric("test_acc")[-1])
    print(
        f"SimpleConvNet on {n} training images, {epochs} epochs: test accuracy "
        f"{accs[0]:.4f} without augmentation, {accs[1]:.4f} with RandomCrop(pad={COMPARE_PAD}) "
        f"({len(x_test)} test images)"
    )
    return accs[0], accs[1]


def main() -> None:
    parser = example_parser(__doc__, "augment.png")
    parser.add_argument("--data", choices=("mnist", "fashion-mnist"), default="mnist", help="test images to show")
    parser.add_argument("--images", type=positive_int, default=8, help="how many images (rows), default 8")
    parser.add_argument("--versions", type=positive_int, default=5, help="augmented versions per image, default 5")
    parser.add_argument("--compare", action="store_true", help="also train a small CNN without and with crops")
    args = parser.parse_args()
    if args.images > MAX_IMAGES or args.versions > MAX_VERSIONS:
        parser.error(f"the grid has at most {MAX_IMAGES} images (rows) and {MAX_VERSIONS} versions (columns)")
    versions_n = min(args.versions, 3) if args.quick else args.versions
    x, t = first_test_images(args.data, args.images)
    aug = augmentation(args.data)
    key = make_key(args.seed)
    versions = [aug(fold_in(key, j), x) for j in range(1, versions_n + 1)]
    print(f"{args.data}: labels {t.tolist()}, augmentation {aug!r}")
    change = float(np.mean([np.abs(v - x).mean() for v in versions]))
    ink = x.sum(axis=(1, 2, 3))
    grows = max(float((v.sum(axis=(1, 2, 3)) - ink).max()) for v in versions)
    print(f"{versions_n} versions each; largest gain of ink {grows:.2e}")
    parts = aug.transforms if isinstance(aug, Compose) else (aug,)
    title = f"{args.data}: " + " then ".join(repr(p) for p in parts)
    save_figure(draw_grid(x, versions, title), args.out)
    better = True
    if args.compare:
        plain, augmented = compare(args.seed, args.quick)
        better = args.quick or augmented > plain
    finish(f"augmented {len(x)} images, mean abs change {change:.3f}", change > 0 and grows <= INK_TOL and better)


if __name__ == "__main__":
    run_main(main)
