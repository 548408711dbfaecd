"""mmprep: raw recommendation dumps to k-cored, split, feature-annotated datasets (see docs/FORMAT.md)."""

__version__ = "0.1.0"
