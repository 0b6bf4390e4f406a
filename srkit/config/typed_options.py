"""Strict conversion of plain YAML data into typed dataclasses.

Why not a schema library: the errors must name the dotted key path and the closest valid key, the same
rules must apply to dataclasses and to constructor signatures of registered components, and the whole
job is one small recursive function.
"""
from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from typing import Any, Literal, Union

from srkit.core.errors import OptionError, SrkitError
from srkit.core.registry import closest_name

__all__ = ['Component', 'convert', 'parse_dataclass', 'check_call_arguments', 'unknown_key_error', 'option',
           'construct']


def option(default: Any = dataclasses.MISSING, doc: str = '', *, factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with its documentation (docs/OPTIONS.md is generated from these)."""
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata={'doc': doc})
    return dataclasses.field(default=default, metadata={'doc': doc})


@dataclasses.dataclass
class Component:
    """A ``type:`` section: the registered name plus the keyword arguments given next to it."""

    type: str
    args: dict[str, Any] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {'type': self.type, **self.args}


def unknown_key_error(path: str, key: str, valid: list[str], where: str = '') -> OptionError:
    hint = closest_name(key, valid)
    suggestion = f' Did you mean "{_join(path, hint)}"?' if hint else ''
    valid_list = ', '.join(sorted(valid)) if valid else '(none)'
    return OptionError(f'Unknown option "{_join(path, key)}"{where}.{suggestion} Valid keys here: {valid_list}.',
                       key=_join(path, key))


def _join(path: str, key: str) -> str:
    return f'{path}.{key}' if path else key


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return 'null'
    if isinstance(tp, type):
        return {'str': 'string', 'int': 'integer', 'float': 'number', 'bool': 'boolean', 'dict': 'mapping',
                'list': 'list'}.get(tp.__name__, tp.__name__)
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return ' or '.join(_type_name(a) for a in typing.get_args(tp))
    if origin is Literal:
        return 'one of ' + ', '.join(repr(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        return 'list'
    if origin is dict:
        return 'mapping'
    return str(tp)


def _describe(value: Any) -> str:
    kind = {bool: 'boolean', int: 'integer', float: 'number', str: 'string', list: 'list', dict: 'mapping',
            type(None): 'null'}.get(type(value), type(value).__name__)
    shown = repr(value)
    return f'{kind} {shown[:60]}' if kind not in ('list', 'mapping') else kind


def convert(value: Any, tp: Any, path: str) -> Any:
    """Check ``value`` against the type hint ``tp`` and return it converted (e.g. 5000.0 -> 5000 for int)."""
    if tp is Any or tp is inspect.Parameter.empty:
        return value
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return convert(value, option, path)
            except OptionError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        raise OptionError(f'Option "{path}" must be {_type_name(tp)}, got {_describe(value)}.', key=path)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value in allowed:
            return value
        hint = closest_name(str(value), [str(a) for a in allowed]) if isinstance(value, str) else None
        suggestion = f' Did you mean "{hint}"?' if hint else ''
        raise OptionError(f'Option "{path}" must be {_type_name(tp)}, got {value!r}.{suggestion}', key=path)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise OptionError(f'Option "{path}" must be a list, got {_describe(value)}.', key=path)
        args = typing.get_args(tp)
        item_tp = args[0] if args else Any
        items = [convert(v, item_tp, f'{path}[{i}]') for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise OptionError(f'Option "{path}" must be a mapping, got {_describe(value)}.', key=path)
        _, value_tp = typing.get_args(tp) or (str, Any)
        return {str(k): convert(v, value_tp, _join(path, str(k))) for k, v in value.items()}
    if tp is Component:
        return _to_component(value, path)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return parse_dataclass(tp, value, path)
    return _convert_scalar(value, tp, path)


def _convert_scalar(value: Any, tp: Any, path: str) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)  # BasicSR files write iteration counts as !!float 5e3
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif isinstance(tp, type):
        if isinstance(value, tp):
            return value
    else:
        return value
    raise OptionError(f'Option "{path}" must be {_type_name(tp)}, got {_describe(value)}.', key=path)


def _to_component(value: Any, path: str) -> Component:
    if isinstance(value, Component):
        return value
    if not isinstance(value, dict):
        raise OptionError(f'Option "{path}" must be a mapping with a "type" key, got {_describe(value)}.', key=path)
    if 'type' not in value:
        raise OptionError(f'Option "{path}.type" is required: name the component to build.', key=f'{path}.type')
    if not isinstance(value['type'], str):
        raise OptionError(f'Option "{path}.type" must be a string, got {_describe(value["type"])}.', key=f'{path}.type')
    return Component(value['type'], {k: v for k, v in value.items() if k != 'type'})


def parse_dataclass(cls: type, data: Any, path: str = '') -> Any:
    """Build dataclass ``cls`` from a mapping: unknown keys, missing required keys and wrong types are errors."""
    if dataclasses.is_dataclass(data) and isinstance(data, cls):
        return data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise OptionError(f'Option "{path or "<top level>"}" must be a mapping, got {_describe(data)}.',
                          key=path or None)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            raise unknown_key_error(path, str(key), list(fields))
    values = {}
    for name, field in fields.items():
        if name in data:
            values[name] = convert(data[name], hints[name], _join(path, name))
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise OptionError(f'Option "{_join(path, name)}" is required ({_type_name(hints[name])}).',
                              key=_join(path, name))
    obj = cls(**values)
    check = getattr(obj, 'check', None)
    if check is not None:
        check(path)
    return obj


def check_call_arguments(target: Any, args: dict[str, Any], path: str, *, provided: tuple[str, ...] = (),
                         skip: tuple[str, ...] = (), what: str = '',
                         also_valid: tuple[str, ...] = ()) -> dict[str, Any]:
    """Check ``args`` against ``target``'s signature: unknown names, missing required ones, annotated types.

    ``provided``: parameters the framework fills in itself (e.g. ``scale`` for datasets), which the user
    may also set. ``skip``: leading parameters that are never options (e.g. an optimizer's ``params``).
    ``also_valid``: keys the caller takes out before this check, offered as suggestions for a misspelling.
    Returns the converted arguments.
    """
    signature = inspect.signature(target)
    params = {n: p for n, p in signature.parameters.items()
              if n not in skip and n != 'self' and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    try:
        hints = typing.get_type_hints(target.__init__ if inspect.isclass(target) else target)
    except Exception:  # unresolvable annotations in third-party code: check names only
        hints = {}
    where = f' ({what} does not take it)' if what else ''
    converted = {}
    for key, value in args.items():
        if key not in params:
            if takes_any:
                converted[key] = value
                continue
            raise unknown_key_error(path, key, [*also_valid, *params], where)
        converted[key] = convert(value, hints.get(key, Any), _join(path, key)) if key in hints else value
    for name, param in params.items():
        if param.default is param.empty and name not in args and name not in provided:
            raise OptionError(f'Option "{_join(path, name)}" is required by {what or "this component"}.',
                              key=_join(path, name))
    return converted


def construct(path: str, factory: Any, **kwargs: Any) -> Any:
    """Build a component from checked options; tell the user's mistakes apart from srkit's bugs.

    The user's (an OptionError naming ``path``): arguments that do not fit the signature, and a value the
    constructor rejects on purpose, with a ValueError or one of srkit's own errors (only the constructor
    knows that ``num_feat: -5`` or ``lr: -1`` is impossible). Anything else raised inside (KeyError,
    AttributeError, IndexError, RuntimeError, a TypeError from its body ...) is a bug in srkit or in the
    component: it propagates with its traceback, and the entry point reports it as a bug.
    """
    name = getattr(factory, '__name__', type(factory).__name__)
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError as exc:
        raise OptionError(f'Option "{path}": {name} does not take these arguments: {exc}.', key=path) from None
    except ValueError:  # no inspectable signature (a builtin): let the call itself decide
        pass
    try:
        return factory(**kwargs)
    except SrkitError as exc:
        if exc.key is None:
            exc.key = path
        raise
    except ValueError as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise OptionError(f'Option "{path}": {name} could not be built with these arguments: {detail}',
                          key=path) from None
