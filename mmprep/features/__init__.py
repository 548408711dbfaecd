"""Item features: text (sentence-transformers, CLIP text tower), images (open_clip, torchvision, timm) and the Amazon 4096-d file, written resumably as features/<name>.npy plus a mask."""
