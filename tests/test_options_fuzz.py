"""Property-based fuzz of option files: any mutation of a valid file is accepted or rejected with srkit's
own error (OptionError/SrkitError), never a raw traceback. hypothesis is imported by this module only."""
import copy
import tempfile
from pathlib import Path

import pytest
import torch
import yaml
from training_helpers import TINY_TRAIN, make_images

from srkit.config.options import parse_options, parse_yaml_text
from srkit.core.errors import SrkitError
from srkit.core.registry import MODEL_REGISTRY
from srkit.data.loader import build_dataset

hypothesis = pytest.importorskip('hypothesis')
HealthCheck, given, settings, st = hypothesis.HealthCheck, hypothesis.given, hypothesis.settings, hypothesis.strategies

ROOT = Path(tempfile.mkdtemp(prefix='srkit-fuzz-'))
make_images(ROOT / 'hr', 2)
make_images(ROOT / 'val', 1, seed=1)
VALID = parse_yaml_text(TINY_TRAIN.format(root=ROOT))

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=12), st.just('1e-3'), st.just(''))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=6)


def paths(tree, prefix=()):
    yield prefix
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from paths(value, prefix + (key,))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            yield from paths(value, prefix + (index,))


ALL_PATHS = [p for p in paths(VALID) if p]


def _get(tree, path):
    for key in path:
        tree = tree[key]
    return tree


@st.composite
def mutated(draw):
    data = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(ALL_PATHS))
        parent = data
        try:
            for key in path[:-1]:
                parent = parent[key]
            action = draw(st.sampled_from(['replace', 'delete', 'rename', 'add']))
            last = path[-1]
            if action == 'replace':
                parent[last] = draw(VALUES)
            elif action == 'delete' and isinstance(parent, dict):
                del parent[last]
            elif action == 'rename' and isinstance(parent, dict):
                parent[str(last) + draw(st.text(min_size=1, max_size=3))] = parent.pop(last)
            elif action == 'add' and isinstance(parent, dict):
                parent[draw(st.text(max_size=10))] = draw(VALUES)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or retyped this path
    return data


NUMERIC_PATHS = [p for p in ALL_PATHS if p[0] != 'network_g' and isinstance(_get(VALID, p), (int, float))
                 and not isinstance(_get(VALID, p), bool)]


@st.composite
def perturbed(draw):
    """Structure intact, numbers replaced by small, zero, negative or non-finite values."""
    data = copy.deepcopy(VALID)
    for path in draw(st.lists(st.sampled_from(NUMERIC_PATHS), min_size=1, max_size=3, unique=True)):
        parent = _get(data, path[:-1])
        parent[path[-1]] = draw(st.one_of(st.integers(-3, 64), st.floats(-1.0, 2.0),
                                          st.sampled_from([0, 0.0, float('nan'), float('inf'), 10**9])))
    return data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(mutated(), perturbed()), st.booleans())
def test_mutated_options_fail_only_with_srkit_errors(data, is_train):
    """Accepted files are also built (model, losses, optimizer, scheduler, datasets): that must not crash
    either. A mutated network is only parsed: a huge width would try to allocate gigabytes."""
    try:
        options = parse_options(data, is_train=is_train, source='fuzz.yml')
    except SrkitError as exc:
        assert str(exc).startswith('fuzz.yml: ') and len(str(exc)) < 2000
        return
    if data.get('network_g') != VALID['network_g']:
        return
    try:
        MODEL_REGISTRY.get(options.model_type)(options, torch.device('cpu'))
        for entry in options.datasets.values():
            build_dataset(entry)
    except SrkitError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_as_yaml_fails_only_with_srkit_errors(text):
    try:
        data = parse_yaml_text(text, 'fuzz.yml')
        if isinstance(data, dict):
            parse_options(data, is_train=True, source='fuzz.yml')
    except SrkitError:
        pass


def test_round_trip_of_valid_file_through_yaml():
    again = parse_yaml_text(yaml.safe_dump(VALID))
    parse_options(again, is_train=True, source='x.yml')
