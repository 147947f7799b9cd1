"""Suite-wide settings: one intra-op thread (tiny models; avoids oversubscription on 2 shared cores)."""

import os

import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)
