"""Read a joblib file's pickle without running it, and refuse it if it names what no model needs.

Unpickling calls whatever the pickle names. This module walks the opcodes (pickletools) on a
small model of the unpickler's stack, so that it knows every global the file names, which of
them the unpickling would call, and where joblib's raw array bytes sit between the opcodes
(joblib writes each numpy array's data right after the BUILD of its NumpyArrayWrapper, and an
object array as a pickle of its own there). A global must be:

- on the allow-list below, or in a package a scikit-learn model is made of (sklearn, numpy,
  scipy, pandas) outside their parts that read or write files, fetch, evaluate or test;
  a name such a module merely imports from elsewhere is judged where it is defined;
- and, when the unpickling calls it, a class or one of the functions that rebuild what those
  packages pickle (numpy's array and scalar reconstructors, Cython's `__pyx_unpickle_*`, ...).

`MODELFLY_PICKLE_ALLOW` (Settings.pickle_allow) adds modules or module.names of one's own.
Forms that joblib does not write (out-of-band buffers, persistent ids, copyreg extensions, an
array wrapper built another way, an array inside a frame) are refused rather than guessed at.
"""

import _compat_pickle  # the unpickler's own map of Python 2 names (protocols 0-2)
import bz2
import gzip
import importlib
import io
import lzma
import pickletools
import zlib
from collections.abc import Iterable

import numpy

from modelfly.settings import DOTTED_NAME

ARRAY_WRAPPER = "joblib.numpy_pickle.NumpyArrayWrapper"
PACKAGES = ("sklearn", "numpy", "scipy", "pandas")
# Names (and modules: a prefix up to a dot; with *, any name so starting) of those packages
# that touch files, the network or the interpreter, or exist for tests; checked both as named
# and where defined.
DENIED = (
    "numpy.load*", "numpy.save*", "pandas.read_*", "pandas.to_pickle", "numpy.genfromtxt",
    "numpy.fromfile", "numpy.fromregex", "numpy.memmap", "numpy.DataSource", "numpy.lib.npyio",
    "numpy.lib._npyio_impl", "numpy.lib._datasource", "numpy.lib.format",
    "numpy.lib._utils_impl", "numpy.lib.utils", "numpy.ma.mrecords",
    "numpy.ctypeslib", "numpy.f2py", "numpy.distutils", "numpy.testing", "numpy._pytesttester",
    "numpy.__config__", "numpy.show_config", "numpy.info",
    "scipy.io", "scipy.datasets", "scipy._lib._testutils", "scipy._lib._ccallback",
    "scipy.LowLevelCallable",
    "scipy.sparse.load_npz", "scipy.sparse.save_npz", "scipy.sparse._matrix_io",
    "pandas.io", "pandas.eval", "pandas.core.computation", "pandas.core.apply",
    "pandas.plotting", "pandas._config", "pandas.util", "pandas.testing", "pandas._testing",
    "sklearn.datasets", "sklearn.externals", "sklearn.utils._testing",
    "sklearn.utils._show_versions",
)
TEST_PARTS = {"tests", "testing", "conftest", "_testing"}
# Outside those packages: what their pickles use (`call` marks those the unpickling calls).
ALLOWED = {
    ARRAY_WRAPPER: "call",
    "copyreg._reconstructor": "call", "copyreg.__newobj__": "call",
    "_codecs.encode": "call",
    "collections.OrderedDict": "call", "collections.defaultdict": "call",
    "functools.partial": "call",
    "datetime.datetime": "call", "datetime.date": "call", "datetime.time": "call",
    "datetime.timedelta": "call", "datetime.timezone": "call",
    **{f"builtins.{name}": "call" for name in (
        "object", "set", "frozenset", "slice", "range", "complex", "bytearray", "bytes", "int",
        "float", "bool", "str", "list", "tuple", "dict")},
}
# Functions of those packages that rebuild their own objects when unpickled.
RECONSTRUCTORS = {
    "numpy._core.multiarray._reconstruct", "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray.scalar", "numpy.core.multiarray.scalar",
    "numpy._core.numeric._frombuffer", "numpy.core.numeric._frombuffer",
    "numpy.random._pickle.__randomstate_ctor", "numpy.random._pickle.__bit_generator_ctor",
    "numpy.random._pickle.__generator_ctor",
    "sklearn.neighbors._ball_tree.newObj", "sklearn.neighbors._kd_tree.newObj",
    "sklearn.metrics._dist_metrics.newObj",
    "pandas._libs.internals._unpickle_block", "pandas.core.indexes.base._new_Index",
    "pandas._libs.tslibs.timestamps._unpickle_timestamp",
    "pandas._libs.tslibs.timedeltas._timedelta_unpickle",
    "pandas._libs.tslibs.nattype.__nat_unpickle",
}
# Opcodes that push the value genops read as their argument.
CONSTANTS = {"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "STRING",
             "BINSTRING", "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8",
             "BYTEARRAY8", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8",
             "FLOAT", "BINFLOAT"}
NO_ARGUMENT = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False, "EMPTY_TUPLE": ()}
# joblib.compressor's prefixes (lz4 needs a package we do not ship: refused by name)
DECOMPRESSORS = ((b"\x78", zlib.decompress), (b"\x1f\x8b", gzip.decompress),
                 (b"BZ", bz2.decompress), (b"\xfd7zXZ", lzma.decompress),
                 (b"\x5d\x00", lzma.decompress))


class UnsafePickle(ValueError):
    """The pickle names or does something a model does not need; the message says what."""


class Global:
    """A name the pickle looks up, judged: `callable` if the unpickling may call it."""

    def __init__(self, module: str, name: str, callable_: bool) -> None:
        self.module, self.name, self.callable = module, name, callable_

    def __str__(self) -> str:
        return f"{self.module}.{self.name}"


class Made:
    """What calling a Global would give; `built` once BUILD gave it a state."""

    def __init__(self, maker: Global, args: tuple, how: str) -> None:
        self.maker, self.args, self.how, self.state, self.built = maker, args, how, None, False


class Scanner:
    """The allow-list (the defaults plus `extra`: modules or module.names) and a cache of the
    globals already judged."""

    def __init__(self, extra: Iterable[str] = ()) -> None:
        self.extra = tuple(extra)
        self._judged: dict[tuple[str, str], Global] = {}

    def scan(self, data: bytes) -> None:
        """Check a joblib file's bytes (compressed or not); UnsafePickle says what is
        refused."""
        if data.startswith(b"\x04\x22\x4d\x18"):
            raise UnsafePickle("it is compressed with lz4, which the scan cannot read; "
                               "save it with joblib's compress=0 or a zlib level")
        if data.startswith(b"ZF"):
            raise UnsafePickle("it is in joblib's format from before 0.9.3; save it again")
        for prefix, decompress in DECOMPRESSORS:
            if data.startswith(prefix):
                try:
                    data = decompress(data)
                except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as error:
                    raise UnsafePickle(f"its compressed data is damaged ({error})") from error
                break
        self._walk(io.BytesIO(data), joblib_arrays=True)

    def judge(self, module: str, name: str) -> Global:
        """The global module.name if the allow-list takes it; UnsafePickle naming it if not."""
        key = (module, name)
        if key not in self._judged:
            self._judged[key] = self._judge(module, name)
        return self._judged[key]

    def _judge(self, module: str, name: str) -> Global:
        full = f"{module}.{name}"
        if not (DOTTED_NAME.fullmatch(module) and DOTTED_NAME.fullmatch(name)):
            raise UnsafePickle(f"its pickle names {full!r}, which is no Python name")
        if any(full == entry or full.startswith(entry + ".") or module == entry
               or module.startswith(entry + ".") for entry in self.extra):
            return Global(module, name, True)
        if full in ALLOWED:
            return Global(module, name, ALLOWED[full] == "call")
        if "." in name or not self._in_packages(full):
            raise UnsafePickle(
                f"its pickle names {full}, which a model does not need (allowed: sklearn, "
                f"numpy, scipy, pandas, joblib's arrays, a few builtins, and "
                f"MODELFLY_PICKLE_ALLOW)")
        try:
            found = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as error:
            raise UnsafePickle(f"its pickle names {full}, which is not installed here") \
                from error
        if type(found).__name__ == "module":
            raise UnsafePickle(f"its pickle names {full}, a module")
        defined = getattr(found, "__module__", None)
        if isinstance(defined, str) and callable(found):
            where = f"{defined}.{getattr(found, '__qualname__', name)}"
            if where != full and not self._in_packages(where):
                raise UnsafePickle(f"its pickle names {full}, which is {where}")
        callable_ok = (isinstance(found, type) or name.startswith("__pyx_unpickle_")
                       or full in RECONSTRUCTORS)
        return Global(module, name, callable_ok)

    @staticmethod
    def _in_packages(full: str) -> bool:
        parts = full.split(".")
        return (parts[0] in PACKAGES and not TEST_PARTS.intersection(parts)
                and not any(full.startswith(entry[:-1]) if entry.endswith("*")
                            else full == entry or full.startswith(entry + ".")
                            for entry in DENIED))

    def _call(self, maker: object, args: object, how: str) -> Made:
        if not isinstance(maker, Global):
            raise UnsafePickle("its pickle calls something that is not a named class or "
                               "function")
        if not maker.callable:
            raise UnsafePickle(f"its pickle calls {maker}, which unpickling a model never "
                               "calls")
        if str(maker) == ARRAY_WRAPPER and (how != "NEWOBJ" or args != ()):
            raise UnsafePickle("its pickle builds joblib's array wrapper in a way joblib "
                               "does not")
        if str(maker) == "copyreg._reconstructor" and len(args) == 3 \
                and [str(arg) for arg in args] == [ARRAY_WRAPPER, "builtins.object", "None"]:
            return Made(args[0], (), "NEWOBJ")  # how protocols 0 and 1 write the wrapper
        if isinstance(args, tuple):
            for arg in args:
                if isinstance(arg, Global) and str(arg) == ARRAY_WRAPPER:
                    raise UnsafePickle("its pickle builds joblib's array wrapper in a way "
                                       "joblib does not")
                if str(maker).startswith("copyreg.") and isinstance(arg, Global) \
                        and not arg.callable:
                    raise UnsafePickle(f"its pickle calls {arg}, which unpickling a model "
                                       "never calls")
        return Made(maker, args, how)

    def _walk(self, stream: io.BytesIO, joblib_arrays: bool) -> None:
        """Follow one pickle from the stream's position to its STOP (joblib's arrays read
        between the opcodes), leaving the stream where the unpickler would."""
        stack: list = []
        marks: list[int] = []
        memo: dict = {}
        frame_end = None
        proto = 0

        def pop_mark() -> list:
            if not marks:
                raise UnsafePickle("its pickle is malformed (no MARK)")
            start = marks.pop()
            items = stack[start:]
            del stack[start:]
            return items

        def pop():
            if len(stack) <= (marks[-1] if marks else 0):
                raise UnsafePickle("its pickle is malformed (stack empty)")
            return stack.pop()

        try:
            for opcode, arg, _ in pickletools.genops(stream):
                name = opcode.name
                if frame_end is not None and stream.tell() > frame_end:
                    raise UnsafePickle("its pickle is malformed (an opcode crosses a frame)")
                if frame_end is not None and stream.tell() == frame_end:
                    frame_end = None
                if name == "FRAME":
                    if frame_end is not None:
                        raise UnsafePickle("its pickle is malformed (a frame inside a frame)")
                    frame_end = stream.tell() + arg
                elif name == "PROTO":
                    proto = arg
                elif name == "STOP":
                    if frame_end is not None:
                        raise UnsafePickle("its pickle is malformed (STOP inside a frame)")
                    return
                elif name in CONSTANTS:
                    stack.append(arg)
                elif name in NO_ARGUMENT:
                    stack.append(NO_ARGUMENT[name])
                elif name == "MARK":
                    marks.append(len(stack))
                elif name in ("EMPTY_LIST", "EMPTY_SET"):
                    stack.append([])
                elif name == "EMPTY_DICT":
                    stack.append({})
                elif name in ("TUPLE", "FROZENSET"):
                    stack.append(tuple(pop_mark()))
                elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                    count = int(name[-1])
                    items = [pop() for _ in range(count)][::-1]
                    stack.append(tuple(items))
                elif name == "LIST":
                    stack.append(pop_mark())
                elif name == "DICT":
                    items = pop_mark()
                    stack.append(dict(zip(items[::2], items[1::2], strict=True)))
                elif name == "APPEND":
                    value = pop()
                    self._extend(stack, [value])
                elif name in ("APPENDS", "ADDITEMS"):
                    self._extend(stack, pop_mark())
                elif name == "SETITEM":
                    value, key = pop(), pop()
                    self._set_items(stack, [key, value])
                elif name == "SETITEMS":
                    self._set_items(stack, pop_mark())
                elif name == "POP":
                    if stack and len(stack) > (marks[-1] if marks else 0):
                        stack.pop()
                    else:
                        pop_mark()
                elif name == "POP_MARK":
                    pop_mark()
                elif name == "DUP":
                    stack.append(stack[-1])
                elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                    memo[arg] = stack[-1]
                elif name == "MEMOIZE":
                    memo[len(memo)] = stack[-1]
                elif name in ("GET", "BINGET", "LONG_BINGET"):
                    if arg not in memo:
                        raise UnsafePickle("its pickle is malformed (an unknown memo key)")
                    stack.append(memo[arg])
                elif name in ("GLOBAL", "INST"):
                    module, _, attribute = arg.partition(" ")
                    found = self._named(module, attribute, proto)
                    stack.append(found if name == "GLOBAL"
                                 else self._call(found, tuple(pop_mark()), name))
                elif name == "STACK_GLOBAL":
                    attribute, module = pop(), pop()
                    if not (isinstance(module, str) and isinstance(attribute, str)):
                        raise UnsafePickle("its pickle names a global it computes")
                    stack.append(self._named(module, attribute, proto))
                elif name == "OBJ":
                    items = pop_mark()
                    if not items:
                        raise UnsafePickle("its pickle is malformed (OBJ without a class)")
                    stack.append(self._call(items[0], tuple(items[1:]), name))
                elif name == "REDUCE":
                    args = pop()
                    stack.append(self._call(pop(), args, name))
                elif name == "NEWOBJ":
                    args = pop()
                    stack.append(self._call(pop(), args, name))
                elif name == "NEWOBJ_EX":
                    kwargs, args = pop(), pop()
                    stack.append(self._call(pop(), (args, kwargs), name))
                elif name == "BUILD":
                    state = pop()
                    target = stack[-1] if stack else None
                    if not isinstance(target, Made):
                        raise UnsafePickle("its pickle sets the state of something it did "
                                           "not make")
                    if joblib_arrays and str(target.maker) == ARRAY_WRAPPER:
                        if frame_end is not None:
                            raise UnsafePickle("its pickle puts an array inside a frame")
                        stack[-1] = self._array(stream, target, state)
                    else:
                        target.state, target.built = state, True
                else:  # persistent ids, copyreg extensions, out-of-band buffers
                    raise UnsafePickle(f"its pickle uses {name}, which joblib never writes")
        except UnsafePickle:
            raise
        except (ValueError, TypeError, IndexError, KeyError, EOFError) as error:
            raise UnsafePickle(f"its pickle is malformed ({type(error).__name__})") from error
        raise UnsafePickle("its pickle ends without STOP")

    def _named(self, module: str, name: str, proto: int) -> Global:
        """The global as the unpickler finds it (pickle.Unpickler.find_class)."""
        if proto < 3:
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[module, name]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        return self.judge(module, name)

    @staticmethod
    def _extend(stack: list, items: list) -> None:
        if not stack:
            raise UnsafePickle("its pickle is malformed (nothing to append to)")
        if isinstance(stack[-1], list):
            stack[-1].extend(items)
        elif not isinstance(stack[-1], Made):
            raise UnsafePickle("its pickle appends to something that is not a list")

    @staticmethod
    def _set_items(stack: list, items: list) -> None:
        if not stack or len(items) % 2:
            raise UnsafePickle("its pickle is malformed (SETITEMS)")
        if isinstance(stack[-1], dict):
            stack[-1].update(zip(items[::2], items[1::2], strict=True))
        elif not isinstance(stack[-1], Made):
            raise UnsafePickle("its pickle sets items of something that is not a dict")

    def _array(self, stream: io.BytesIO, wrapper: Made, state: object) -> Made:
        """Skip the array data joblib wrote after its wrapper's BUILD, as joblib reads it
        (numpy_pickle.NumpyArrayWrapper.read_array); scan an object array's own pickle."""
        if wrapper.built or not isinstance(state, dict) or not {"shape", "order", "dtype"} \
                <= state.keys() <= {"subclass", "shape", "order", "dtype", "allow_mmap",
                                    "numpy_array_alignment_bytes"}:
            raise UnsafePickle("its pickle holds an array wrapper joblib did not write")
        wrapper.built = True
        shape, dtype = state["shape"], self._dtype(state["dtype"])
        if not (isinstance(shape, tuple) and all(isinstance(n, int) and n >= 0 for n in shape)
                and state["order"] in ("C", "F")):
            raise UnsafePickle("its pickle holds an array of an impossible shape")
        if dtype.hasobject:
            self._walk(stream, joblib_arrays=False)
        else:
            if state.get("numpy_array_alignment_bytes") is not None:
                padding = stream.read(1)
                stream.seek(int.from_bytes(padding or b"\0", "little"), io.SEEK_CUR)
            size = dtype.itemsize * int(numpy.prod(shape, dtype=object))
            if stream.seek(size, io.SEEK_CUR) > len(stream.getbuffer()):
                raise UnsafePickle("its array data is cut short")
        return Made(wrapper.maker, (), "array")

    def _dtype(self, made: object) -> numpy.dtype:
        """The dtype the pickle rebuilds: numpy.dtype(*args) given its state, of plain
        constants and dtypes (built here for real: parsing a type string runs nothing)."""
        if not (isinstance(made, Made) and str(made.maker) == "numpy.dtype"
                and made.how == "REDUCE"):
            raise UnsafePickle("its pickle holds an array whose dtype is not a plain one")
        try:
            dtype = numpy.dtype(*self._concrete(made.args))
            if made.state is not None:
                dtype.__setstate__(self._concrete(made.state))
        except (TypeError, ValueError) as error:
            raise UnsafePickle(f"its pickle holds an impossible dtype ({error})") from error
        return dtype

    def _concrete(self, value: object) -> object:
        if value is None or isinstance(value, (str, int, float, bytes)):
            return value
        if isinstance(value, tuple):
            return tuple(map(self._concrete, value))
        if isinstance(value, dict):
            return {self._concrete(k): self._concrete(v) for k, v in value.items()}
        return self._dtype(value)  # a structured dtype's fields are dtypes
