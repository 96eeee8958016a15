"""Real benchmark data and cached model zoos.

Fashion-MNIST (Debian package ``dataset-fashion-mnist``) with fixed train / select / calibrate
/ test splits, and a zoo of three torch models (student, intermediate, teacher) trained once and
cached with their logits and measured costs. Importing this package needs only numpy; torch is
imported when a zoo is loaded.

Examples
--------
>>> from cascadekit.data import load_fashion_mnist, FASHION_MNIST_CLASSES
>>> images, labels = load_fashion_mnist("test")
>>> FASHION_MNIST_CLASSES[int(labels[0])]
'Ankle boot'
"""

from .cache import CACHE_ENV, cache_root, recipe_hash
from .fashion_mnist import (
    DEFAULT_FASHION_MNIST_DIR,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_ENV,
    SPLITS,
    fashion_mnist_dir,
    fashion_mnist_split_indices,
    fashion_mnist_split_sizes,
    load_fashion_mnist,
    load_fashion_mnist_splits,
)
from .pool import LogitPool
from .zoo import (
    CODE_VERSION,
    MODEL_NAMES,
    FashionMnistZoo,
    ModelRecipe,
    ProgressFn,
    ZooRecipe,
    default_recipe,
    load_fashion_mnist_zoo,
)

__all__ = [
    "CACHE_ENV",
    "CODE_VERSION",
    "DEFAULT_FASHION_MNIST_DIR",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_ENV",
    "MODEL_NAMES",
    "SPLITS",
    "FashionMnistZoo",
    "LogitPool",
    "ModelRecipe",
    "ProgressFn",
    "ZooRecipe",
    "cache_root",
    "default_recipe",
    "fashion_mnist_dir",
    "fashion_mnist_split_indices",
    "fashion_mnist_split_sizes",
    "load_fashion_mnist",
    "load_fashion_mnist_splits",
    "load_fashion_mnist_zoo",
    "recipe_hash",
]
