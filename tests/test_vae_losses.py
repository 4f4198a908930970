"""The KL-VAE training objective."""

import pytest
import torch

from vidgen.errors import VidgenError
from vidgen.tokenizers.cogvideox_vae import cogvideox_vae_tiny
from vidgen.tokenizers.distributions import DiagonalGaussian
from vidgen.tokenizers.vae_losses import VAELoss, make_vae_loss


def test_terms_and_total():
    video = torch.zeros(2, 3, 5, 8, 8)
    recon = video + 0.5
    posterior = DiagonalGaussian(torch.zeros(2, 8, 2, 1, 1))  # mean 0, logvar 0: KL = 0
    terms = VAELoss(l1_weight=1.0, mse_weight=2.0, kl_weight=1.0)(video, recon, posterior)
    torch.testing.assert_close(terms["l1"], torch.tensor(0.5))
    torch.testing.assert_close(terms["mse"], torch.tensor(0.25))
    torch.testing.assert_close(terms["kl"], torch.tensor(0.0))
    torch.testing.assert_close(terms["loss"], torch.tensor(0.5 + 2 * 0.25))
    torch.testing.assert_close(terms["psnr"], 10 * torch.log10(torch.tensor(4 / 0.25)))
    shifted = DiagonalGaussian(torch.cat([torch.ones(2, 4, 2, 1, 1), torch.zeros(2, 4, 2, 1, 1)], 1))
    assert VAELoss()(video, recon, shifted)["kl"] == pytest.approx(0.5)  # 0.5 * mean^2 per element


def test_bad_options():
    with pytest.raises(VidgenError, match="unknown \\[loss\\] keys \\['gan'\\]"):
        make_vae_loss(gan=1.0)
    with pytest.raises(VidgenError, match="kl_weight=-1"):
        VAELoss(kl_weight=-1)
    with pytest.raises(VidgenError, match="needs a reconstruction loss"):
        VAELoss(l1_weight=0, mse_weight=0)
    with pytest.raises(VidgenError, match="differs from"):
        VAELoss()(torch.zeros(1, 3, 1, 8, 8), torch.zeros(1, 3, 1, 16, 8), DiagonalGaussian(torch.zeros(1, 8, 1, 1, 1)))


def test_perceptual_hook_is_off_without_a_feature_network(monkeypatch):
    from vidgen.tokenizers import gan_losses

    monkeypatch.setattr(gan_losses, "_warned_perceptual_off", False)  # it warns once per process
    with pytest.warns(UserWarning, match="perceptual loss is off"):
        loss = VAELoss(perceptual_weight=1.0)  # the warning comes from building the loss
    terms = loss(torch.zeros(1, 3, 1, 8, 8), torch.ones(1, 3, 1, 8, 8), DiagonalGaussian(torch.zeros(1, 8, 1, 1, 1)))
    assert "perceptual" not in terms


def test_tiny_vae_learns_a_constant_colour_clip():
    torch.manual_seed(0)
    vae = cogvideox_vae_tiny()
    video = torch.zeros(1, 3, 5, 16, 16)
    video[:, 0] = 0.8
    video[:, 2] = -0.6
    loss_fn = VAELoss(mse_weight=1.0)
    optimizer = torch.optim.Adam(vae.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(30):
        recon, posterior = vae(video, sample=True, generator=generator)
        terms = loss_fn(video, recon, posterior)
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        losses.append(terms["loss"].item())
    assert losses[-1] < 0.5 * losses[0]
