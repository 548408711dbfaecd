"""mmprep's side of the dataset format (docs/FORMAT.md, implemented in mmformat): open, verify, write."""

from mmformat.layout import FORMAT_VERSION
from mmprep.dataset.reader import Dataset, load_dataset, verify_dataset
from mmprep.dataset.writer import DatasetWriter

__all__ = ["FORMAT_VERSION", "Dataset", "DatasetWriter", "load_dataset", "verify_dataset"]
