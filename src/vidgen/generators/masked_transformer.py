"""MAGVIT's masked token transformer: a bidirectional transformer over `[task][condition][visual tokens]`.

    sequence = [task token] [class token] [text tokens (optional)] [t*h*w visual tokens]

- task token: one of `num_task_tokens` task embeddings (see `vidgen.tasks`), always present;
- class token: a class or the null class (tasks without a class use the null class, as MAGVIT does);
- text tokens: text-encoder states projected `Linear(text_dim -> dim)`, padding positions masked out
  as attention keys; absent (or all masked) = the null text;
- visual tokens: codebook indices or [MASK], plus a learned (or fixed 3D sin-cos) position per grid
  cell and a "condition token" embedding at positions that hold a COMMIT condition token z~ (so the
  model knows which inputs are padded-clip tokens to refine rather than true tokens).

Code geometry (optional, `code_dim` > 0): the tokenizer's code vectors c_k (its codebook, standardised)
are a buffer of the model. A visual token's input adds a projection of its code vector, and the logits add
`q . c_k` with `q` a projection of the output state. With the head's per-code bias, `q . c_k + b_k` can
be minus the squared distance from q to each code: one point in code space scores every code, so what
the model learns about a code carries to its neighbours. That matters because a code index is nearly
arbitrary: a 0.25-pixel shift of a Shapes object changes about half its codes, while swapping each for
one of its 20 nearest codes keeps the shape (bench_magvit_tasks.py --object-conditionals,
docs/benchmarks.md). Both paths start at zero, so a model without them (`zero_start_keys`) loads and
computes exactly what it did.

One vocabulary embeds every discrete input: `[0, K)` codebook, `K` = [MASK], then the task tokens,
then the class tokens and the null class. The head predicts logits over the K codebook entries at
visual positions only. Training: `vidgen.tasks.MagvitObjective`; sampling:
`vidgen.generators.decoding.decode_nonautoregressive` (MaskGIT / COMMIT, 12 steps) or
`decode_autoregressive` (the one-token-per-pass baseline).

Named sizes: `magvit_transformer_tiny()` for tests, `magvit_transformer_shapes()` sized to train on
two CPU cores (4x8x8 = 256 visual tokens, codebook 1024).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from einops import rearrange
from torch import nn

from vidgen.errors import VidgenError
from vidgen.layers.embeddings import sincos_3d_table
from vidgen.layers.transformer import Transformer, TransformerConfig
from vidgen.modeling import PretrainedModel

POSITION_EMBEDDINGS = ("learned", "sincos")


@dataclasses.dataclass
class MaskedTransformerConfig:
    """The whole description of a `MaskedTokenTransformer`.

    codebook_size: K, the tokenizer's codebook size. grid: (t, h, w) visual token grid.
    num_classes: class tokens (0 = no class conditioning; a null class is always added).
    num_task_tokens: task-token slots (the registry uses 11; spare slots leave room for new tasks).
    text_dim: width of the text-encoder states (384 for MiniLM; 0 = no text conditioning).
    position_embedding: "learned" (one vector per grid cell) or "sincos" (fixed 3D sin-cos table).
    code_dim: width of the tokenizer's code vectors for the code-geometry paths (module docstring;
        0 = off); `set_code_vectors` fills them from the tokenizer.
    """

    codebook_size: int = 1024
    grid: tuple[int, int, int] = (4, 8, 8)
    dim: int = 256
    depth: int = 6
    heads: int = 4
    mlp_ratio: float = 4.0
    qk_norm: str | None = None
    dropout: float = 0.1
    num_classes: int = 0
    num_task_tokens: int = 16
    text_dim: int = 0
    position_embedding: str = "learned"
    code_dim: int = 0

    def __post_init__(self) -> None:
        self.grid = tuple(int(g) for g in self.grid)
        if len(self.grid) != 3 or min(self.grid) < 1:
            raise VidgenError(f"grid={self.grid} must be three positive sizes (t, h, w)")
        if self.codebook_size < 2:
            raise VidgenError(f"codebook_size={self.codebook_size} must be >= 2")
        if self.code_dim < 0:
            raise VidgenError(f"code_dim={self.code_dim} must be >= 0 (0 = no code-geometry paths)")
        if self.num_classes < 0 or self.num_task_tokens < 1 or self.text_dim < 0:
            raise VidgenError(f"num_classes={self.num_classes} and text_dim={self.text_dim} must be >= 0, "
                              f"num_task_tokens={self.num_task_tokens} >= 1")
        if self.position_embedding not in POSITION_EMBEDDINGS:
            raise VidgenError(f"position_embedding={self.position_embedding!r} is not one of "
                              f"{POSITION_EMBEDDINGS}")

    @property
    def num_visual_tokens(self) -> int:
        return math.prod(self.grid)

    @property
    def vocab_size(self) -> int:
        """codebook + [MASK] + task tokens + classes + null class."""
        return self.codebook_size + 1 + self.num_task_tokens + self.num_classes + 1


class MaskedTokenTransformer(PretrainedModel):
    """`forward(tokens (B, t, h, w), task (B,), class_labels (B,), condition_positions (B, t, h, w),
    text (B, L, text_dim), text_mask (B, L)) -> logits (B, t, h, w, K)` (see the module docstring)."""

    config_class = MaskedTransformerConfig

    def __init__(self, config: MaskedTransformerConfig):
        super().__init__(config)
        c = config
        self.token_embedding = nn.Embedding(c.vocab_size, c.dim)
        # Slot embeddings tell the prefix apart: 0 = task token, 1 = class token, 2 = text tokens.
        self.prefix_embedding = nn.Parameter(torch.zeros(3, c.dim))
        # 0 = a true token or [MASK], 1 = a COMMIT condition token z~ to refine.
        self.condition_embedding = nn.Embedding(2, c.dim)
        if c.position_embedding == "learned":
            self.position_embedding = nn.Parameter(torch.zeros(c.num_visual_tokens, c.dim))
        else:
            t, h, w = c.grid
            table = sincos_3d_table(torch.arange(t), torch.arange(h), torch.arange(w), c.dim)
            self.register_buffer("position_embedding", table, persistent=False)
        self.text_projection = nn.Linear(c.text_dim, c.dim) if c.text_dim > 0 else None
        self.transformer = Transformer(TransformerConfig(dim=c.dim, depth=c.depth, heads=c.heads,
                                                         mlp_ratio=c.mlp_ratio,
                                                         qk_norm=c.qk_norm, dropout=c.dropout))
        self.head = nn.Linear(c.dim, c.codebook_size)
        if c.code_dim:
            self.register_buffer("code_vectors", torch.zeros(c.codebook_size, c.code_dim))  # saved with the weights
            self.code_input = nn.Linear(c.code_dim, c.dim, bias=False)
            self.code_output = nn.Linear(c.dim, c.code_dim, bias=False)
        self._init_weights()

    def _init_weights(self) -> None:
        # BERT / MaskGIT: embeddings ~ N(0, 0.02); the transformer initialises its own projections.
        for weight in (self.token_embedding.weight, self.prefix_embedding, self.condition_embedding.weight):
            nn.init.trunc_normal_(weight, std=0.02)
        if isinstance(self.position_embedding, nn.Parameter):
            nn.init.trunc_normal_(self.position_embedding, std=0.02)
        for linear in (self.head, self.text_projection):
            if linear is not None:
                nn.init.xavier_uniform_(linear.weight)
                nn.init.zeros_(linear.bias)
        if self.config.code_dim:
            nn.init.zeros_(self.code_input.weight)
            nn.init.zeros_(self.code_output.weight)

    # ---- code geometry

    def set_code_vectors(self, codes: torch.Tensor) -> None:
        """Store the tokenizer's code vectors `(K, code_dim)` (e.g. `quantizer.codebook()`), standardised:
        centred per channel and divided by their overall standard deviation."""
        c = self.config
        if not c.code_dim:
            raise VidgenError("this model has no code-geometry paths (code_dim=0)")
        if not isinstance(codes, torch.Tensor) or tuple(codes.shape) != (c.codebook_size, c.code_dim):
            shape = tuple(codes.shape) if isinstance(codes, torch.Tensor) else type(codes).__name__
            raise VidgenError(f"code vectors must be ({c.codebook_size}, {c.code_dim}) (codebook size, code_dim), "
                              f"got {shape}")
        codes = codes.detach().float()
        codes = codes - codes.mean(0)
        std = codes.std()
        if not torch.isfinite(std) or std == 0:
            raise VidgenError("code vectors must be finite and not all equal")
        self.code_vectors.copy_(codes / std)

    def zero_start_keys(self) -> list[str]:
        """Weights a saved model may lack (`train.init_from`): the code-geometry paths, which start at zero,
        so the loaded model computes what the saved one did."""
        if not self.config.code_dim:
            return []
        return ["code_vectors", "code_input.weight", "code_output.weight"]

    # ---- vocabulary

    @property
    def mask_token_id(self) -> int:
        return self.config.codebook_size

    def task_token_id(self, task: torch.Tensor) -> torch.Tensor:
        return self.config.codebook_size + 1 + task

    def class_token_id(self, labels: torch.Tensor) -> torch.Tensor:
        """Class ids; label -1 means the null class."""
        c = self.config
        offset = c.codebook_size + 1 + c.num_task_tokens
        return torch.where(labels < 0, torch.full_like(labels, offset + c.num_classes), offset + labels)

    # ---- forward

    def _check_inputs(self, tokens: torch.Tensor, task: torch.Tensor, class_labels: torch.Tensor,
                      condition_positions: torch.Tensor | None, text: torch.Tensor | None,
                      text_mask: torch.Tensor | None) -> None:
        c = self.config
        b = tokens.shape[0]
        if tokens.dim() != 4 or tuple(tokens.shape[1:]) != c.grid:
            raise VidgenError(f"tokens must be (B, {', '.join(map(str, c.grid))}), got {tuple(tokens.shape)}")
        if tokens.is_floating_point() or tokens.min() < 0 or tokens.max() > c.codebook_size:
            raise VidgenError(f"visual tokens must be integers in [0, {c.codebook_size}] (codebook indices or "
                              f"[MASK]={c.codebook_size})")
        if task.shape != (b,) or task.min() < 0 or task.max() >= c.num_task_tokens:
            raise VidgenError(f"task must hold {b} task-token indices in [0, {c.num_task_tokens}), got "
                              f"{task.tolist()}")
        if class_labels.shape != (b,) or class_labels.min() < -1 or class_labels.max() >= c.num_classes:
            raise VidgenError(f"class_labels must hold {b} labels in [-1, {c.num_classes}) (-1 = no class), got "
                              f"{class_labels.tolist()}")
        if condition_positions is not None and condition_positions.shape != tokens.shape:
            raise VidgenError(f"condition_positions {tuple(condition_positions.shape)} must match the tokens "
                              f"{tuple(tokens.shape)}")
        if text is not None:
            if c.text_dim == 0:
                raise VidgenError("this model has no text conditioning (text_dim=0) but got text embeddings")
            if text.dim() != 3 or text.shape[0] != b or text.shape[-1] != c.text_dim:
                raise VidgenError(f"text must be ({b}, L, {c.text_dim}), got {tuple(text.shape)}")
            if text_mask is not None and tuple(text_mask.shape) != tuple(text.shape[:2]):
                raise VidgenError(f"text_mask {tuple(text_mask.shape)} must be {tuple(text.shape[:2])}")

    def forward(self, tokens: torch.Tensor, task: torch.Tensor | int = 0, class_labels: torch.Tensor | None = None,
                condition_positions: torch.Tensor | None = None, text: torch.Tensor | None = None,
                text_mask: torch.Tensor | None = None) -> torch.Tensor:
        """
        tokens: (B, t, h, w) long, codebook indices or `mask_token_id`.
        task: (B,) task-token indices (or one int for the batch).
        class_labels: (B,) long, -1 = null class; None = null class for all.
        condition_positions: (B, t, h, w) bool, True where the input is a COMMIT condition token.
        text: (B, L, text_dim) text-encoder states; text_mask: (B, L) bool, True = real token.
        Returns logits (B, t, h, w, K) over the codebook.
        """
        b, device = tokens.shape[0], tokens.device
        task = torch.as_tensor(task, device=device).long().reshape(-1)
        if task.numel() == 1:
            task = task.expand(b)
        class_labels = (torch.full((b,), -1, dtype=torch.long, device=device) if class_labels is None
                        else torch.as_tensor(class_labels, device=device).long().reshape(-1))
        self._check_inputs(tokens, task, class_labels, condition_positions, text, text_mask)

        flat = rearrange(tokens, "b t h w -> b (t h w)")
        visual = self.token_embedding(flat)  # (B, N, D)
        if self.config.code_dim:
            is_code = flat < self.config.codebook_size  # [MASK] has no code vector
            codes = self.code_vectors[flat.clamp(max=self.config.codebook_size - 1)] * is_code[..., None]
            visual = visual + self.code_input(codes.to(self.code_input.weight.dtype))
        visual = visual + self.position_embedding.to(visual.dtype)[None]
        if condition_positions is not None:
            flags = rearrange(condition_positions.long(), "b t h w -> b (t h w)")
            visual = visual + self.condition_embedding(flags)
        prefix = [self.token_embedding(self.task_token_id(task))[:, None] + self.prefix_embedding[0],  # (B, 1, D)
                  self.token_embedding(self.class_token_id(class_labels))[:, None] + self.prefix_embedding[1]]
        mask = None
        if text is not None:
            text_tokens = self.text_projection(text.to(self.text_projection.weight.dtype))
            text_tokens = text_tokens + self.prefix_embedding[2]
            prefix.append(text_tokens)  # (B, L, D)
            if text_mask is not None:
                # Padding text tokens are never attended to; task, class and visual tokens always are.
                keys = torch.cat([torch.ones(b, 2, dtype=torch.bool, device=device), text_mask.bool().to(device),
                                  torch.ones(b, visual.shape[1], dtype=torch.bool, device=device)], dim=1)
                mask = keys[:, None, None, :]  # (B, 1, 1, S)
        x = torch.cat([*prefix, visual], dim=1)  # (B, S, D)
        x = self.transformer(x, mask=mask)
        x = x[:, -visual.shape[1]:]
        logits = self.head(x)  # (B, N, K)
        if self.config.code_dim:
            logits = logits + self.code_output(x) @ self.code_vectors.to(x.dtype).T  # q . c_k
        t, h, w = self.config.grid
        return rearrange(logits, "b (t h w) k -> b t h w k", t=t, h=h, w=w)


# ----------------------------------------------------------------------------- named sizes


def magvit_transformer_tiny(**overrides) -> MaskedTransformerConfig:
    """A few-thousand-parameter model for tests: codebook 32, a 2x4x4 grid, 4 classes, 8-d text."""
    base = {"codebook_size": 32, "grid": (2, 4, 4), "dim": 32, "depth": 2, "heads": 2, "dropout": 0.0,
            "num_classes": 4, "text_dim": 8}
    return MaskedTransformerConfig(**{**base, **overrides})


def magvit_transformer_shapes(**overrides) -> MaskedTransformerConfig:
    """The bundled size: 4x8x8 = 256 visual tokens of a 1024-entry codebook (16x64x64 clips), dim 256,
    6 layers, MiniLM text (384-d), the 72 (colour, shape, motion) classes of the Shapes dataset;
    5.4M parameters (10.9 MB in bf16).

    No dropout (MAGVIT uses 0.1): a CPU run is far too short to overfit, and on CPU the dropout masks
    (attention probabilities included) cost about a fifth of each training step.
    """
    base = {"codebook_size": 1024, "grid": (4, 8, 8), "dim": 256, "depth": 6, "heads": 4, "dropout": 0.0,
            "num_classes": 72, "text_dim": 384}
    return MaskedTransformerConfig(**{**base, **overrides})
