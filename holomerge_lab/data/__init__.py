"""Real data sets, offline first, and the task streams of continual learning built from them.

- sources.py: where pixels come from: the sets that ship in installed packages, image folders, the disk cache.
- datafiles.py: animal-mnist's and Fashion-MNIST's files where no package holds them: pinned, checked downloads.
- folder_sources.py: the CLIP benchmarks' folders (CIFAR-100, ImageNet-R, DomainNet, Office, CUB, Cars).
- tasks.py: the task types and how tasks are cut: class splits (CIL), domains, rotations and permutations (DIL).
- folder_streams.py: the CLIP benchmarks' streams over those folders, in the authors' class and domain orders.
- streams.py: the embedded streams, the registry ``STREAMS`` of every stream, and ``build_stream``.

The names below are the ones the rest of the package, the notebooks and the tests use; each lives in one of
those modules (patch it there, not here).
"""

from .folder_sources import FOLDER_IMAGE_SIZE, FOLDER_LAYOUTS, IMAGECLEF_CLASSES, imagenet_r_domain
from .folder_streams import CIFAR100_CLASS_ORDER, FOLDER_STREAMS
from .sources import (
    FOLDERS_SPLIT,
    SOURCES,
    Source,
    cache_dir,
    load_image_folder,
    load_source,
    seeded_split_note,
    train_view,
)
from .streams import DIL_STREAMS, MFA_CONFUSION_ORDER, STREAMS, build_stream, max_tasks, mnist_fashion_animal
from .tasks import MAX_DOMAINS, Task, TaskStream, confusion_groups, pixel_permutation

__all__ = [
    "CIFAR100_CLASS_ORDER",
    "FOLDERS_SPLIT",
    "FOLDER_IMAGE_SIZE",
    "FOLDER_LAYOUTS",
    "DIL_STREAMS",
    "FOLDER_STREAMS",
    "IMAGECLEF_CLASSES",
    "MAX_DOMAINS",
    "MFA_CONFUSION_ORDER",
    "SOURCES",
    "STREAMS",
    "Source",
    "Task",
    "TaskStream",
    "build_stream",
    "cache_dir",
    "confusion_groups",
    "imagenet_r_domain",
    "load_image_folder",
    "load_source",
    "max_tasks",
    "mnist_fashion_animal",
    "pixel_permutation",
    "seeded_split_note",
    "train_view",
]
