"""The models' configuration specs, one torch-free module per model (see ``mmtrain.models.registry``)."""
