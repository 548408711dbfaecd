"""Data side of mmtrain: a dataset directory on a device, split interactions, the BPR sampler."""

from mmtrain.data.interactions import Interactions
from mmtrain.data.loader import TrainData, load_data, resolve_device
from mmtrain.data.reader import DatasetDir
from mmtrain.data.sampler import Batch, BPRSampler

__all__ = ["BPRSampler", "Batch", "DatasetDir", "Interactions", "TrainData", "load_data", "resolve_device"]
