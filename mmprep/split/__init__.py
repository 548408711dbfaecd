"""Train/val/test splits: warm (per-user random, per-user temporal, leave-last-out, global temporal) and cold-start."""
