"""User mistakes and srkit's bugs are told apart: the first get one message and exit 2, the second keep their
traceback and exit 70; errors carry the option key and file as attributes, also across DataLoader workers."""
import pickle

import numpy as np
import pytest
import torch

from srkit.archs import create
from srkit.config.options import LoaderOptions
from srkit.config.typed_options import construct
from srkit.core.errors import EXIT_BUG, EXIT_USER_ERROR, DataError, OptionError
from srkit.data.loader import build_dataloader
from srkit.engine.cli import run_entry_point


def factory_with_a_bug(width: int = 4) -> None:
    return {}['oops']


def factory_that_rejects(width: int = 4) -> int:
    if width < 1:
        raise ValueError(f'width must be positive, got {width}')
    return width


def test_signature_mismatch_and_rejected_values_are_the_users():
    with pytest.raises(OptionError, match='network_g') as caught:
        construct('network_g', factory_that_rejects, widht=3)
    assert caught.value.key == 'network_g'
    with pytest.raises(OptionError, match='width must be positive, got -5') as caught:
        construct('network_g', factory_that_rejects, width=-5)
    assert caught.value.key == 'network_g'


@pytest.mark.parametrize('error', [KeyError, AttributeError, IndexError, RuntimeError, TypeError, ZeroDivisionError])
def test_anything_else_raised_inside_a_constructor_is_a_bug_and_keeps_its_type(error):
    def broken(width: int = 4) -> None:
        raise error('inside')
    with pytest.raises(error, match='inside'):
        construct('network_g', broken, width=3)


def test_a_real_architecture_rejecting_a_size_is_an_option_error():
    with pytest.raises(OptionError, match='num_feat'):
        create('EDSR', 2, num_feat=-5)


def test_entry_point_exit_statuses(capsys):
    def user_mistake() -> None:
        raise OptionError('Option "x" is wrong.', key='x', file='a.yml')

    with pytest.raises(SystemExit) as exited:
        run_entry_point(user_mistake)
    err = capsys.readouterr().err
    assert exited.value.code == EXIT_USER_ERROR == 2
    assert err == 'srkit: error: a.yml: Option "x" is wrong.\n'

    with pytest.raises(SystemExit) as exited:
        run_entry_point(lambda: construct('network_g', factory_with_a_bug))
    err = capsys.readouterr().err
    assert exited.value.code == EXIT_BUG == 70
    assert 'bug in srkit' in err.splitlines()[0] and 'Traceback' in err and "KeyError: 'oops'" in err


def test_errors_pickle_with_their_attributes():
    error = pickle.loads(pickle.dumps(DataError('bad image', key='datasets.train', file='a.png')))
    assert (type(error), error.message, error.key, error.file, str(error)) == \
        (DataError, 'bad image', 'datasets.train', 'a.png', 'a.png: bad image')


class _Broken(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> dict:
        if index == 2:
            raise DataError('cannot decode', file=f'img{index}.png')
        return {'lq': torch.from_numpy(np.zeros((3, 2, 2), np.float32))}


@pytest.mark.parametrize('workers', [0, 2])
def test_a_worker_error_reaches_the_main_process_whole(workers):
    loader = build_dataloader(_Broken(), LoaderOptions(num_worker_per_gpu=workers), list(range(4)), 'test', seed=0)
    with pytest.raises(DataError) as caught:
        list(loader)
    assert caught.value.file == 'img2.png' and str(caught.value) == 'img2.png: cannot decode'
