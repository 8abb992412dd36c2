"""Where split-mnist-fashion-animal's class order comes from: θ0's zero-shot confusion over the 30 classes.

300 training images a class (seeded); prototypes (the pre-trained model's normalised mean embedding per class)
from every other one, the confusion counted on the rest, then `data.confusion_groups` in groups of 5. Prints the
order and whether it equals `data.MFA_CONFUSION_ORDER` (the stream's default).

    OMP_NUM_THREADS=1 python benchmarks/confusion_order.py
"""

from __future__ import annotations

import numpy as np
import torch

from holomerge_lab import data as D
from holomerge_lab.experiment.evaluation import features
from holomerge_lab.method.linearize import forward_fn
from holomerge_lab.models.features import trunk_features
from holomerge_lab.models.heads import head_logits, prototype_head
from holomerge_lab.models.zoo import build_backbone

PER_CLASS, GROUP, SEED = 300, 5, 123


def main() -> None:
    source = D.mnist_fashion_animal()
    rng = np.random.default_rng(SEED)
    y = source.train_labels.numpy()
    pick = np.sort(
        np.concatenate([rng.choice(np.flatnonzero(y == c), PER_CLASS, replace=False) for c in range(30)])
    )
    images, labels = source.train_images[pick], source.train_labels[pick]
    backbone = build_backbone("effnet-lite0")
    named = dict(backbone.top.named_parameters())
    theta0 = {n: named[n].detach().clone() for n in (*backbone.trainable, backbone.bias)}
    embed = forward_fn(backbone.top, theta0, tangent=False)
    embeddings = features(embed, theta0, trunk_features(backbone, images, progress=True))
    half = torch.arange(len(labels)) % 2 == 0  # prototypes from one half, confusion on the other
    head = prototype_head(embeddings[half], labels[half], tuple(range(30)))
    predicted = head_logits(embeddings[~half], head).argmax(1).numpy()
    confusion = np.zeros((30, 30), dtype=int)
    np.add.at(confusion, (labels[~half].numpy(), predicted), 1)
    order = D.confusion_groups(confusion, GROUP)
    print(f"zero-shot 30-way accuracy {np.trace(confusion) / confusion.sum():.4f}")
    for t in range(30 // GROUP):
        print(
            f"task {t + 1}: " + ", ".join(source.class_names[c] for c in order[GROUP * t : GROUP * (t + 1)])
        )
    print("order", order, "== MFA_CONFUSION_ORDER:", tuple(order) == D.MFA_CONFUSION_ORDER)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
