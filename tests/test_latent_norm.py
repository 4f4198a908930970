"""Latent normalisation (vidgen.diffusion.latent_norm): the map between VAE latents and diffusion data."""

import pytest
import torch

from vidgen.diffusion.latent_norm import LatentNormalizer, latent_scaling_factor
from vidgen.errors import VidgenError


def correlated_latents(n=32, channels=6, seed=0):
    """(N, C, T, H, W) latents with a per-channel offset, correlated channels and spread-out variances."""
    g = torch.Generator().manual_seed(seed)
    mixing = torch.randn(channels, channels, generator=g) * torch.logspace(-2, 0, channels)
    base = torch.randn(n, channels, 2, 3, 3, generator=g)
    return torch.einsum("dc,nc...->nd...", mixing, base) + torch.linspace(-2, 3, channels).view(1, -1, 1, 1, 1)


def channel_moments(x):
    flat = x.transpose(0, 1).reshape(x.shape[1], -1).double()
    centred = flat - flat.mean(1, keepdim=True)
    return flat.mean(1), centred @ centred.T / flat.shape[1]


@pytest.mark.parametrize("mode", ["scale", "channel", "whiten"])
def test_denormalize_inverts_normalize(mode):
    z = correlated_latents()
    norm = LatentNormalizer.fit(z, None, mode, eps=0.01)
    torch.testing.assert_close(norm.denormalize(norm.normalize(z)), z, atol=1e-5, rtol=1e-5)


def test_whiten_gives_zero_mean_identity_covariance_and_channel_gives_unit_variance():
    z = correlated_latents()
    mean, covariance = channel_moments(LatentNormalizer.fit(z, None, "whiten", eps=0.0).normalize(z))
    assert mean.abs().max() < 1e-5
    torch.testing.assert_close(covariance, torch.eye(6, dtype=torch.float64), atol=1e-4, rtol=0)
    mean, covariance = channel_moments(LatentNormalizer.fit(z, None, "channel").normalize(z))
    assert mean.abs().max() < 1e-5
    torch.testing.assert_close(covariance.diagonal(), torch.ones(6, dtype=torch.float64), atol=1e-4, rtol=0)
    assert covariance.fill_diagonal_(0).abs().max() > 0.1  # channel mode leaves correlations alone


def test_whiten_eps_floors_small_directions_and_posterior_noise_counts_as_variance():
    z = correlated_latents()
    sharp = LatentNormalizer.fit(z, None, "whiten", eps=0.0)
    floored = LatentNormalizer.fit(z, None, "whiten", eps=0.1)
    # The largest gain of the map is the inverse sqrt of the smallest (floored) eigenvalue.
    gain = lambda n: torch.linalg.matrix_norm(n.matrix, ord=2)
    assert gain(floored) < 0.5 * gain(sharp)
    # Posterior noise adds E[std^2] to each channel's variance: the fitted std grows accordingly.
    noisy = LatentNormalizer.fit(z, torch.full_like(z, 0.5), "channel")
    plain = LatentNormalizer.fit(z, None, "channel")
    torch.testing.assert_close(noisy.inverse.diagonal() ** 2, plain.inverse.diagonal() ** 2 + 0.25)


def test_scale_mode_is_the_ldm_scaling_factor():
    z = correlated_latents()
    std = torch.full_like(z, 0.1)
    factor = latent_scaling_factor(z, std)
    assert factor == pytest.approx(1.0 / (z.double().var(unbiased=False) + 0.01).sqrt().item())
    norm = LatentNormalizer.fit(z, std, "scale")
    assert torch.equal(norm.normalize(z), z * factor) and torch.equal(norm.denormalize(z), z / factor)


def test_round_trip_through_a_dict_and_clear_errors():
    z = correlated_latents()
    norm = LatentNormalizer.fit(z, None, "whiten")
    again = LatentNormalizer.from_dict(norm.to_dict())
    assert again.mode == "whiten" and torch.equal(again.normalize(z), norm.normalize(z))
    with pytest.raises(VidgenError, match="expected one of scale, channel, whiten"):
        LatentNormalizer.fit(z, None, "pca")
    with pytest.raises(VidgenError, match=r"latents must be \(B, 6, ...\) for this normaliser; got shape \(2, 4, 3\)"):
        norm.normalize(torch.zeros(2, 4, 3))
    with pytest.raises(VidgenError, match="lacks the key"):
        LatentNormalizer.from_dict({"mode": "whiten", "mean": [0.0]})
    with pytest.raises(VidgenError, match=r"matrix must be \(2, 2\) for 2 channels; got \(3, 3\)"):
        LatentNormalizer("whiten", torch.zeros(2), torch.eye(3), torch.eye(2))
    with pytest.raises(VidgenError, match="eps = -1"):
        LatentNormalizer.fit(z, None, "whiten", eps=-1)
    with pytest.raises(VidgenError, match="do not vary"):
        LatentNormalizer.fit(torch.ones(4, 3, 1, 2, 2), None, "whiten", eps=0.0)
