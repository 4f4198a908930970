"""Tests for the shared quantizers: VQ codebook and lookup-free quantization."""

import math

import pytest
import torch

from vidgen.errors import VidgenError
from vidgen.tokenizers.quantizers import LookupFreeQuantizer, VectorQuantizer, entropy_loss_from_logits


def _vq(**kw):
    torch.manual_seed(0)
    q = VectorQuantizer(**{"codebook_size": 16, "dim": 4, **kw})
    with torch.no_grad():
        q.embedding.weight.copy_(torch.randn(q.codebook_size, q.dim))
    return q


# ----------------------------------------------------------------------------- VectorQuantizer


def test_vq_shapes_and_nearest_code():
    q = _vq()
    z = torch.randn(2, 4, 3, 5, 5)
    out = q(z)
    assert out.quantized.shape == z.shape
    assert out.indices.shape == (2, 3, 5, 5)
    assert out.indices.dtype == torch.int64
    # Each index is the nearest code by brute force.
    flat = z.movedim(1, -1).reshape(-1, 4)
    brute = torch.cdist(flat, q.embedding.weight).argmin(1)
    assert torch.equal(out.indices.flatten(), brute)


def test_vq_straight_through_gradient_is_identity():
    q = _vq()
    z = torch.randn(2, 4, 6, requires_grad=True)
    out = q(z)
    weights = torch.randn_like(out.quantized)
    (out.quantized * weights).sum().backward()
    # Straight-through: d quantized / d z = identity, so z.grad is exactly the upstream gradient.
    assert torch.equal(z.grad, weights)


def test_vq_indices_to_codes_round_trip():
    q = _vq()
    z = torch.randn(3, 4, 2, 4, 4)
    out = q(z)
    codes = q.indices_to_codes(out.indices)
    assert codes.shape == z.shape
    assert torch.allclose(codes, out.quantized, atol=1e-6)
    # Quantizing the codes themselves returns the same indices (codes are fixed points).
    assert torch.equal(q(codes).indices, out.indices)


def test_vq_losses_match_definitions():
    q = _vq(commitment_weight=0.25, entropy_weight=0.0)
    z = torch.randn(2, 4, 10, requires_grad=True)
    out = q(z)
    chosen = q.indices_to_codes(out.indices)
    expected = (z - chosen).pow(2).mean()
    assert torch.allclose(out.losses["commitment"], expected, atol=1e-6)
    assert torch.allclose(out.losses["codebook"], expected, atol=1e-6)
    assert torch.allclose(out.loss, 1.25 * expected, atol=1e-6)
    # The codebook loss moves codes (not z); the commitment loss moves z (not codes).
    out.losses["codebook"].backward(retain_graph=True)
    assert z.grad is None and q.embedding.weight.grad.abs().sum() > 0


def test_vq_perplexity_and_usage():
    q = _vq()
    # Every code exactly once: usage 1, perplexity K.
    codes = q.embedding.weight.detach().t().reshape(1, 4, 16)
    out = q(codes)
    assert torch.equal(out.indices.flatten(), torch.arange(16))
    assert out.usage.item() == pytest.approx(1.0)
    assert out.perplexity.item() == pytest.approx(16.0, rel=1e-5)
    # One code repeated: usage 1/K, perplexity 1.
    same = q.embedding.weight.detach()[3].reshape(1, 4, 1).expand(1, 4, 10)
    out = q(same)
    assert out.usage.item() == pytest.approx(1 / 16)
    assert out.perplexity.item() == pytest.approx(1.0)


def test_entropy_loss_lower_for_uniform_usage_than_for_collapse():
    q = _vq(entropy_weight=1.0, entropy_temperature=0.01)
    codes = q.embedding.weight.detach()
    uniform = codes.t().reshape(1, 4, 16).repeat(1, 1, 4)            # every code used 4 times
    collapsed = codes[5].reshape(1, 4, 1).expand(1, 4, 64).clone()   # one code used 64 times
    e_uniform = q(uniform).losses["entropy"].item()
    e_collapsed = q(collapsed).losses["entropy"].item()
    assert e_uniform < e_collapsed
    # Confident assignments: collapse scores ~0, uniform usage ~ -log K.
    assert e_collapsed == pytest.approx(0.0, abs=1e-3)
    assert e_uniform == pytest.approx(-math.log(16), abs=1e-2)


def test_entropy_loss_from_logits_extremes():
    k = 8
    confident_uniform = torch.eye(k) * 100.0
    confident_collapsed = torch.zeros(k, k)
    confident_collapsed[:, 0] = 100.0
    assert entropy_loss_from_logits(confident_uniform).item() == pytest.approx(-math.log(k), abs=1e-4)
    assert entropy_loss_from_logits(confident_collapsed).item() == pytest.approx(0.0, abs=1e-4)
    # Undecided (flat) assignments are penalised: sample entropy log K, average entropy log K -> 0,
    # above the confident uniform case.
    assert entropy_loss_from_logits(torch.zeros(k, k)).item() == pytest.approx(0.0, abs=1e-5)


def test_vq_l2_normalized_codes_have_unit_norm():
    q = _vq(l2_normalize=True)
    out = q(torch.randn(2, 4, 7) * 5)
    assert torch.allclose(out.quantized.norm(dim=1), torch.ones(2, 7), atol=1e-5)
    assert torch.allclose(q.indices_to_codes(out.indices).norm(dim=1), torch.ones(2, 7), atol=1e-5)


def test_vq_dead_code_restart_moves_unused_codes_to_data():
    q = _vq(dead_code_threshold=0.5, usage_decay=0.0).train()
    # Data sits near codes 0 and 1 only; the other 14 codes are dead after one batch.
    base = q.embedding.weight.detach()[:2].clone()
    z = torch.cat([base[i].reshape(1, 4, 1) + 0.01 * torch.randn(1, 4, 20) for i in range(2)], dim=2)
    z[:, :, 0] += 3.0  # the worst-served vector: it becomes a restarted code
    before = q.embedding.weight.detach().clone()
    q(z)
    after = q.embedding.weight.detach()
    changed = (after != before).any(1)
    assert changed.sum() > 0 and not changed[:2].any()
    restarted = after[changed]
    data = z[0].t()
    # Every restarted code is exactly one of the batch's vectors.
    assert all((data == code).all(1).any() for code in restarted)
    assert any(torch.allclose(code, data[0]) for code in restarted)
    # Eval mode never restarts.
    q.eval()
    frozen = q.embedding.weight.detach().clone()
    q(z)
    assert torch.equal(frozen, q.embedding.weight.detach())


def test_vq_bf16_autocast_returns_input_dtype_and_fp32_indices():
    q = _vq()
    z = torch.randn(2, 4, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = q(z.bfloat16())
    assert out.quantized.dtype == torch.bfloat16
    assert out.loss.dtype == torch.float32
    assert torch.equal(out.indices, q(z.bfloat16().float()).indices)


def test_vq_errors():
    with pytest.raises(VidgenError, match="codebook_size"):
        VectorQuantizer(codebook_size=1, dim=4)
    q = _vq()
    with pytest.raises(VidgenError, match="4 channels"):
        q(torch.randn(2, 3, 5))
    with pytest.raises(VidgenError, match=r"\[0, 16\)"):
        q.indices_to_codes(torch.tensor([[0, 16]]))
    with pytest.raises(VidgenError, match="integer"):
        q.indices_to_codes(torch.tensor([[0.0]]))


# ----------------------------------------------------------------------------- LookupFreeQuantizer


def test_lfq_vocabulary_and_sign_quantization():
    q = LookupFreeQuantizer(num_bits=5)
    assert q.vocab_size == 32
    z = torch.randn(2, 5, 3, 4)
    out = q(z)
    assert out.quantized.shape == z.shape and out.indices.shape == (2, 3, 4)
    assert torch.equal(out.quantized, torch.where(z > 0, 1.0, -1.0))
    assert int(out.indices.min()) >= 0 and int(out.indices.max()) < 32
    # index = sum_i [z_i > 0] 2^i
    expected = ((z > 0).long() * (2 ** torch.arange(5)).view(1, 5, 1, 1)).sum(1)
    assert torch.equal(out.indices, expected)


def test_lfq_index_bits_round_trip():
    q = LookupFreeQuantizer(num_bits=6)
    ids = torch.arange(64).reshape(4, 16)
    bits = q.indices_to_bits(ids)
    assert bits.shape == (4, 16, 6) and set(bits.unique().tolist()) <= {0, 1}
    assert torch.equal(q.bits_to_indices(bits), ids)
    codes = q.indices_to_codes(ids)                      # (4, 6, 16) in {-1, +1}
    assert codes.shape == (4, 6, 16)
    assert torch.equal(q(codes).indices, ids)           # codes quantize back to their own ids
    # Large vocabularies (VideoPoet: 2^18) round-trip too.
    big = LookupFreeQuantizer(num_bits=18)
    ids = torch.tensor([[0, 1, 2 ** 17, 2 ** 18 - 1, 123456]])
    assert big.vocab_size == 262144
    assert torch.equal(big.bits_to_indices(big.indices_to_bits(ids)), ids)


def test_lfq_straight_through_and_commitment():
    q = LookupFreeQuantizer(num_bits=4, entropy_weight=0.0, commitment_weight=0.25)
    z = torch.randn(3, 4, 5, requires_grad=True)
    out = q(z)
    weights = torch.randn_like(out.quantized)
    (out.quantized * weights).sum().backward()
    assert torch.equal(z.grad, weights)
    expected = (z.detach() - torch.where(z.detach() > 0, 1.0, -1.0)).pow(2).mean()
    assert torch.allclose(out.losses["commitment"], expected)


def _brute_force_lfq_entropy(z: torch.Tensor, temperature: float) -> torch.Tensor:
    bits = z.shape[1]
    flat = z.movedim(1, -1).reshape(-1, bits)
    ids = torch.arange(2 ** bits)
    codes = ((ids[:, None] >> torch.arange(bits)) & 1).float() * 2 - 1          # (2^b, b)
    logits = -torch.cdist(flat, codes).pow(2) / temperature
    return entropy_loss_from_logits(logits)


def test_lfq_entropy_matches_brute_force_enumeration():
    torch.manual_seed(1)
    z = torch.randn(4, 6, 9) * 0.7
    q = LookupFreeQuantizer(num_bits=6, entropy_weight=1.0, entropy_temperature=1.0, entropy_group_bits=10)
    exact = _brute_force_lfq_entropy(z, 1.0)
    assert torch.allclose(q(z).losses["entropy"], exact, atol=1e-4)
    # Grouped (factorised) batch entropy is an upper bound, so the loss can only be lower.
    grouped = LookupFreeQuantizer(num_bits=6, entropy_weight=1.0, entropy_group_bits=2)
    assert grouped(z).losses["entropy"].item() <= exact.item() + 1e-5


def test_lfq_entropy_lower_for_diverse_codes_than_collapse():
    q = LookupFreeQuantizer(num_bits=4, entropy_weight=1.0, entropy_temperature=0.1)
    diverse = q.indices_to_codes(torch.arange(16).reshape(1, 16)).repeat(1, 1, 2)   # all 16 codes
    collapsed = q.indices_to_codes(torch.full((1, 32), 5))
    assert q(diverse).losses["entropy"].item() < q(collapsed).losses["entropy"].item()
    assert q(diverse).losses["entropy"].item() == pytest.approx(-math.log(16), abs=1e-3)
    assert q(diverse).usage.item() == 1.0 and q(diverse).perplexity.item() == pytest.approx(16.0, rel=1e-5)


def test_lfq_errors():
    with pytest.raises(VidgenError, match="num_bits"):
        LookupFreeQuantizer(num_bits=0)
    q = LookupFreeQuantizer(num_bits=4)
    with pytest.raises(VidgenError, match="4 channels"):
        q(torch.randn(1, 3, 2))
    with pytest.raises(VidgenError, match=r"\[0, 16\)"):
        q.indices_to_codes(torch.tensor([16]))
    with pytest.raises(VidgenError, match="end with 4"):
        q.bits_to_indices(torch.zeros(2, 3, dtype=torch.long))
