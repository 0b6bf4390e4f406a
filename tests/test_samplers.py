"""EnlargedSampler: deterministic keys, enlarge ratio, exact mid-epoch resume, sharding that adds up."""
from collections import Counter

import pytest

from srkit.config.options import LoaderOptions
from srkit.core.errors import OptionError
from srkit.data.samplers import EnlargedSampler, resolve_key, sample_seed


def epoch(sampler: EnlargedSampler, number: int, start: int = 0) -> list[tuple[int, int]]:
    sampler.set_epoch(number, start)
    return list(sampler)


def test_same_seed_and_epoch_give_the_same_keys():
    a, b = EnlargedSampler(20, seed=7), EnlargedSampler(20, seed=7)
    assert epoch(a, 3) == epoch(b, 3)
    assert [i for i, _ in epoch(a, 3)] != [i for i, _ in epoch(a, 4)]  # a new permutation each epoch
    assert epoch(a, 3) != epoch(EnlargedSampler(20, seed=8), 3)
    assert sorted(i for i, _ in epoch(a, 3)) == list(range(20))


def test_no_shuffle_keeps_order_but_seeds_still_vary():
    keys = epoch(EnlargedSampler(5, seed=1, shuffle=False, enlarge_ratio=2), 0)
    assert [i for i, _ in keys] == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]
    assert len({s for _, s in keys}) == 10
    assert keys[0][1] == sample_seed(1, 0, 0) and 0 <= keys[0][1] < 2 ** 63


def test_enlarge_ratio_repeats_every_index():
    sampler = EnlargedSampler(7, seed=0, enlarge_ratio=5)
    keys = epoch(sampler, 2)
    assert len(sampler) == sampler.num_samples == len(keys) == 35
    assert Counter(i for i, _ in keys) == {i: 5 for i in range(7)}
    assert len({s for _, s in keys}) == 35  # each repeat is augmented differently


@pytest.mark.parametrize('replicas', [1, 3])
def test_resume_mid_epoch_yields_exactly_the_remainder(replicas):
    for rank in range(replicas):
        full = epoch(EnlargedSampler(11, seed=5, enlarge_ratio=2, num_replicas=replicas, rank=rank), 4)
        resumed = EnlargedSampler(11, seed=5, enlarge_ratio=2, num_replicas=replicas, rank=rank)
        for start in (0, 1, 6, len(full)):
            resumed.set_epoch(4, start=start)
            assert len(resumed) == len(full) - start
            assert list(resumed) == full[start:]
    with pytest.raises(ValueError, match='start'):
        resumed.set_epoch(4, start=len(full) + 1)


def test_resolve_key():
    index, rng = resolve_key(4)
    assert index == 4 and rng is None
    index, rng = resolve_key((4, 99))
    assert index == 4 and rng.integers(1 << 30) == resolve_key((0, 99))[1].integers(1 << 30)


def test_invalid_arguments():
    with pytest.raises(ValueError, match='rank'):
        EnlargedSampler(5, 0, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match='seed'):
        EnlargedSampler(5, -1)
    with pytest.raises(ValueError, match='dataset_size'):
        EnlargedSampler(0, 1)


def test_loader_options_check_names_the_key():
    with pytest.raises(OptionError, match='"datasets.train.batch_size_per_gpu" must be >= 1'):
        LoaderOptions(batch_size_per_gpu=0).check('datasets.train')
    with pytest.raises(OptionError, match='pin_memory'):
        LoaderOptions(prefetch_mode='cuda').check('datasets.train')
    LoaderOptions(prefetch_mode='cuda', pin_memory=True).check('datasets.train')
