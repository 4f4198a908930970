"""A data order that is a pure function of (seed, position), so training resumes exactly.

The stream of example indices is the concatenation of one random permutation of the dataset per
epoch, permutation `e` drawn from a generator seeded with `(seed, e)` (never the global RNG). Batch
`k` is the slice `[k * batch_size, (k + 1) * batch_size)` of that stream: batches may straddle an
epoch boundary, so no example is dropped and any dataset size works. A checkpoint stores only the
number of batches consumed; resuming rebuilds the loader starting from there and sees exactly the
batches an uninterrupted run would have seen.

Datasets must return the same item for the same index (vidgen's datasets do: their randomness is
seeded per index), and DataLoader workers ignore Ctrl-C so that the trainer, not a dying worker,
decides when to stop (see `Trainer`).
"""

from __future__ import annotations

import functools
import signal
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from vidgen.errors import VidgenError


class ItemView(Dataset):
    """A view of `dataset` whose item i is `transform(dataset[i], i)`: e.g. only the keys a kind needs
    (Shapes items also carry audio, depth, flow and labels that a VAE never looks at: no point
    collating them). `transform` should be a module-level function or a functools.partial of one, so
    the view pickles for DataLoader worker processes."""

    def __init__(self, dataset: Dataset, transform: Callable[[dict[str, Any], int], dict[str, Any]]):
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.transform(self.dataset[index], index)


def _select(item: dict[str, Any], index: int, keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: item[k] for k in keys}


class SelectKeys(ItemView):
    """A view of a dataset whose items keep only `keys`."""

    def __init__(self, dataset: Dataset, keys: Sequence[str]):
        super().__init__(dataset, functools.partial(_select, keys=tuple(keys)))


def epoch_permutation(num_examples: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of epoch `epoch`: a permutation of range(num_examples), (num_examples,) int64."""
    generator = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(num_examples, generator=generator)


class ResumableBatchSampler(Sampler[list[int]]):
    """Endless batches of indices from seeded per-epoch permutations, starting at batch `start_batch`.

    Yields lists of `batch_size` indices forever; `start_batch` = number of batches already consumed.
    """

    def __init__(self, num_examples: int, batch_size: int, seed: int, start_batch: int = 0,
                 shuffle: bool = True):
        if num_examples <= 0:
            raise VidgenError("the dataset is empty (0 examples): nothing to train on")
        if batch_size <= 0:
            raise VidgenError(f"batch_size must be a positive integer, got {batch_size}")
        self.num_examples = num_examples
        self.batch_size = batch_size
        self.seed = seed
        self.start_batch = start_batch
        self.shuffle = shuffle

    def _order(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(self.num_examples))
        return epoch_permutation(self.num_examples, self.seed, epoch).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        position = self.start_batch * self.batch_size
        epoch, offset = divmod(position, self.num_examples)
        order = self._order(epoch)
        while True:
            batch = []
            while len(batch) < self.batch_size:
                if offset == self.num_examples:
                    epoch, offset = epoch + 1, 0
                    order = self._order(epoch)
                take = min(self.batch_size - len(batch), self.num_examples - offset)
                batch.extend(order[offset:offset + take])
                offset += take
            yield batch

    def __len__(self) -> int:  # endless; DataLoader only needs this for len(loader), which we never call
        raise TypeError("ResumableBatchSampler is endless")


def _ignore_sigint(worker_id: int) -> None:
    # Workers share the terminal's process group: without this, Ctrl-C kills them mid-batch and the
    # trainer could not finish its step and write a clean checkpoint.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def make_loader(dataset: Dataset, batch_size: int, seed: int, start_batch: int = 0, num_workers: int = 0,
                collate_fn: Callable[[Sequence[Any]], Any] | None = None, shuffle: bool = True,
                pin_memory: bool = False) -> Iterator[Any]:
    """An endless iterator of collated batches, resumable at `start_batch` (see module docstring)."""
    sampler = ResumableBatchSampler(len(dataset), batch_size, seed, start_batch, shuffle=shuffle)
    # Without its own generator, creating the iterator would draw the workers' base seed from the
    # global torch RNG, and a resumed run (which creates it at another point) would diverge.
    base_seed = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(start_batch) + 7)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, collate_fn=collate_fn,
                        worker_init_fn=_ignore_sigint if num_workers > 0 else None,
                        persistent_workers=False, pin_memory=pin_memory, generator=base_seed)
    return iter(loader)
