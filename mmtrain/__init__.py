"""mmtrain: training and evaluation of (multimodal) recommenders on datasets written by mmprep (docs/FORMAT.md).

Layout, in the order data flows: ``data`` (a dataset on a device, the BPR sampler) -> ``graph`` (adjacency
normalisations, kNN graphs, propagation) and ``models`` (torch-free specs, base class, registry, one module per
model) -> ``trainer`` (optimisation, early stopping) -> ``evaluator`` (full ranking, metrics) -> ``runs`` (run
directories). Importing ``mmtrain`` or resolving a config does not import torch; training does.
"""

__version__ = "0.1.0"
