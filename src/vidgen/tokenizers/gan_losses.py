"""Adversarial and perceptual losses shared by every vidgen tokenizer (MAGVIT 3D-VQ, VideoPoet LFQ,
CogVideoX KL-VAE): one implementation, used through plain functions or the `AdversarialLoss` helper.

Plain functions (logits are the discriminator's raw outputs, any shape):
    discriminator_hinge_loss(real, fake)          mean(relu(1 - real)) + mean(relu(1 + fake))
    generator_hinge_loss(fake)                     -mean(fake)
    discriminator_nonsaturating_loss(real, fake)   mean(softplus(-real)) + mean(softplus(fake))
    generator_nonsaturating_loss(fake)             mean(softplus(-fake))
    adaptive_generator_weight(rec, gan, layer)     VQGAN's ||grad rec|| / ||grad gan|| at the last layer

`LeCamRegularizer` (Tseng et al., CVPR 2021; MAGVIT uses weight 0.001): keeps EMAs alpha_R, alpha_F of
the mean real and fake logits and penalises

    R_LC = mean(relu(D(x) - alpha_F)^2) + mean(relu(alpha_R - D(G(z)))^2)

i.e. real logits are pulled no higher than where fake logits usually are, and fake logits no lower
than where real ones usually are, which bounds how far apart the discriminator can push them and
keeps it from over-fitting small data sets. Zero when real logits sit at alpha_F and fake ones at
alpha_R (or closer together than that).

`PerceptualLoss(feature_net)`: distance between features of a user-supplied network (e.g. LPIPS's
VGG, loaded by the user from local weights; nothing is downloaded). Without one it is off, returns 0
and says so once.

`AdversarialLoss` packages what a tokenizer objective needs around a discriminator: it owns the
discriminator, its optimizer and the LeCam EMAs; `discriminator_step(real, fake)` runs one complete
update inside the objective's call, and `generator_loss(fake)` returns the generator's term for the
trainer's backward; `state_tensors()` / `load_state_tensors()` capture all of it for exact resume.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from vidgen.errors import VidgenError

__all__ = [
    "AdversarialLoss",
    "GANConfig",
    "LeCamRegularizer",
    "PerceptualLoss",
    "adaptive_generator_weight",
    "discriminator_hinge_loss",
    "discriminator_nonsaturating_loss",
    "gan_loss_functions",
    "generator_hinge_loss",
    "generator_nonsaturating_loss",
]

logger = logging.getLogger(__name__)

GANLossKind = Literal["hinge", "non_saturating"]


# ----------------------------------------------------------------------------- GAN objectives


def discriminator_hinge_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge loss of the discriminator: real logits pushed above +1, fake below -1."""
    return F.relu(1.0 - real_logits.float()).mean() + F.relu(1.0 + fake_logits.float()).mean()


def generator_hinge_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge-GAN generator loss: raise the fake logits."""
    return -fake_logits.float().mean()


def discriminator_nonsaturating_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Logistic (cross-entropy) discriminator loss: -log sigmoid(real) - log(1 - sigmoid(fake))."""
    return F.softplus(-real_logits.float()).mean() + F.softplus(fake_logits.float()).mean()


def generator_nonsaturating_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss -log sigmoid(fake) (strong gradients while D wins)."""
    return F.softplus(-fake_logits.float()).mean()


def gan_loss_functions(kind: str) -> tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                                           Callable[[torch.Tensor], torch.Tensor]]:
    """(discriminator_loss(real, fake), generator_loss(fake)) for "hinge" or "non_saturating"."""
    if kind == "hinge":
        return discriminator_hinge_loss, generator_hinge_loss
    if kind == "non_saturating":
        return discriminator_nonsaturating_loss, generator_nonsaturating_loss
    raise VidgenError(f"GAN loss must be 'hinge' or 'non_saturating', got {kind!r}")


def adaptive_generator_weight(reconstruction_loss: torch.Tensor, generator_loss: torch.Tensor,
                              last_layer: torch.Tensor, max_weight: float = 1e4, eps: float = 1e-4
                              ) -> torch.Tensor:
    """VQGAN's balance (Esser et al. 2021, Eq. 7): ||grad_L rec|| / (||grad_L gan|| + eps), clamped to
    [0, max_weight] and detached, with L the weight of the decoder's last layer.

    Scaling the GAN loss by this makes its gradient at the output layer as large as the reconstruction
    loss's, whatever the losses' scales. Both losses must still have their graphs (they are kept).
    """
    rec_grad, = torch.autograd.grad(reconstruction_loss, last_layer, retain_graph=True)
    gan_grad, = torch.autograd.grad(generator_loss, last_layer, retain_graph=True)
    weight = rec_grad.float().norm() / (gan_grad.float().norm() + eps)
    return weight.clamp(0.0, max_weight).detach()


class LeCamRegularizer(nn.Module):
    """LeCam regularisation with EMA anchors of the real/fake logits (module docstring).

    `update(real, fake)` folds the batch means into the EMAs (the first update sets them); `penalty`
    evaluates R_LC against the current anchors. The anchors are buffers: they are saved with the
    owner's state and move with `.to(device)`.
    """

    def __init__(self, decay: float = 0.999):
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise VidgenError(f"LeCam EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.register_buffer("ema_real", torch.zeros(()))
        self.register_buffer("ema_fake", torch.zeros(()))
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> None:
        real, fake = real_logits.detach().float().mean(), fake_logits.detach().float().mean()
        if int(self.num_updates) == 0:
            self.ema_real.copy_(real)
            self.ema_fake.copy_(fake)
        else:
            self.ema_real.lerp_(real, 1.0 - self.decay)
            self.ema_fake.lerp_(fake, 1.0 - self.decay)
        self.num_updates += 1

    def penalty(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return (F.relu(real_logits.float() - self.ema_fake).pow(2).mean()
                + F.relu(self.ema_real - fake_logits.float()).pow(2).mean())

    def forward(self, real_logits: torch.Tensor, fake_logits: torch.Tensor, update: bool = True) -> torch.Tensor:
        """Update the anchors with this batch (if `update`), then return the penalty."""
        if update:
            self.update(real_logits, fake_logits)
        return self.penalty(real_logits, fake_logits)


# ----------------------------------------------------------------------------- perceptual loss

_warned_perceptual_off = False


class PerceptualLoss(nn.Module):
    """Squared distance between deep features of real and reconstructed frames.

    Args:
        feature_net: a callable (or nn.Module) taking frames (N, 3, H, W) in [-1, 1] and returning one
            feature map or a sequence of them. None: the loss is off (returns 0) and a warning says so
            once, since no pretrained network can be downloaded here; pass e.g. a VGG16 loaded from
            local weights to turn it on. An nn.Module is frozen (eval mode, no parameter gradients).
        normalize: unit-normalise each feature vector across channels first (as LPIPS does), so every
            layer counts equally whatever its activation scale.

    Video (B, C, T, H, W) is folded to B * T frames. Returns a float32 scalar:
    mean over layers of mean((f(x) - f(y))^2). Gradients flow to the inputs.
    """

    def __init__(self, feature_net: Callable[[torch.Tensor], Any] | None = None, normalize: bool = True):
        super().__init__()
        self.feature_net = feature_net
        self.normalize = normalize
        if isinstance(feature_net, nn.Module):
            feature_net.eval()
            feature_net.requires_grad_(False)
        if feature_net is None:
            global _warned_perceptual_off
            message = ("PerceptualLoss: no feature network was given, so the perceptual loss is off "
                       "(it returns 0); pass feature_net=<a network loaded from local weights> to enable it")
            if not _warned_perceptual_off:  # once per process, not once per objective built
                warnings.warn(message, stacklevel=2)
                _warned_perceptual_off = True
            logger.info(message)
        elif not callable(feature_net):
            raise VidgenError(f"feature_net must be callable (frames -> features) or None, "
                              f"got {type(feature_net).__name__}")

    @property
    def enabled(self) -> bool:
        return self.feature_net is not None

    def train(self, mode: bool = True) -> PerceptualLoss:
        super().train(mode)
        if isinstance(self.feature_net, nn.Module):
            self.feature_net.eval()  # a frozen feature extractor stays in eval mode (batch-norm, dropout)
        return self

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if input.shape != target.shape:
            raise VidgenError(f"PerceptualLoss needs input and target of one shape, got {tuple(input.shape)} "
                              f"and {tuple(target.shape)}")
        if not self.enabled:
            return input.new_zeros((), dtype=torch.float32)
        if input.ndim == 5:  # (B, C, T, H, W) -> (B * T, C, H, W)
            input, target = (x.transpose(1, 2).flatten(0, 1) for x in (input, target))
        elif input.ndim != 4:
            raise VidgenError(f"PerceptualLoss expects (B, C, T, H, W) or (N, C, H, W), got {tuple(input.shape)}")
        both = self.feature_net(torch.cat([input, target.detach()], dim=0))
        layers = [both] if isinstance(both, torch.Tensor) else list(both)
        if not layers:
            raise VidgenError("the feature network returned no features")
        total = input.new_zeros((), dtype=torch.float32)
        for features in layers:
            f_in, f_target = features.float().chunk(2, dim=0)
            if self.normalize and f_in.ndim >= 2:
                f_in, f_target = F.normalize(f_in, dim=1, eps=1e-10), F.normalize(f_target, dim=1, eps=1e-10)
            total = total + (f_in - f_target).pow(2).mean()
        return total / len(layers)


# ----------------------------------------------------------------------------- discriminator training


@dataclass
class GANConfig:
    """The adversarial part of a tokenizer objective.

    loss: "hinge" (MAGVIT, VQGAN) or "non_saturating" (StyleGAN).
    weight: weight of the generator's adversarial term (MAGVIT: 0.1).
    start_step: the GAN (discriminator updates and generator term) starts at this objective call;
        before, the tokenizer trains on reconstruction alone (VQGAN's warm-up).
    lecam_weight: weight of the LeCam penalty in the discriminator loss (MAGVIT: 0.001); 0 = off.
    lecam_decay: decay of the LeCam logit EMAs.
    adaptive_weight: multiply `weight` by VQGAN's gradient-norm ratio at the decoder's last layer.
    max_adaptive_weight: clamp of that ratio.
    lr, betas, weight_decay: the discriminator's Adam(W) (StyleGAN: betas (0, 0.99)).
    """

    loss: GANLossKind = "hinge"
    weight: float = 0.1
    start_step: int = 0
    lecam_weight: float = 0.001
    lecam_decay: float = 0.999
    adaptive_weight: bool = False
    max_adaptive_weight: float = 1e4
    lr: float = 1e-4
    betas: tuple[float, float] = (0.0, 0.99)
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        gan_loss_functions(self.loss)  # validates the name
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        if self.weight < 0 or self.lecam_weight < 0:
            raise VidgenError(f"GAN weights must be >= 0, got weight={self.weight}, lecam_weight={self.lecam_weight}")
        if self.start_step < 0:
            raise VidgenError(f"start_step must be >= 0, got {self.start_step}")
        if self.lr <= 0:
            raise VidgenError(f"the discriminator learning rate must be > 0, got {self.lr}")


class AdversarialLoss(nn.Module):
    """A discriminator, its optimizer and the LeCam anchors, for any tokenizer objective.

    Use inside an objective's call (the trainer then back-propagates the returned generator loss):

        logs = adv.discriminator_step(video, reconstruction.detach())   # updates D now
        g_loss, logs2 = adv.generator_loss(reconstruction, rec_loss, last_layer)

    The discriminator step comes first: stepping D's optimizer after its forward on the generator's
    output would modify weights that the generator's pending backward still needs. During the
    generator's forward the discriminator's parameters are frozen (requires_grad off), so the
    trainer's backward computes no gradients for them, and D's own optimizer is the only thing that
    ever changes them.
    """

    def __init__(self, discriminator: nn.Module, config: GANConfig | None = None):
        super().__init__()
        self.config = config or GANConfig()
        self.discriminator = discriminator
        self.lecam = LeCamRegularizer(self.config.lecam_decay)
        self._d_loss, self._g_loss = gan_loss_functions(self.config.loss)
        self.optimizer = torch.optim.AdamW(discriminator.parameters(), lr=self.config.lr, betas=self.config.betas,
                                           weight_decay=self.config.weight_decay)

    def active(self, step: int) -> bool:
        return self.config.weight > 0 and step >= self.config.start_step

    def _move_to(self, like: torch.Tensor) -> None:
        parameter = next(self.discriminator.parameters(), None)
        if parameter is not None and parameter.device != like.device:
            self.to(like.device)  # parameters move in place, so the optimizer still holds them

    def discriminator_step(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """One discriminator update on real and (detached) fake videos. Returns detached logs:
        "disc_loss" (adversarial part), "lecam", "logits_real", "logits_fake"."""
        self._move_to(real)
        self.discriminator.train()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.enable_grad():
            # Two passes rather than one on cat([real, fake]): minibatch-std groups must not mix them.
            real_logits = self.discriminator(real.detach()).float()
            fake_logits = self.discriminator(fake.detach()).float()
            adversarial = self._d_loss(real_logits, fake_logits)
            loss = adversarial
            lecam = real_logits.new_zeros(())
            if self.config.lecam_weight > 0:
                lecam = self.lecam(real_logits, fake_logits)
                loss = loss + self.config.lecam_weight * lecam
            loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {"disc_loss": adversarial.detach(), "lecam": lecam.detach(),
                "logits_real": real_logits.detach().mean(), "logits_fake": fake_logits.detach().mean()}

    def generator_loss(self, fake: torch.Tensor, reconstruction_loss: torch.Tensor | None = None,
                       last_layer: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The generator's weighted adversarial term (with graph) and logs ("gan_generator", "gan_weight").

        With `adaptive_weight` on and `reconstruction_loss`, `last_layer` given (and grad enabled), the
        weight is config.weight times VQGAN's gradient-norm ratio; otherwise config.weight.
        """
        self._move_to(fake)
        flags = [p.requires_grad for p in self.discriminator.parameters()]
        self.discriminator.requires_grad_(False)
        try:
            fake_logits = self.discriminator(fake)
        finally:
            for p, flag in zip(self.discriminator.parameters(), flags):
                p.requires_grad_(flag)
        g_loss = self._g_loss(fake_logits)
        weight = torch.tensor(self.config.weight, device=fake.device)
        if (self.config.adaptive_weight and reconstruction_loss is not None and last_layer is not None
                and torch.is_grad_enabled() and g_loss.requires_grad):
            weight = weight * adaptive_generator_weight(reconstruction_loss, g_loss, last_layer,
                                                        self.config.max_adaptive_weight)
        return weight * g_loss, {"gan_generator": g_loss.detach(), "gan_weight": weight.detach()}

    # ---- exact resume

    def state_tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Discriminator weights, LeCam anchors and the optimizer's per-parameter state, as named CPU
        tensors (safetensors-ready). Hyper-parameters come from the config and are not stored."""
        tensors = {f"{prefix}discriminator.{k}": v for k, v in self.discriminator.state_dict().items()}
        tensors.update({f"{prefix}lecam.{k}": v for k, v in self.lecam.state_dict().items()})
        params = list(self.discriminator.parameters())
        for i, p in enumerate(params):
            for key, value in self.optimizer.state.get(p, {}).items():
                if not isinstance(value, torch.Tensor):
                    value = torch.tensor(value)
                tensors[f"{prefix}optimizer.{i}.{key}"] = value
        return {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor], prefix: str = "") -> None:
        """Inverse of `state_tensors` (strict: missing or unexpected names raise VidgenError)."""
        own = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        disc = {k[len("discriminator."):]: v for k, v in own.items() if k.startswith("discriminator.")}
        lecam = {k[len("lecam."):]: v for k, v in own.items() if k.startswith("lecam.")}
        opt = {k[len("optimizer."):]: v for k, v in own.items() if k.startswith("optimizer.")}
        unknown = sorted(set(own) - {f"discriminator.{k}" for k in disc} - {f"lecam.{k}" for k in lecam}
                         - {f"optimizer.{k}" for k in opt})
        if unknown:
            raise VidgenError(f"unexpected adversarial state tensors: {unknown[:10]}")
        try:
            self.discriminator.load_state_dict(disc, strict=True)
            self.lecam.load_state_dict(lecam, strict=True)
        except RuntimeError as error:
            raise VidgenError(f"adversarial state does not match this discriminator: {error}") from None
        params = list(self.discriminator.parameters())
        state: dict[int, dict[str, torch.Tensor]] = {}
        for name, value in opt.items():
            index, key = name.split(".", 1)
            if not index.isdigit() or int(index) >= len(params):
                raise VidgenError(f"optimizer state for parameter {index!r}, but the discriminator has "
                                  f"{len(params)} parameters")
            state.setdefault(int(index), {})[key] = value
        current = self.optimizer.state_dict()
        current["state"] = state
        self.optimizer.load_state_dict(current)


class AdversarialObjective(nn.Module):
    """Base of the tokenizer objectives (VQ and KL video autoencoders): an optional `AdversarialLoss`, a
    step counter for `GANConfig.start_step`, and their exact-resume state.

    Subclasses call `adversarial_terms(model, video, reconstruction, nll)` once per training call and add
    the returned generator term to their loss: it updates the discriminator first (see `AdversarialLoss`),
    then weights the generator term (VQGAN's adaptive weight at `model.last_layer_weight()` when the model
    has one and the config asks for it), and advances the counter. Outside training mode or under
    `torch.no_grad()` it does nothing, so evaluation calls never touch the state.
    """

    def __init__(self, gan: GANConfig | None = None, discriminator: nn.Module | None = None):
        super().__init__()
        self.adversarial: AdversarialLoss | None = None
        if gan is not None:
            if discriminator is None:
                raise VidgenError("a GAN config was given without a discriminator to train")
            self.adversarial = AdversarialLoss(discriminator, gan)
        elif discriminator is not None:
            raise VidgenError("a discriminator was given but the GAN config is None (GAN off); set the GAN config")
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def adversarial_terms(self, model: nn.Module, video: torch.Tensor, reconstruction: torch.Tensor,
                          nll: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(generator term to add to the loss, logs); zero and {} before `start_step` or without a GAN."""
        logs: dict[str, torch.Tensor] = {}
        term = reconstruction.new_zeros((), dtype=torch.float32)
        if not (self.training and torch.is_grad_enabled()):
            return term, logs
        if self.adversarial is not None and self.adversarial.active(int(self.step)):
            logs.update(self.adversarial.discriminator_step(video, reconstruction.detach()))
            last_layer = model.last_layer_weight() if hasattr(model, "last_layer_weight") else None
            term, gan_logs = self.adversarial.generator_loss(reconstruction, nll, last_layer)
            logs.update(gan_logs)
        self.step += 1
        return term, logs

    # ---- exact resume

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Every tensor of the objective's training state (CPU, contiguous: safetensors-ready)."""
        tensors = {"step": self.step.detach().cpu().clone()}
        if self.adversarial is not None:
            tensors.update(self.adversarial.state_tensors(prefix="adversarial."))
        return tensors

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore what `state_tensors` returned (raises VidgenError when it does not match)."""
        if "step" not in tensors:
            raise VidgenError("objective state has no 'step' entry")
        has_adversarial = any(k.startswith("adversarial.") for k in tensors)
        if has_adversarial != (self.adversarial is not None):
            raise VidgenError("objective state and objective disagree on whether a GAN is used: state "
                              f"{'has' if has_adversarial else 'has no'} discriminator tensors, the objective "
                              f"{'has' if self.adversarial is not None else 'has no'} discriminator")
        unknown = sorted(k for k in tensors if k != "step" and not k.startswith("adversarial."))
        if unknown:
            raise VidgenError(f"unexpected objective state tensors: {unknown[:10]}")
        self.step.copy_(tensors["step"])
        if self.adversarial is not None:
            self.adversarial.load_state_tensors(tensors, prefix="adversarial.")
