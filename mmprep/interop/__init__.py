"""Import and export of already-processed datasets in the layouts of other repositories.

- ``mmrec``: MMRec ``<name>.inter`` + id maps + ``*_feat.npy``
- ``lattice``: LATTICE / MICRO / MMSSL ``5-core/{train,val,test}.json`` + id maps + ``*_feat.npy``
- ``diffmm``: DiffMM / MDMNS / MMSSL ``{trn,val,tst}Mat.pkl`` + ``*_feat.npy``

Each module has ``import_<fmt>(src_dir, out, ...)`` and ``export_<fmt>(dataset_dir, out, ...)``.
"""

from mmprep.interop.diffmm import export_diffmm, import_diffmm
from mmprep.interop.lattice import export_lattice, import_lattice
from mmprep.interop.mmrec import export_mmrec, import_mmrec

IMPORTERS = {"mmrec": import_mmrec, "lattice": import_lattice, "diffmm": import_diffmm}
EXPORTERS = {"mmrec": export_mmrec, "lattice": export_lattice, "diffmm": export_diffmm}
FORMATS = tuple(IMPORTERS)

__all__ = [
    "EXPORTERS",
    "FORMATS",
    "IMPORTERS",
    "export_diffmm",
    "export_lattice",
    "export_mmrec",
    "import_diffmm",
    "import_lattice",
    "import_mmrec",
]
