"""``python -m mmtrain``: the mmtrain CLI, so that ``torchrun ... -m mmtrain run ...`` starts one rank each."""

from mmtrain.cli import console

console()
