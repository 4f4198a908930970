"""Tests for the shared GAN losses, LeCam, adaptive weight, perceptual hook, the 3D discriminator and
the `AdversarialLoss` helper."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vidgen.errors import VidgenError
from vidgen.tokenizers import gan_losses
from vidgen.tokenizers.discriminator import (
    Discriminator3D,
    DiscriminatorConfig,
    blur_downsample,
    discriminator_shapes,
    discriminator_tiny,
    minibatch_std,
)
from vidgen.tokenizers.gan_losses import (
    AdversarialLoss,
    GANConfig,
    LeCamRegularizer,
    PerceptualLoss,
    adaptive_generator_weight,
    discriminator_hinge_loss,
    discriminator_nonsaturating_loss,
    gan_loss_functions,
    generator_hinge_loss,
    generator_nonsaturating_loss,
)

# ----------------------------------------------------------------------------- losses


def test_hinge_losses_values():
    real = torch.tensor([2.0, 0.5, -1.0])
    fake = torch.tensor([-2.0, 0.0, 1.0])
    # relu(1 - real) = [0, 0.5, 2] -> 2.5/3 ; relu(1 + fake) = [0, 1, 2] -> 1
    assert discriminator_hinge_loss(real, fake).item() == pytest.approx(2.5 / 3 + 1.0)
    assert generator_hinge_loss(fake).item() == pytest.approx(1.0 / 3)
    # A discriminator that separates with margin has zero hinge loss.
    assert discriminator_hinge_loss(torch.full((4,), 3.0), torch.full((4,), -3.0)).item() == 0.0


def test_nonsaturating_losses_values():
    real, fake = torch.tensor([0.0, 1.0]), torch.tensor([0.0, -1.0])
    expected_d = (F.softplus(-real).mean() + F.softplus(fake).mean()).item()
    assert discriminator_nonsaturating_loss(real, fake).item() == pytest.approx(expected_d)
    assert generator_nonsaturating_loss(torch.zeros(3)).item() == pytest.approx(torch.log(torch.tensor(2.0)).item())
    # Non-saturating: the generator's gradient stays large when the discriminator wins (fake << 0).
    fake = torch.tensor([-10.0], requires_grad=True)
    generator_nonsaturating_loss(fake).backward()
    assert fake.grad.abs().item() > 0.99


def test_gan_loss_functions_selects_and_validates():
    assert gan_loss_functions("hinge") == (discriminator_hinge_loss, generator_hinge_loss)
    assert gan_loss_functions("non_saturating")[1] is generator_nonsaturating_loss
    with pytest.raises(VidgenError, match="hinge"):
        gan_loss_functions("wasserstein")


def test_lecam_is_zero_at_the_anchors_and_positive_beyond():
    lecam = LeCamRegularizer(decay=0.9)
    lecam.update(torch.tensor([2.0, 4.0]), torch.tensor([-1.0, -3.0]))   # first update sets the anchors
    assert lecam.ema_real.item() == pytest.approx(3.0) and lecam.ema_fake.item() == pytest.approx(-2.0)
    # Real logits at alpha_F and fake logits at alpha_R: zero penalty.
    assert lecam.penalty(torch.full((5,), -2.0), torch.full((5,), 3.0)).item() == 0.0
    # Closer together than the anchors: still zero (the relu only limits separation).
    assert lecam.penalty(torch.full((5,), -3.0), torch.full((5,), 4.0)).item() == 0.0
    # Separated: mean(relu(real - alpha_F)^2) + mean(relu(alpha_R - fake)^2) = 4^2 + 5^2.
    assert lecam.penalty(torch.tensor([2.0]), torch.tensor([-2.0])).item() == pytest.approx(16.0 + 25.0)


def test_lecam_ema_update_rule_and_forward():
    lecam = LeCamRegularizer(decay=0.9)
    lecam.update(torch.tensor([1.0]), torch.tensor([-1.0]))
    lecam.update(torch.tensor([3.0]), torch.tensor([1.0]))
    assert lecam.ema_real.item() == pytest.approx(0.9 * 1.0 + 0.1 * 3.0)
    assert lecam.ema_fake.item() == pytest.approx(0.9 * -1.0 + 0.1 * 1.0)
    assert int(lecam.num_updates) == 2
    real = torch.tensor([5.0], requires_grad=True)
    penalty = lecam(real, torch.tensor([0.0]))                     # updates, then penalises
    assert int(lecam.num_updates) == 3
    penalty.backward()
    assert real.grad.item() > 0                                    # pushes the real logit down
    with pytest.raises(VidgenError, match="decay"):
        LeCamRegularizer(decay=1.0)


def test_adaptive_weight_is_the_gradient_norm_ratio():
    torch.manual_seed(0)
    layer = nn.Linear(4, 3)
    x = torch.randn(5, 4)
    out = layer(x)
    rec = out.pow(2).mean()
    gan = -3.0 * out.mean()
    weight = adaptive_generator_weight(rec, gan, layer.weight)
    g_rec = torch.autograd.grad(rec, layer.weight, retain_graph=True)[0]
    g_gan = torch.autograd.grad(gan, layer.weight, retain_graph=True)[0]
    assert weight.item() == pytest.approx((g_rec.norm() / (g_gan.norm() + 1e-4)).item(), rel=1e-5)
    assert not weight.requires_grad
    assert adaptive_generator_weight(rec, 1e-9 * out.mean(), layer.weight, max_weight=10.0).item() == 10.0


# ----------------------------------------------------------------------------- perceptual hook


class _TinyFeatures(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)

    def forward(self, x):
        a = F.relu(self.conv1(x))
        return [a, F.relu(self.conv2(a))]


def test_perceptual_loss_off_without_a_network_and_says_so_once(monkeypatch):
    monkeypatch.setattr(gan_losses, "_warned_perceptual_off", False)
    with pytest.warns(UserWarning, match="perceptual loss is off"):
        loss = PerceptualLoss()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PerceptualLoss()                                            # second time: silent
    x = torch.randn(1, 3, 2, 8, 8, requires_grad=True)
    assert not loss.enabled
    assert loss(x, torch.randn(1, 3, 2, 8, 8)).item() == 0.0


def test_perceptual_loss_with_a_feature_network():
    torch.manual_seed(0)
    net = _TinyFeatures()
    loss = PerceptualLoss(net)
    assert loss.enabled and not any(p.requires_grad for p in net.parameters())
    x = torch.rand(2, 3, 3, 8, 8) * 2 - 1
    assert loss(x, x).item() == pytest.approx(0.0, abs=1e-7)
    y = (x + 0.5 * torch.randn_like(x)).requires_grad_()
    value = loss(y, x)
    assert value.item() > 0
    value.backward()
    assert y.grad is not None and y.grad.abs().sum() > 0
    # By hand: frames folded into the batch, channel-normalised features, mean squared distance.
    frames = lambda v: v.detach().transpose(1, 2).flatten(0, 1)
    fy, fx = net(frames(y)), net(frames(x))
    manual = sum((F.normalize(a, dim=1, eps=1e-10) - F.normalize(b, dim=1, eps=1e-10)).pow(2).mean()
                 for a, b in zip(fy, fx)) / 2
    assert value.item() == pytest.approx(manual.item(), rel=1e-5)
    # A plain function works too (no parameters to freeze).
    assert PerceptualLoss(lambda frames: frames.mean(dim=1, keepdim=True))(y, x).item() > 0
    with pytest.raises(VidgenError, match="callable"):
        PerceptualLoss(feature_net=3)
    with pytest.raises(VidgenError, match="one shape"):
        loss(x, x[:1])


# ----------------------------------------------------------------------------- discriminator


def test_discriminator_shapes_and_dtypes():
    torch.manual_seed(0)
    disc = discriminator_tiny()
    logits = disc(torch.rand(3, 3, 16, 64, 64) * 2 - 1)
    assert logits.shape == (3,) and logits.dtype == torch.float32
    assert disc(torch.rand(2, 3, 4, 16, 32)).shape == (2,)          # any size the factors divide
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = disc(torch.rand(2, 3, 4, 16, 16))
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
    assert discriminator_shapes().config.spatial_factor == 16
    with pytest.raises(VidgenError, match="multiples of 8"):
        disc(torch.rand(1, 3, 4, 12, 16))
    with pytest.raises(VidgenError, match=r"\(B, 3, T, H, W\)"):
        disc(torch.rand(1, 4, 4, 16, 16))
    with pytest.raises(VidgenError, match="temporal_downsample"):
        DiscriminatorConfig(channel_multipliers=(1, 2), temporal_downsample=(True,))


def test_discriminator_minibatch_std_option():
    torch.manual_seed(0)
    with_std = discriminator_tiny()
    without = discriminator_tiny(minibatch_std_group=0)
    assert with_std.conv_out.in_channels == without.conv_out.in_channels + 1
    assert without(torch.rand(2, 3, 4, 16, 16)).shape == (2,)
    # The std channel: identical clips in a group have zero spread, different ones positive.
    x = torch.randn(1, 5, 2, 3, 3)
    same = minibatch_std(x.expand(4, -1, -1, -1, -1), group_size=4)
    assert same.shape == (4, 6, 2, 3, 3) and same[:, -1].abs().max() < 1e-3
    different = minibatch_std(torch.randn(6, 5, 2, 3, 3), group_size=4)  # group of 3 (divides 6)
    assert (different[:, -1] > 0.1).all()


def test_blur_downsample_filter_and_shapes():
    x = torch.zeros(1, 1, 1, 8, 8)
    x[..., 4, 4] = 1.0                                     # an impulse
    y = blur_downsample(x, temporal=False)
    assert y.shape == (1, 1, 1, 4, 4)
    assert y.sum().item() == pytest.approx(1.0 / 4)        # a normalised filter, subsampled by 2x2
    # Separable [1, 3, 3, 1] / 8 per axis: an impulse at 4 (of 8) lands with weights 1/8 and 3/8 on
    # the outputs 1 and 2 (the other two taps fall between the kept samples).
    row = torch.tensor([0.0, 1.0, 3.0, 0.0]) / 8
    assert torch.allclose(y[0, 0, 0], torch.outer(row, row))
    v = torch.rand(2, 3, 4, 8, 8)
    assert blur_downsample(v, temporal=True).shape == (2, 3, 2, 4, 4)
    assert torch.allclose(blur_downsample(v, temporal=False, blur=False), F.avg_pool3d(v, (1, 2, 2)))
    # A constant stays constant (replicate padding, normalised filter).
    assert torch.allclose(blur_downsample(torch.full((1, 1, 4, 8, 8), 0.7), temporal=True), torch.tensor(0.7))


# ----------------------------------------------------------------------------- AdversarialLoss


def test_adversarial_discriminator_step_improves_separation():
    torch.manual_seed(0)
    adv = AdversarialLoss(discriminator_tiny(), GANConfig(lr=2e-3, lecam_weight=0.0))
    real = torch.rand(2, 3, 4, 16, 16) * 2 - 1
    fake = torch.zeros(2, 3, 4, 16, 16)
    first = adv.discriminator_step(real, fake)["disc_loss"].item()
    for _ in range(10):
        last = adv.discriminator_step(real, fake)
    assert last["disc_loss"].item() < first
    assert last["logits_real"].item() > last["logits_fake"].item()


def test_adversarial_generator_loss_freezes_the_discriminator_and_resumes_exactly():
    torch.manual_seed(0)
    adv = AdversarialLoss(discriminator_tiny(), GANConfig(weight=0.5, loss="non_saturating"))
    fake = (torch.rand(2, 3, 4, 16, 16) * 2 - 1).requires_grad_()
    loss, logs = adv.generator_loss(fake)
    assert logs["gan_weight"].item() == pytest.approx(0.5)
    assert loss.item() == pytest.approx(0.5 * logs["gan_generator"].item())
    loss.backward()
    assert fake.grad is not None
    assert all(p.grad is None and p.requires_grad for p in adv.discriminator.parameters())
    # State round trip: a copy continues exactly like the original.
    adv.discriminator_step(fake.detach(), torch.zeros_like(fake))
    copy = AdversarialLoss(discriminator_tiny(), GANConfig(weight=0.5, loss="non_saturating"))
    copy.load_state_tensors(adv.state_tensors())
    real = torch.rand(2, 3, 4, 16, 16)
    a = adv.discriminator_step(real, fake.detach())
    b = copy.discriminator_step(real, fake.detach())
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(VidgenError, match="unexpected"):
        copy.load_state_tensors({**adv.state_tensors(), "bogus": torch.zeros(1)})
    with pytest.raises(VidgenError, match="does not match"):
        AdversarialLoss(discriminator_tiny(base_channels=4)).load_state_tensors(adv.state_tensors())


def test_gan_config_validation():
    with pytest.raises(VidgenError, match="hinge"):
        GANConfig(loss="wgan")
    with pytest.raises(VidgenError, match="start_step"):
        GANConfig(start_step=-1)
    assert isinstance(Discriminator3D(DiscriminatorConfig(base_channels=4, channel_multipliers=(1,),
                                                          temporal_downsample=(False,))), nn.Module)
