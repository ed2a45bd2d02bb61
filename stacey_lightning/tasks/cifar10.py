"""Built-in task ``cifar10``: torchvision's ResNet-18 adapted to 32x32 images, on CIFAR-10.

The network is ``torchvision.models.resnet18(num_classes=10)`` with the ImageNet stem (7x7 stride-2
convolution, then max pooling) replaced by a 3x3 stride-1 convolution and no pooling, the usual
adaptation to 32x32 inputs (as in the Stacey paper's CIFAR experiments). Training uses the standard
augmentation (random crop with 4-pixel padding, horizontal flip); validation is the 10,000-image
CIFAR-10 test set, unaugmented.

Data: torchvision's CIFAR10 in ``data_dir`` (a folder holding ``cifar-10-batches-py``). It is
downloaded only when asked (``download=True``, needs network). ``smoke=True`` replaces it by a few
seeded random images, an offline mode meant only for tests: its accuracy means nothing.
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from stacey_lightning.lightning.mixin import StaceyMixin
from stacey_lightning.tasks import build_seeded, named_options
from stacey_lightning.tasks.digits import EpochShuffle

__all__ = [
    "DEFAULT_DATA_DIR",
    "CIFAR10_FILES",
    "LR",
    "P",
    "resnet18_32x32",
    "CIFAR10Module",
    "CIFAR10DataModule",
    "make_cifar10",
]

DEFAULT_DATA_DIR = Path.home() / ".cache" / "stacey-lightning" / "cifar10"
# What torchvision's CIFAR10 reads, below data_dir.
CIFAR10_FILES = tuple(
    f"cifar-10-batches-py/{name}"
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")
)
# Per-channel mean and standard deviation of the CIFAR-10 training images.
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
# Smoke mode: a few generated images, so that a CPU test epoch takes seconds.
SMOKE_TRAIN_IMAGES = 16
SMOKE_VAL_IMAGES = 8
# Default Stacey step and geometry. The paper found p close to 2 best for ResNet-18 on CIFAR. At p = 2
# the primal step is lr * c with c an average of gradients, while SGD with momentum 0.9 steps by
# lr * (a sum of about 10 gradients): the usual SGD recipe (lr 0.1, momentum 0.9) corresponds to
# Stacey lr ~ 1. Half of that, as a starting point; not measured on CIFAR-10 here (offline machine).
LR = 0.5
P = 2.0


class CIFAR10DataModule(pl.LightningDataModule):
    """CIFAR-10 from torchvision (or, with ``smoke=True``, seeded random 3x32x32 images and labels).

    Batches are (images float32 (batch, 3, 32, 32) normalised, labels int64 (batch,)).
    """

    def __init__(
        self,
        data_dir: str | Path | None = None,
        download: bool = False,
        smoke: bool = False,
        batch_size: int = 128,
        num_workers: int = 2,
        seed: int = 0,
    ):
        super().__init__()
        self.data_dir = Path(data_dir).expanduser() if data_dir is not None else DEFAULT_DATA_DIR
        self.download = download
        self.smoke = smoke
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed

    def _check_present(self) -> None:
        missing = [name for name in CIFAR10_FILES if not (self.data_dir / name).is_file()]
        if missing:
            what = (
                "no cifar-10-batches-py folder"
                if len(missing) == len(CIFAR10_FILES)
                else f"missing {', '.join(missing)}"
            )
            raise FileNotFoundError(
                f"CIFAR-10 is not in data_dir={str(self.data_dir)!r} ({what}). "
                "To download it (about 170 MB, needs network), pass download=True "
                "(on the command line: --task-option download=true); or point data_dir at a folder that "
                "already holds cifar-10-batches-py (--task-option data_dir=/path/to/folder)."
            )

    def prepare_data(self) -> None:
        # Runs once per machine, before setup on every process: the one place to download.
        if self.smoke:
            return
        if self.download:
            from torchvision.datasets import CIFAR10

            for train in (True, False):
                CIFAR10(self.data_dir, train=train, download=True)
        self._check_present()

    def setup(self, stage: str | None = None) -> None:
        if self.smoke:
            generator = torch.Generator().manual_seed(self.seed)
            self.train_set, self.val_set = (
                TensorDataset(
                    torch.randn(count, 3, 32, 32, generator=generator),
                    torch.randint(0, 10, (count,), generator=generator),
                )
                for count in (SMOKE_TRAIN_IMAGES, SMOKE_VAL_IMAGES)
            )
            return
        self._check_present()
        from torchvision import transforms
        from torchvision.datasets import CIFAR10

        normalize = [transforms.ToTensor(), transforms.Normalize(MEAN, STD)]
        augment = [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()]
        self.train_set = CIFAR10(self.data_dir, train=True, transform=transforms.Compose(augment + normalize))
        self.val_set = CIFAR10(self.data_dir, train=False, transform=transforms.Compose(normalize))

    def train_dataloader(self) -> DataLoader:
        # The order depends on (seed, epoch) only: trials with one seed see the same batches, and a
        # run resumed from a checkpoint sees the batches an uninterrupted run would.
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            sampler=EpochShuffle(len(self.train_set), self.seed),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            self.val_set,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )


def resnet18_32x32(num_classes: int = 10) -> nn.Module:
    """torchvision's ResNet-18 with a 3x3 stride-1 stem and no max pooling, for 32x32 inputs."""
    from torchvision.models import resnet18

    network = resnet18(num_classes=num_classes)
    network.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    network.maxpool = nn.Identity()
    return network


class CIFAR10Module(StaceyMixin, pl.LightningModule):
    """ResNet-18 (32x32 variant) classifier trained with Stacey (configured through ``StaceyMixin``).

    Input: images (batch, 3, 32, 32); output: logits (batch, 10). Logs ``train_loss`` (cross-entropy
    in nats, every step), and per validation epoch ``val_loss`` (nats) and ``val_acc`` (fraction correct).

    Args:
        num_classes: outputs of the classifier. Default 10.
        lr: Stacey's primal step, saved as a hyperparameter (``set_stacey_config`` overrides it).
            Default ``LR``.
        p: Stacey's exponent, saved likewise. Default ``P``.
        foreach: passed to Stacey; True skips the compiled kernel (no compile time). Default None.
    """

    def __init__(self, num_classes: int = 10, lr: float = LR, p: float = P, foreach: bool | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.network = resnet18_32x32(num_classes)
        self.val_nats = MeanMetric()
        # average="micro": the fraction of images classified right, the number papers report.
        self.val_accuracy = MulticlassAccuracy(num_classes=num_classes, average="micro")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(images)

    def training_step(self, batch, batch_index: int) -> torch.Tensor:
        images, labels = batch
        loss = F.cross_entropy(self(images), labels)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_index: int) -> None:
        images, labels = batch
        logits = self(images)
        self.val_nats.update(F.cross_entropy(logits, labels), weight=len(labels))
        self.val_accuracy.update(logits, labels)

    def on_validation_epoch_end(self) -> None:
        self.log("val_loss", self.val_nats.compute())
        self.log("val_acc", self.val_accuracy.compute())
        self.val_nats.reset()
        self.val_accuracy.reset()


@named_options("cifar10")
def make_cifar10(
    trial=None,
    data_dir: str | Path | None = None,
    download: bool = False,
    smoke: bool = False,
    batch_size: int = 128,
    num_workers: int = 2,
    seed: int = 0,
    lr: float = LR,
    p: float = P,
    foreach: bool | None = None,
):
    """Build the ``cifar10`` task: (CIFAR10Module, CIFAR10DataModule). Monitor "val_acc", maximize.

    trial: accepted for the task contract; cifar10 suggests no hyperparameters of its own.
    data_dir: folder holding (or to receive) cifar-10-batches-py (default ``DEFAULT_DATA_DIR``,
    ~/.cache/stacey-lightning/cifar10); download: fetch it if missing (default False, needs network);
    smoke: offline test mode on random images (default False); batch_size: images per step (default 128);
    num_workers: data-loading processes (default 2); seed: weight initialisation and data order (default 0).
    lr, p, foreach: passed to CIFAR10Module.
    """
    module = build_seeded(seed, lambda: CIFAR10Module(lr=lr, p=p, foreach=foreach))
    return module, CIFAR10DataModule(
        data_dir=data_dir, download=download, smoke=smoke, batch_size=batch_size, num_workers=num_workers, seed=seed
    )
