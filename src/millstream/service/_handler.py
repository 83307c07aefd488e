"""Checks a service handler against its declaration, so what is declared is what runs.

The runtime calls a handler with the value its input's codec decodes, a ``Context`` when it
takes a second parameter, and what the service's lifespan opened as the third; a plain
``def`` is called on the runner's thread one record at a time, an ``async def`` (or an object
whose ``__call__`` is one, or a ``functools.partial`` of either) is awaited, up to the
service's ``concurrency`` records at once (``check_concurrency``). ``check_handler``
refuses, when the service is declared, what would otherwise fail quietly at run time:

* an async generator function: its outputs would be yielded to nothing;
* ``concurrency`` > 1 on a plain ``def`` (only awaiting handlers can overlap on one thread),
  or on a stateful service (its state is checkpointed with one offset per partition, which
  records finishing out of order never reach together);
* a value parameter whose annotation cannot hold what an input stream decodes to — for
  example ``def f(order: Order)`` reading a stream named without a payload type, which carries
  ``bytes``, whether the stream was named or given by handle;
* a handler whose parameters do not fit the declaration: a third parameter without a
  lifespan to fill it, a lifespan whose value the handler has no parameter for, a
  resource parameter annotated with a type the lifespan's annotation says it does not yield,
  or an async lifespan (``@asynccontextmanager``) for a plain ``def`` handler.

An annotation it cannot evaluate (a name imported only under ``TYPE_CHECKING``), or one whose
runtime type it cannot tell (a ``TypeVar``, ``Literal``, a non-runtime ``Protocol``), is
accepted: the check refuses only what it knows will not match.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Set
from contextlib import AbstractContextManager
from typing import Any

from pydantic import BaseModel

from millstream.codecs import BytesCodec, Codec, JsonCodec, ModelCodec
from millstream.errors import InvalidRequestError

__all__ = ["DEFAULT_CONCURRENCY", "check_concurrency", "check_handler", "handler_function",
           "is_async_handler"]

#: records an ``async def`` handler of a stateless service runs at once unless it declares
#: ``concurrency``: enough to hide the latency of typical I/O (a 10 ms call: 1,600 records/s),
#: few enough not to flood what it calls
DEFAULT_CONCURRENCY = 16

#: the Python types a JSON payload decodes to
_JSON_TYPES: tuple[type, ...] = (dict, list, str, int, float, bool, type(None))


def check_handler(fn: Callable[..., Any], service: str, inputs: Mapping[str, Codec[Any]],
                  namespace: Mapping[str, Any] | None = None, *,
                  by_handle: Set[str] = frozenset(),
                  lifespan: Callable[..., Any] | None = None) -> bool:
    """Check ``fn`` as the handler of ``service`` reading ``inputs`` (stream name → codec,
    ``by_handle`` the names given as handles) with ``lifespan``; True when it takes a
    ``Context`` as its second parameter (always, with a lifespan).

    ``namespace`` helps evaluate annotations written as strings (``from __future__ import
    annotations``): the names visible where the handler was defined, besides its module's.
    Raises ``InvalidRequestError`` naming the service and saying what to write instead."""
    _refuse_async(fn, service)
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without a signature: nothing to check
        return lifespan is not None
    params = [p for p in signature.parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if lifespan is not None and len(params) != 3:
        raise InvalidRequestError(
            f"service {service!r} has a lifespan, so handler {_name(fn)} must take (value, "
            f"ctx, resource) — the third gets what {_name(lifespan)} opens — not "
            f"{len(params)} positional parameter{'s' if len(params) != 1 else ''}")
    if lifespan is None and (len(params) > 2 or not params):
        raise InvalidRequestError(
            f"service handler {_name(fn)!r} must take (value) or (value, ctx), not "
            f"{len(params)} positional parameters"
            + ("; a third (a resource) needs the service to declare lifespan=..."
               if len(params) == 3 else "")
        )
    value = params[0]
    annotation = _evaluate(value.annotation, fn, namespace)
    if annotation is not inspect.Parameter.empty:
        _check_annotation(annotation, value.name, fn, service, inputs, by_handle)
    if lifespan is not None:
        _check_resource(params[2], fn, lifespan, service, namespace)
        if not is_async_handler(fn) and inspect.isasyncgenfunction(inspect.unwrap(lifespan)):
            raise InvalidRequestError(
                f"service {service!r}: lifespan {_name(lifespan)} is an async context manager "
                f"(@asynccontextmanager), which only a service with an `async def` handler "
                f"enters (on its event loop); make {_name(fn)} `async def`, or write the "
                "lifespan with @contextmanager")
    return len(params) >= 2


# -- synchronous or awaited ----------------------------------------------------------------


def is_async_handler(fn: Callable[..., Any]) -> bool:
    """True when calling ``fn`` returns a coroutine to await: an ``async def``, an object whose
    ``__call__`` is one, or a ``functools.partial`` of either."""
    return _kind(fn) == _COROUTINE


def check_concurrency(fn: Callable[..., Any], service: str, concurrency: object, *,
                      stateful: bool) -> int:
    """The number of records ``service`` handles at once: ``concurrency`` as declared (None:
    ``DEFAULT_CONCURRENCY`` for an async stateless handler, else 1), refused where it cannot
    hold."""
    asynchronous = is_async_handler(fn)
    if concurrency is None:
        return DEFAULT_CONCURRENCY if asynchronous and not stateful else 1
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise InvalidRequestError(
            f"service {service!r}: concurrency={concurrency!r} must be an integer ≥ 1 (the "
            "number of records its async handler runs at once)")
    if concurrency > 1 and not asynchronous:
        raise InvalidRequestError(
            f"service {service!r}: concurrency={concurrency} needs an `async def` handler, "
            f"and {_name(fn)} is a plain `def`: a plain function holds the service's thread "
            "until it returns, so records cannot overlap. Make it `async def` (awaiting its "
            "I/O), or drop concurrency= (run more instances for CPU-bound work)")
    if concurrency > 1 and stateful:
        raise InvalidRequestError(
            f"service {service!r}: a stateful service runs one record at a time, not "
            f"concurrency={concurrency}: its state is checkpointed together with one input "
            "offset per partition, and records finishing out of order would leave state no "
            "offset matches (a restart would apply some records twice). Drop concurrency= "
            "(stateful async handlers run with 1), or keep the state in a table the handler "
            "updates itself")
    return concurrency


_COROUTINE = "an `async def` coroutine function"


def _refuse_async(fn: Callable[..., Any], service: str) -> None:
    kind = _kind(fn)
    if kind is None or kind == _COROUTINE:
        return
    raise InvalidRequestError(
        f"service {service!r}: handler {_name(fn)} is {kind}; a handler returns its outputs "
        "(or passes them to ctx.emit), it does not yield them. Write it as `async def` "
        "returning a list of outputs, or as a plain `def`"
    )


def _kind(fn: Callable[..., Any]) -> str | None:
    """How ``fn`` is asynchronous (an async generator function, a coroutine function, an
    object whose ``__call__`` is one), or None for a plain function."""
    target = handler_function(fn)
    kind = _async_kind(target)
    if (kind is None and callable(target) and not inspect.isroutine(target)
            and not isinstance(target, type)):
        kind = _async_kind(type(target).__call__)  # the class's, which the object's call runs
    return kind


def _async_kind(fn: Any) -> str | None:
    if inspect.isasyncgenfunction(fn):
        return "an async generator function"
    if inspect.iscoroutinefunction(fn):
        return _COROUTINE
    return None


# -- the value's annotation ----------------------------------------------------------------


def _evaluate(annotation: Any, fn: Callable[..., Any],
              namespace: Mapping[str, Any] | None) -> Any:
    """The annotation as an object; a string is evaluated where the handler was written, and
    one that cannot be evaluated counts as no annotation."""
    if not isinstance(annotation, str):
        return annotation
    code = _code_of(fn)
    globalns = getattr(code, "__globals__", {})
    try:
        return eval(annotation, dict(globalns), dict(namespace or {}))
    except Exception:  # a name not visible at run time (TYPE_CHECKING imports): not checked
        return inspect.Parameter.empty


def _code_of(fn: Any) -> Any:
    """The Python function whose source holds the handler's annotations."""
    while True:
        if isinstance(fn, functools.partial):
            fn = fn.func
        elif inspect.ismethod(fn):
            fn = fn.__func__
        elif not inspect.isroutine(fn) and not isinstance(fn, type) and callable(fn):
            fn = type(fn).__call__
        else:
            return inspect.unwrap(fn)


def _classes(annotation: Any) -> tuple[type, ...] | None:
    """The runtime classes a value of ``annotation`` may be an instance of; None for 'any'."""
    if annotation in (Any, object):
        return None
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _classes(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        found: list[type] = []
        for member in typing.get_args(annotation):
            classes = _classes(member)
            if classes is None:
                return None
            found += classes
        return tuple(found)
    if annotation is None:
        return (type(None),)
    if isinstance(origin, type):  # dict[str, Any], list[Order], Mapping[str, int] ...
        return (origin,)
    if isinstance(annotation, type):
        return (annotation,)
    return None  # a TypeVar, Literal, NewType ...: not something this check can tell


def _accepts(classes: tuple[type, ...], produced: tuple[type, ...]) -> bool:
    for cls in classes:
        for value_type in produced:
            try:
                if issubclass(value_type, cls):
                    return True
            except TypeError:  # a non-runtime Protocol or the like: cannot tell, so accept
                return True
    return False


def _produced(codec: Codec[Any]) -> tuple[type, ...] | None:
    """The types of the values ``codec`` decodes to; None when it cannot be known."""
    if isinstance(codec, ModelCodec):
        return (codec.model,)
    if isinstance(codec, BytesCodec):
        return (bytes,)
    if isinstance(codec, JsonCodec):
        return _JSON_TYPES
    return None


def _check_annotation(annotation: Any, param: str, fn: Callable[..., Any], service: str,
                      inputs: Mapping[str, Codec[Any]], by_handle: Set[str]) -> None:
    classes = _classes(annotation)
    if classes is None:
        return
    wrong = {stream: codec for stream, codec in inputs.items()
             if (produced := _produced(codec)) is not None and not _accepts(classes, produced)}
    if not wrong:
        return
    carried = " and ".join(
        f"input stream {stream!r} carries {_given(codec)}"
        + (" (the payload of a stream declared without a type)"
           if isinstance(codec, BytesCodec) else "")
        for stream, codec in wrong.items())
    name = _name(fn)
    given = f", so {name} would be given {_article(_given(next(iter(wrong.values()))))}" \
        if len(wrong) == 1 else ""
    fixes: list[str] = []
    models = [c for c in classes if issubclass(c, BaseModel)]
    if len(models) == 1 and not any(isinstance(c, ModelCodec) for c in wrong.values()):
        model = models[0].__name__
        if by_handle & set(wrong):
            declared = ", ".join(f"app.stream({s!r}, {model})" for s in wrong)
            fixes.append(f"declare {declared} to have it decoded as {model}")
        else:
            declared = ", ".join(f"{s!r}: {model if s in wrong else _given(c)}"
                                 for s, c in inputs.items())
            fixes.append(f"write inputs={{{declared}}} to have it decoded as {model}")
    union = " | ".join(dict.fromkeys(_given(c) for c in inputs.values()))
    fixes.append(f"annotate `{param}: {union}`")
    raise InvalidRequestError(
        f"service {service!r}: handler {name} takes `{param}: {_describe(annotation)}` but "
        f"{carried}{given}; {', or '.join(fixes)}"
    )


# -- the resource's annotation -------------------------------------------------------------


def _check_resource(param: inspect.Parameter, fn: Callable[..., Any],
                    lifespan: Callable[..., Any], service: str,
                    namespace: Mapping[str, Any] | None) -> None:
    """Refuse a resource parameter whose annotation cannot hold what ``lifespan`` is
    annotated to yield (``-> Iterator[DB]`` under ``@contextmanager``, or
    ``-> AbstractContextManager[DB]``)."""
    annotation = _evaluate(param.annotation, fn, namespace)
    if annotation is inspect.Parameter.empty:
        return
    wanted = _classes(annotation)
    if wanted is None:
        return
    opener = inspect.unwrap(lifespan)
    try:
        returns = _evaluate(inspect.signature(opener).return_annotation, opener, namespace)
    except (TypeError, ValueError):
        return
    if typing.get_origin(returns) not in (Iterator, Generator, Iterable,
                                          AbstractContextManager):
        return
    args = typing.get_args(returns)
    yielded = _classes(args[0]) if args else None
    if yielded is None or _accepts(wanted, yielded):
        return
    names = " | ".join(c.__name__ for c in yielded)
    raise InvalidRequestError(
        f"service {service!r}: handler {_name(fn)} takes `{param.name}: "
        f"{_describe(annotation)}` but its lifespan "
        f"{_name(lifespan)} yields {names}; annotate `{param.name}: {names}`")


def _given(codec: Codec[Any]) -> str:
    if isinstance(codec, ModelCodec):
        return codec.model.__name__
    if isinstance(codec, BytesCodec):
        return "bytes"
    if isinstance(codec, JsonCodec):
        return "dict"
    return type(codec).__name__


def _article(given: str) -> str:
    if given == "bytes":
        return "bytes"
    if given == "dict":
        return "JSON values (a dict)"
    return f"{'an' if given[:1].lower() in 'aeiou' else 'a'} {given}"


def _describe(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _name(fn: Any) -> str:
    target = handler_function(fn)
    name = getattr(target, "__qualname__", None)
    if name is None:
        name = f"{type(target).__qualname__}()"
    name = name.rsplit("<locals>.", 1)[-1]  # a function defined in a function: its own name
    return f"functools.partial({name})" if target is not fn else str(name)


def handler_function(fn: Any) -> Any:
    """The callable a ``functools.partial`` (of a partial ...) calls; ``fn`` otherwise."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return fn
