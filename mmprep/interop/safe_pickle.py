"""Load the pickled sparse matrices of DiffMM / MDMNS / MMSSL datasets without running arbitrary code.

Loading a pickle can execute any code it names, so pickles from untrusted sources are unsafe. This unpickler
resolves only the numpy array/dtype reconstruction functions and scipy.sparse matrix classes; any other global
is refused before anything is imported or called.
"""

from __future__ import annotations

import codecs
import pickle
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from mmprep.errors import PrepError
from mmprep.interop.common import id_bound

UNSAFE_NOTE = (
    "pickles from untrusted sources are unsafe; only numpy arrays and scipy.sparse matrices are allowed"
)

# The functions numpy itself names in its pickles (under numpy.core.* before 2.0, numpy._core.* since).
_NUMPY_FUNCTIONS = {
    "_reconstruct": np.empty(0).__reduce__()[0],
    "scalar": np.float64(0).__reduce__()[0],
    "_frombuffer": np.empty(1).__reduce_ex__(5)[0],
}
_NUMPY_MODULES = {
    "numpy.core.multiarray",
    "numpy._core.multiarray",
    "numpy.core.numeric",
    "numpy._core.numeric",
}


def _allowed_global(module: str, name: str) -> object | None:
    if module in _NUMPY_MODULES and name in _NUMPY_FUNCTIONS:
        return _NUMPY_FUNCTIONS[name]
    if module == "numpy" and name in ("ndarray", "dtype"):
        return getattr(np, name)
    if module == "_codecs" and name == "encode":  # protocol-2 pickles store bytes through it
        return codecs.encode
    if (module == "scipy.sparse" or module.startswith("scipy.sparse.")) and name.endswith(
        ("_matrix", "_array")
    ):
        cls = getattr(sp, name, None)
        if isinstance(cls, type) and issubclass(cls, (sp.spmatrix, sp.sparray)):
            return cls
    return None


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global outside the allow-list."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global except numpy array/dtype helpers and scipy.sparse classes."""

    def find_class(self, module: str, name: str) -> object:
        obj = _allowed_global(module, name)
        if obj is None:
            raise RefusedGlobal(f"refused to load global {module}.{name}")
        return obj


def load_pickle(path: Path) -> object:
    """Unpickle ``path`` with :class:`RestrictedUnpickler`; every failure is a one-line :class:`PrepError`."""
    path = Path(path)
    if not path.is_file():
        raise PrepError("missing file", path)
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(f, encoding="latin1").load()
    except RefusedGlobal as e:
        raise PrepError(f"{e} ({UNSAFE_NOTE})", path) from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        OverflowError,
    ) as e:
        raise PrepError(f"not a readable pickle ({type(e).__name__}: {e})", path) from None


def load_coo(path: Path) -> sp.coo_matrix:
    """A pickled scipy.sparse COO matrix, checked to be 2-D with consistent, in-range coordinates."""
    obj = load_pickle(path)
    if not (sp.issparse(obj) and obj.format == "coo"):
        raise PrepError(f"expected a pickled scipy.sparse coo_matrix, found {type(obj).__name__}", path)
    try:
        row, col, data = np.asarray(obj.row), np.asarray(obj.col), np.asarray(obj.data)
        shape = tuple(int(s) for s in obj.shape)
    except (AttributeError, TypeError, ValueError) as e:
        raise PrepError(f"damaged coo_matrix ({e})", path) from None
    if len(shape) != 2 or not (row.ndim == col.ndim == data.ndim == 1 and len(row) == len(col) == len(data)):
        raise PrepError(
            f"damaged coo_matrix (shape {shape}, {len(row)} rows / {len(col)} cols / {len(data)} values)",
            path,
        )
    bound = id_bound(len(data))
    if any(n < 0 or n > bound for n in shape):
        raise PrepError(
            f"shape {shape} is implausible for {len(data):,} stored values (each side must be at most "
            f"{bound:,}); refused before allocating it",
            path,
        )
    for what, idx, n in (("user (row)", row, shape[0]), ("item (column)", col, shape[1])):
        if len(idx) and (idx.min() < 0 or idx.max() >= n):
            bad = int(idx.min()) if idx.min() < 0 else int(idx.max())
            raise PrepError(f"{what} index {bad} out of range 0..{n - 1} of shape {shape}", path)
    return sp.coo_matrix((data, (row.astype(np.int64), col.astype(np.int64))), shape=shape)
