"""Shared layers: one implementation of each building block, reused by every model family.

- attention.py    multi-head attention (SDPA) with masks, QK-norm, cross-attention, RoPE; FeedForward
- masks.py        full / causal / prefix-LM / padding / windowed-local attention masks
- rope.py         rotary embeddings, 1D and 3D
- embeddings.py   sinusoidal and timestep embeddings, 3D sin-cos position tables
- adaln.py        AdaLN, adaLN-Zero and the expert AdaLN of CogVideoX
- causal_conv.py  causal 3D convolution (+ streaming cache) and 2D-to-3D kernel inflation
- pseudo3d.py     pseudo-3D convolution and attention (Make-A-Video)
- norms.py        group norms and the latent-conditioned spatial norm
"""
