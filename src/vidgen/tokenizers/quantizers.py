"""Quantizers shared by every discrete video tokenizer: a VQ codebook and lookup-free quantization.

- `VectorQuantizer`      VQ-VAE / VQGAN codebook (MAGVIT's 3D-VQ): nearest of K learned codes.
- `LookupFreeQuantizer`  LFQ of MAGVIT-v2 / VideoPoet: every channel is its sign, the token is the
                         binary number those signs spell, so the vocabulary is 2^num_bits with no
                         codebook to look up.

Both take a feature map `z` (B, D, *spatial) (any number of trailing axes: (B, D, T, H, W) for video,
(B, D, H, W) for images) and return a `QuantizerOutput` whose `quantized` has the shape of `z` and
passes gradients straight through to `z` (Bengio et al. 2013): forward uses the code, backward
treats quantization as the identity.

Entropy penalty (MaskGIT / MAGVIT code, MAGVIT-v2 Eq. 5). With soft assignments p(k | z_n) =
softmax_k(-||z_n - c_k||^2 / temperature),

    entropy_loss = mean_n H(p(. | z_n)) - H(mean_n p(. | z_n))

The first term (per-sample entropy) pushes each vector to commit to one code; the second (entropy of
the batch-average assignment) rewards spreading the batch over the whole codebook. Collapse (every
vector on one code) scores 0; confident uniform usage of K codes scores -log K.

Distances, softmaxes and entropies run in float32 even under bf16 autocast: nearest-code search in
bf16 (8 mantissa bits) picks wrong codes when distances are close.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vidgen.errors import VidgenError

__all__ = ["LookupFreeQuantizer", "QuantizerOutput", "VectorQuantizer", "entropy_loss_from_logits", "usage_stats"]


@dataclass
class QuantizerOutput:
    """What a quantizer returns.

    quantized:  (B, D, *spatial) the codes, with straight-through gradients to the input.
    indices:    (B, *spatial) int64 token ids in [0, vocab_size).
    loss:       scalar, the weighted sum of the terms in `losses` (what a training objective adds).
    losses:     unweighted scalar terms: "commitment", "codebook", "entropy".
    perplexity: scalar, exp(entropy of the batch's hard code histogram): the effective number of codes
                used (1 = collapse, vocab_size = perfectly uniform).
    usage:      scalar, fraction of the vocabulary that occurs at least once in this batch.
    """

    quantized: torch.Tensor
    indices: torch.Tensor
    loss: torch.Tensor
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    perplexity: torch.Tensor | None = None
    usage: torch.Tensor | None = None


def entropy_loss_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Per-sample entropy minus batch-average entropy of softmax(logits). `logits` (N, K) -> scalar."""
    logits = logits.float()
    probs = logits.softmax(dim=-1)
    log_probs = logits.log_softmax(dim=-1)
    sample_entropy = -(probs * log_probs).sum(-1).mean()
    avg_probs = probs.mean(0)
    avg_entropy = -(avg_probs * torch.log(avg_probs.clamp_min(1e-12))).sum()
    return sample_entropy - avg_entropy


def usage_stats(indices: torch.Tensor, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(perplexity, usage fraction) of token ids of any shape (perplexity 1 and usage 0 for none)."""
    counts = torch.bincount(indices.flatten().long(), minlength=vocab_size).float()
    probs = counts / counts.sum().clamp_min(1.0)
    entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum()
    return entropy.exp(), (counts > 0).float().mean()


def _check_input(z: torch.Tensor, dim: int, name: str) -> None:
    if z.ndim < 2 or z.shape[1] != dim:
        raise VidgenError(f"{name} expects input (B, {dim}, ...) with {dim} channels, got shape {tuple(z.shape)}")


# ----------------------------------------------------------------------------- vector quantization


class VectorQuantizer(nn.Module):
    """Nearest-neighbour vector quantization with a learned codebook (VQ-VAE, VQGAN, MAGVIT's 3D-VQ).

    Args:
        codebook_size: K, the number of codes (the token vocabulary).
        dim: D, the channels of a code.
        commitment_weight: beta, weight of ||z - sg(c)||^2 (keeps the encoder near its codes).
        codebook_weight: weight of ||sg(z) - c||^2 (moves the chosen codes toward the encoder).
        entropy_weight: weight of the entropy penalty (module docstring); 0 turns it off (and skips
            the (N, K) softmax).
        entropy_temperature: temperature of the soft assignments in the entropy penalty.
        l2_normalize: compare and return unit-norm vectors (ViT-VQGAN's l2 codes): nearest code by
            cosine similarity, which keeps codes and encoder outputs on one scale and raises usage.
        dead_code_threshold: > 0 enables dead-code restart (training only): a code whose running
            usage (EMA of its count per batch) falls below this is reset to the encoder vector of the
            batch with the largest quantization error, i.e. it is moved where the codebook serves the
            data worst. Deterministic (no RNG), so runs resume exactly.
        usage_decay: decay of that running usage.

    Why a learned codebook rather than EMA (k-means) updates: the entropy penalty is a differentiable
    function of the codes, and with gradient-trained codes it shapes the codebook and the encoder
    together (as in MaskGIT/MAGVIT); EMA codebooks ignore that gradient. Collapse, the usual argument
    for EMA, is handled by the entropy penalty and the optional restarts.

    Shapes: z (B, D, *spatial) -> quantized (B, D, *spatial), indices (B, *spatial).
    """

    def __init__(self, codebook_size: int = 1024, dim: int = 256, commitment_weight: float = 0.25,
                 codebook_weight: float = 1.0, entropy_weight: float = 0.0, entropy_temperature: float = 0.01,
                 l2_normalize: bool = False, dead_code_threshold: float = 0.0, usage_decay: float = 0.99):
        super().__init__()
        if codebook_size < 2:
            raise VidgenError(f"codebook_size must be >= 2, got {codebook_size}")
        if dim < 1:
            raise VidgenError(f"dim must be >= 1, got {dim}")
        if entropy_temperature <= 0:
            raise VidgenError(f"entropy_temperature must be > 0, got {entropy_temperature}")
        if not 0.0 <= usage_decay < 1.0:
            raise VidgenError(f"usage_decay must be in [0, 1), got {usage_decay}")
        self.codebook_size = codebook_size
        self.dim = dim
        self.commitment_weight = commitment_weight
        self.codebook_weight = codebook_weight
        self.entropy_weight = entropy_weight
        self.entropy_temperature = entropy_temperature
        self.l2_normalize = l2_normalize
        self.dead_code_threshold = dead_code_threshold
        self.usage_decay = usage_decay
        self.embedding = nn.Embedding(codebook_size, dim)
        # Codes start on the scale of a unit-variance encoder output divided by K (VQ-VAE's uniform
        # init): small, so the first assignments spread over many codes instead of one outlier.
        nn.init.uniform_(self.embedding.weight, -1.0 / codebook_size, 1.0 / codebook_size)
        # Running usage per code (for dead-code restart); starts "alive" so nothing is reset at step 0.
        self.register_buffer("code_usage", torch.ones(codebook_size))

    @property
    def vocab_size(self) -> int:
        return self.codebook_size

    def extra_repr(self) -> str:
        return (f"codebook_size={self.codebook_size}, dim={self.dim}, l2_normalize={self.l2_normalize}, "
                f"commitment_weight={self.commitment_weight}, entropy_weight={self.entropy_weight}")

    def codebook(self) -> torch.Tensor:
        """The codes as used for lookup (unit-norm when `l2_normalize`), (K, D) float32."""
        codes = self.embedding.weight.float()
        return F.normalize(codes, dim=-1) if self.l2_normalize else codes

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        _check_input(z, self.dim, "VectorQuantizer")
        in_dtype = z.dtype
        with torch.autocast(device_type=z.device.type, enabled=False):
            flat = rearrange(z.float(), "b d ... -> (b ...) d")                       # (N, D)
            if self.l2_normalize:
                flat = F.normalize(flat, dim=-1)
            if self.training and self.dead_code_threshold > 0:
                # Before the graph is built: restarting codes afterwards would change, in place,
                # weights that backward still needs.
                self._update_usage_and_restart(flat.detach())
            codes = self.codebook()                                                 # (K, D)
            distances = self._distances(flat, codes)                                # (N, K)
            flat_indices = distances.argmin(dim=1)                                  # (N,)
            chosen = codes[flat_indices]                                            # (N, D)

            commitment = F.mse_loss(flat, chosen.detach())
            codebook = F.mse_loss(chosen, flat.detach())
            if self.entropy_weight > 0:
                entropy = entropy_loss_from_logits(-distances / self.entropy_temperature)
            else:
                entropy = flat.new_zeros(())
            loss = (self.commitment_weight * commitment + self.codebook_weight * codebook
                    + self.entropy_weight * entropy)

            # Straight-through: the value of the code, the gradient of the identity.
            quantized_flat = flat + (chosen - flat).detach()
            with torch.no_grad():
                perplexity, usage = usage_stats(flat_indices, self.codebook_size)

        b = z.shape[0]
        spatial = z.shape[2:]
        quantized = quantized_flat.reshape(b, *spatial, self.dim).movedim(-1, 1).to(in_dtype)
        indices = flat_indices.reshape(b, *spatial)
        return QuantizerOutput(
            quantized=quantized, indices=indices, loss=loss,
            losses={"commitment": commitment, "codebook": codebook, "entropy": entropy},
            perplexity=perplexity, usage=usage)

    @staticmethod
    def _distances(flat: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Squared distances (N, K) = ||z||^2 - 2 z.c + ||c||^2, without materialising (N, K, D)."""
        return flat.pow(2).sum(1, keepdim=True) - 2.0 * flat @ codes.t() + codes.pow(2).sum(1)[None, :]

    @torch.no_grad()
    def _update_usage_and_restart(self, flat: torch.Tensor) -> None:
        codes = self.codebook()
        distances = self._distances(flat, codes)
        indices = distances.argmin(dim=1)
        counts = torch.bincount(indices, minlength=self.codebook_size).float()
        # Normalised so that uniform usage of the codebook reads 1 whatever the batch size.
        counts = counts * self.codebook_size / max(indices.numel(), 1)
        self.code_usage.mul_(self.usage_decay).add_(counts, alpha=1.0 - self.usage_decay)
        dead = (self.code_usage < self.dead_code_threshold).nonzero().flatten()
        if dead.numel() == 0:
            return
        errors = distances.gather(1, indices[:, None]).squeeze(1)
        take = min(dead.numel(), flat.shape[0])
        worst = errors.topk(take).indices
        new_codes = flat[worst].to(self.embedding.weight.dtype)
        self.embedding.weight[dead[:take]] = new_codes
        self.code_usage[dead[:take]] = 1.0

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """Token ids (B, *spatial) -> codes (B, D, *spatial), float32 (the `quantized` of `forward`)."""
        if indices.dtype.is_floating_point or indices.dtype == torch.bool:
            raise VidgenError(f"indices must be an integer tensor, got dtype {indices.dtype}")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.codebook_size):
            raise VidgenError(f"indices must lie in [0, {self.codebook_size}), got values in "
                              f"[{int(indices.min())}, {int(indices.max())}]")
        return self.codebook()[indices.long()].movedim(-1, 1)


# ----------------------------------------------------------------------------- lookup-free quantization


class LookupFreeQuantizer(nn.Module):
    """Lookup-free quantization (MAGVIT-v2, VideoPoet): z_i -> sign(z_i) in {-1, +1} per channel.

    The token of a vector is the integer whose bit i is 1 where channel i is positive:
    index = sum_i [z_i > 0] * 2^i, so the vocabulary is 2^num_bits and "decoding" a token is reading
    its bits; no codebook is stored or searched.

    Args:
        num_bits: channels of the input = bits per token.
        commitment_weight: weight of ||z - sg(q)||^2.
        entropy_weight: weight of the entropy penalty (module docstring), computed on the implicit
            codebook {-1, +1}^num_bits with p(q | z) ∝ exp(-||z - q||^2 / temperature).
        entropy_temperature: that temperature.
        entropy_group_bits: the batch-average entropy is computed exactly over groups of this many bits
            (2^group entries each) and summed over groups. Equal to the exact entropy when
            num_bits <= entropy_group_bits; otherwise an upper bound (it ignores dependence between
            groups) that keeps memory at (N, 2^group) for large vocabularies (VideoPoet's 2^18).

    The per-sample entropy needs no enumeration: ||z - q||^2 is a sum over channels, so p(q | z)
    factorises into independent bits with p(bit_i = 1) = sigmoid(4 z_i / temperature), and the entropy
    is the sum of the bits' binary entropies (exact).

    Shapes: z (B, num_bits, *spatial) -> quantized (B, num_bits, *spatial), indices (B, *spatial).
    """

    def __init__(self, num_bits: int = 18, commitment_weight: float = 0.25, entropy_weight: float = 0.1,
                 entropy_temperature: float = 1.0, entropy_group_bits: int = 10):
        super().__init__()
        if not 1 <= num_bits <= 62:
            raise VidgenError(f"num_bits must be in [1, 62] (indices are int64), got {num_bits}")
        if entropy_temperature <= 0:
            raise VidgenError(f"entropy_temperature must be > 0, got {entropy_temperature}")
        if entropy_group_bits < 1:
            raise VidgenError(f"entropy_group_bits must be >= 1, got {entropy_group_bits}")
        self.num_bits = num_bits
        self.commitment_weight = commitment_weight
        self.entropy_weight = entropy_weight
        self.entropy_temperature = entropy_temperature
        self.entropy_group_bits = entropy_group_bits
        self.register_buffer("bit_values", 2 ** torch.arange(num_bits, dtype=torch.long), persistent=False)

    @property
    def vocab_size(self) -> int:
        return 2 ** self.num_bits

    @property
    def dim(self) -> int:
        return self.num_bits

    def extra_repr(self) -> str:
        return f"num_bits={self.num_bits}, vocab_size={self.vocab_size}, entropy_weight={self.entropy_weight}"

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        _check_input(z, self.num_bits, "LookupFreeQuantizer")
        in_dtype = z.dtype
        with torch.autocast(device_type=z.device.type, enabled=False):
            flat = rearrange(z.float(), "b d ... -> (b ...) d")                       # (N, bits)
            bits = flat > 0
            codes = torch.where(bits, 1.0, -1.0)                                    # (N, bits)
            flat_indices = (bits.long() * self.bit_values).sum(-1)                  # (N,)
            commitment = F.mse_loss(flat, codes)
            if self.entropy_weight > 0:
                entropy = self._entropy_loss(flat)
            else:
                entropy = flat.new_zeros(())
            loss = self.commitment_weight * commitment + self.entropy_weight * entropy
            quantized_flat = flat + (codes - flat).detach()
            with torch.no_grad():
                if self.num_bits <= 20:
                    perplexity, usage = usage_stats(flat_indices, self.vocab_size)
                else:  # a histogram of 2^bits bins would not fit; count distinct ids instead
                    distinct = torch.unique(flat_indices).numel()
                    perplexity, usage = flat.new_tensor(float("nan")), flat.new_tensor(distinct / self.vocab_size)
        b = z.shape[0]
        quantized = quantized_flat.reshape(b, *z.shape[2:], self.num_bits).movedim(-1, 1).to(in_dtype)
        return QuantizerOutput(
            quantized=quantized, indices=flat_indices.reshape(b, *z.shape[2:]), loss=loss,
            losses={"commitment": commitment, "codebook": flat.new_zeros(()), "entropy": entropy},
            perplexity=perplexity, usage=usage)

    def _entropy_loss(self, flat: torch.Tensor) -> torch.Tensor:
        p_one = torch.sigmoid(4.0 * flat / self.entropy_temperature)                # (N, bits)
        log_p1 = F.logsigmoid(4.0 * flat / self.entropy_temperature)
        log_p0 = F.logsigmoid(-4.0 * flat / self.entropy_temperature)
        sample_entropy = -(p_one * log_p1 + (1 - p_one) * log_p0).sum(-1).mean()
        avg_entropy = flat.new_zeros(())
        for start in range(0, self.num_bits, self.entropy_group_bits):
            group = p_one[:, start:start + self.entropy_group_bits]                 # (N, g)
            g = group.shape[1]
            table = self._bit_table(g, flat.device)                                 # (2^g, g) in {0, 1}
            # p(code | z_n) for every code of the group: product over its bits.
            probs = torch.exp(table @ torch.log(group.clamp_min(1e-12)).t()
                              + (1 - table) @ torch.log((1 - group).clamp_min(1e-12)).t())  # (2^g, N)
            avg = probs.mean(1)
            avg_entropy = avg_entropy - (avg * torch.log(avg.clamp_min(1e-12))).sum()
        return sample_entropy - avg_entropy

    @staticmethod
    def _bit_table(num_bits: int, device: torch.device) -> torch.Tensor:
        ids = torch.arange(2 ** num_bits, device=device)
        return ((ids[:, None] >> torch.arange(num_bits, device=device)) & 1).float()

    def indices_to_bits(self, indices: torch.Tensor) -> torch.Tensor:
        """Token ids (B, *spatial) -> bits (B, *spatial, num_bits) as 0/1 int64 (bit i = channel i)."""
        self._check_indices(indices)
        return (indices.long()[..., None] >> torch.arange(self.num_bits, device=indices.device)) & 1

    def bits_to_indices(self, bits: torch.Tensor) -> torch.Tensor:
        """Bits (..., num_bits) in {0, 1} -> token ids (...)."""
        if bits.shape[-1] != self.num_bits:
            raise VidgenError(f"bits must end with {self.num_bits} entries, got shape {tuple(bits.shape)}")
        return (bits.long() * self.bit_values.to(bits.device)).sum(-1)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """Token ids (B, *spatial) -> codes (B, num_bits, *spatial) in {-1, +1}, float32."""
        return (self.indices_to_bits(indices).float() * 2 - 1).movedim(-1, 1)

    def _check_indices(self, indices: torch.Tensor) -> None:
        if indices.dtype.is_floating_point or indices.dtype == torch.bool:
            raise VidgenError(f"indices must be an integer tensor, got dtype {indices.dtype}")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.vocab_size):
            raise VidgenError(f"indices must lie in [0, {self.vocab_size}) for num_bits={self.num_bits}, "
                              f"got values in [{int(indices.min())}, {int(indices.max())}]")
