"""The container every loader returns."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

__all__ = ["LabeledImages"]

_SPLITS = ("train", "test")


def _check_split(split: object) -> str:
    if split not in _SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return str(split)


@dataclass(frozen=True, eq=False)
class LabeledImages:
    """Images and their labels; also a map-style dataset of ``(image, label)`` pairs.

    Attributes
    ----------
    images : Tensor
        ``[N, H, W]`` float32 intensities in [0, 1].
    labels : Tensor
        ``[N]`` int64 class indices.

    Examples
    --------
    >>> import torch
    >>> data = LabeledImages(torch.zeros(3, 8, 8), torch.tensor([0, 1, 2]))
    >>> len(data), data[1][1].item()
    (3, 1)
    >>> loader = torch.utils.data.DataLoader(data, batch_size=2)
    >>> next(iter(loader))[0].shape
    torch.Size([2, 8, 8])
    """

    images: Tensor
    labels: Tensor

    def __post_init__(self) -> None:
        if self.images.shape[:1] != self.labels.shape[:1] or self.labels.dim() != 1:
            raise ValueError(
                f"images {tuple(self.images.shape)} and labels {tuple(self.labels.shape)} "
                "must have the same length N, with labels of shape [N]"
            )

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.images[index], self.labels[index]
