"""Tests for vidgen.diffusion: schedules, losses, samplers, guidance, seeded noise.

Reference implementations: diffusers' CogVideoXDDIMScheduler, CogVideoXDPMScheduler and
DPMSolverMultistepScheduler (installed in the venv), and closed-form results for Gaussian data.
"""

import math

import pytest
import torch

from vidgen.diffusion import (
    NoiseSchedule,
    cfg_model_fn,
    dynamic_guidance_scale,
    randn,
    sample_ddim,
    sample_dpmpp_2m,
    sample_timesteps,
    timesteps_for,
    v_prediction_loss,
)
from vidgen.errors import VidgenError

diffusers = pytest.importorskip("diffusers")

SHAPE = (2, 3, 2, 4, 4)  # tiny (B, C, T, H, W)


def cogvideox_diffusers_kwargs(snr_shift_scale=3.0):
    """The scheduler_config.json of THUDM/CogVideoX-2b (snr 3.0) / -5b (snr 1.0)."""
    return {
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "clip_sample": False,
        "set_alpha_to_one": True,
        "steps_offset": 0,
        "prediction_type": "v_prediction",
        "timestep_spacing": "trailing",
        "rescale_betas_zero_snr": True,
        "snr_shift_scale": snr_shift_scale,
    }


def toy_model(x, t):
    """A smooth, x- and t-dependent stand-in for a v-prediction network. t: (B,) int."""
    tt = t.to(x.dtype).view(-1, *([1] * (x.ndim - 1))) / 1000
    return torch.tanh(x) * (0.5 + tt) - 0.3 * x * tt


def broadcast(c, x):
    return c.to(x.dtype).view(-1, *([1] * (x.ndim - 1)))


# ----------------------------------------------------------------------------------------------- schedules
ZSNR = {"rescale_betas_zero_snr": True}


@pytest.mark.parametrize(
    "kwargs, diffusers_kwargs, atol",
    [
        ({"snr_shift_scale": 3.0, **ZSNR}, {"snr_shift_scale": 3.0, **ZSNR}, 1e-12),
        ({"snr_shift_scale": 1.0, **ZSNR}, {"snr_shift_scale": 1.0, **ZSNR}, 1e-12),
        ({"snr_shift_scale": 2.0}, {"snr_shift_scale": 2.0}, 1e-12),
        # diffusers builds "linear" / cosine betas in float32
        (
            {"beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02},
            {"beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02, "snr_shift_scale": 1.0},
            1e-6,
        ),
        ({"beta_schedule": "cosine"}, {"beta_schedule": "squaredcos_cap_v2", "snr_shift_scale": 1.0}, 1e-6),
    ],
)
def test_alphas_cumprod_match_diffusers(kwargs, diffusers_kwargs, atol):
    ours = NoiseSchedule(**kwargs).alphas_cumprod
    ref = diffusers.CogVideoXDDIMScheduler(**diffusers_kwargs).alphas_cumprod.double()
    assert ours.shape == (1000,)
    torch.testing.assert_close(ours, ref, atol=atol, rtol=0)


def test_snr_shift_divides_snr_and_zero_terminal_snr():
    base, shifted = NoiseSchedule(), NoiseSchedule(snr_shift_scale=3.0)
    t = torch.tensor([0, 10, 500, 999])
    torch.testing.assert_close(shifted.snr(t), base.snr(t) / 3.0, rtol=1e-10, atol=0)

    zsnr = NoiseSchedule.cogvideox()
    ab = zsnr.alphas_cumprod
    assert ab[-1].item() == 0.0 and zsnr.snr(999).item() == 0.0
    assert ab[0].item() == pytest.approx(shifted.alphas_cumprod[0].item(), abs=1e-15)  # first value kept
    assert bool((ab[1:] < ab[:-1]).all())  # strictly noisier with t
    alpha, sigma = zsnr.alpha_sigma(999)
    assert alpha.item() == 0.0 and sigma.item() == 1.0
    assert zsnr.alpha_sigma_float(-1) == (1.0, 0.0)
    assert NoiseSchedule(**zsnr.to_dict()).to_dict() == zsnr.to_dict()


def test_forward_helpers_roundtrip_and_match_diffusers():
    g = torch.Generator().manual_seed(0)
    sched = NoiseSchedule(snr_shift_scale=3.0)
    x0, noise = randn(SHAPE, g, dtype=torch.float64), randn(SHAPE, g, dtype=torch.float64)
    t = torch.tensor([3, 870])
    z = sched.add_noise(x0, noise, t)
    v = sched.v_target(x0, noise, t)
    ref = diffusers.CogVideoXDDIMScheduler(snr_shift_scale=3.0)
    torch.testing.assert_close(z, ref.add_noise(x0, noise, t))
    torch.testing.assert_close(v, ref.get_velocity(x0, noise, t))
    torch.testing.assert_close(sched.pred_x0_from_v(z, v, t), x0)
    torch.testing.assert_close(sched.pred_noise_from_v(z, v, t), noise)
    torch.testing.assert_close(sched.v_from_noise(z, noise, t), v)
    # scalar t broadcasts over the batch
    torch.testing.assert_close(
        sched.add_noise(x0, noise, 5), sched.add_noise(x0, noise, torch.tensor([5, 5]))
    )
    # at zero terminal SNR, z is pure noise and x0 is still recoverable from v
    zsnr = NoiseSchedule.cogvideox()
    t_end = torch.tensor([999, 999])
    z_end, v_end = zsnr.add_noise(x0, noise, t_end), zsnr.v_target(x0, noise, t_end)
    torch.testing.assert_close(z_end, noise)
    torch.testing.assert_close(zsnr.pred_x0_from_v(z_end, v_end, t_end), x0)
    with pytest.raises(VidgenError, match="alpha_t = 0"):
        zsnr.v_from_noise(z_end, noise, t_end)


def test_schedule_rejects_bad_values():
    with pytest.raises(VidgenError, match="beta_schedule='squaredcos'"):
        NoiseSchedule(beta_schedule="squaredcos")
    with pytest.raises(VidgenError, match="snr_shift_scale"):
        NoiseSchedule(snr_shift_scale=0.0)
    sched = NoiseSchedule()
    with pytest.raises(VidgenError, match="0..999"):
        sched.alpha_sigma(torch.tensor([0, 1000]))
    with pytest.raises(VidgenError, match="integers"):
        sched.snr(torch.tensor([0.5]))
    with pytest.raises(VidgenError, match="batch of 2"):
        sched.add_noise(torch.zeros(SHAPE), torch.zeros(SHAPE), torch.tensor([1, 2, 3]))


# ---------------------------------------------------------------------------------------------- timesteps
@pytest.mark.parametrize("spacing", ["trailing", "leading", "linspace"])
def test_timesteps_for_matches_diffusers(spacing):
    sched = NoiseSchedule.cogvideox()
    ref = diffusers.CogVideoXDDIMScheduler(**{**cogvideox_diffusers_kwargs(), "timestep_spacing": spacing})
    for n in (1, 3, 7, 10, 16, 25, 50, 64, 100, 250):
        ref.set_timesteps(n)
        ours = timesteps_for(sched, n, spacing)
        assert ours.dtype == torch.int64
        assert ours.tolist() == ref.timesteps.tolist(), (spacing, n)
    assert timesteps_for(sched, 50)[0].item() == 999 and timesteps_for(sched, 50)[-1].item() == 19


def test_timesteps_for_rejects_bad_values():
    sched = NoiseSchedule()
    with pytest.raises(VidgenError, match="num_steps=0"):
        timesteps_for(sched, 0)
    with pytest.raises(VidgenError, match="spacing='uniform'"):
        timesteps_for(sched, 10, "uniform")
    with pytest.raises(VidgenError, match="strictly decreasing"):
        sample_ddim(toy_model, torch.zeros(SHAPE), sched, [10, 20], progress=False)


@pytest.mark.parametrize("sampler", [sample_ddim, sample_dpmpp_2m])
def test_samplers_share_argument_checks(sampler):
    sched = NoiseSchedule()
    x_T = torch.zeros(SHAPE)
    with pytest.raises(VidgenError, match=r"eta=-0\.5: expected eta >= 0 \(0 = "):
        sampler(toy_model, x_T, sched, [20, 10], eta=-0.5, progress=False)
    with pytest.raises(VidgenError, match="eta=nan"):
        sampler(toy_model, x_T, sched, [20, 10], eta=float("nan"), progress=False)
    with pytest.raises(VidgenError, match="x_T must be a float tensor.*torch.int64"):
        sampler(toy_model, torch.zeros(SHAPE, dtype=torch.int64), sched, [20, 10], progress=False)
    with pytest.raises(VidgenError, match="timesteps is empty"):
        sampler(toy_model, x_T, sched, [], progress=False)
    with pytest.raises(VidgenError, match=r"in 0\.\.999"):
        sampler(toy_model, x_T, sched, [1000, 10], progress=False)


# -------------------------------------------------------------------------------------------------- noise
def test_randn_seeded_reproducible_and_dtype_independent():
    a = randn(SHAPE, torch.Generator().manual_seed(123))
    b = randn(SHAPE, torch.Generator().manual_seed(123))
    c = randn(SHAPE, torch.Generator().manual_seed(124))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    d = randn(SHAPE, torch.Generator().manual_seed(123), dtype=torch.float64)
    assert d.dtype == torch.float64 and torch.equal(d, a.double())
    # one generator per sample: sample b does not depend on the batch it is in
    gens = [torch.Generator().manual_seed(s) for s in (7, 8)]
    batch = randn(SHAPE, gens)
    torch.testing.assert_close(batch[1], randn(SHAPE[1:], torch.Generator().manual_seed(8)), rtol=0, atol=0)
    with pytest.raises(VidgenError, match="3 generators"):
        randn(SHAPE, [torch.Generator()] * 3)


# ----------------------------------------------------------------------------------------------- samplers
def exact_point_model(x0_star, sched):
    """The ideal denoiser for a data set made of the single point x0_star: v = (alpha z - x0*) / sigma."""

    def model_fn(z, t):
        alpha, sigma = sched.alpha_sigma(t)
        return (broadcast(alpha, z) * z - x0_star) / broadcast(sigma, z)

    return model_fn


@pytest.mark.parametrize("sampler", [sample_ddim, sample_dpmpp_2m])
@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("sched", [NoiseSchedule.cogvideox(), NoiseSchedule()], ids=["zero_snr", "sd"])
def test_samplers_recover_single_data_point(sampler, eta, sched):
    x0_star = torch.full(SHAPE, 0.7)
    x0_star[:, 1] = -0.4
    x_T = randn(SHAPE, torch.Generator().manual_seed(0))
    out = sampler(
        exact_point_model(x0_star, sched),
        x_T,
        sched,
        timesteps_for(sched, 10),
        eta=eta,
        generator=torch.Generator().manual_seed(1),
        progress=False,
    )
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, x0_star, atol=1e-5, rtol=0)


def gaussian_setup(mu=0.3, s=0.5):
    """Data x0 ~ N(mu, s^2) per element: the exact denoiser and the exact probability-flow-ODE result."""
    sched = NoiseSchedule.cogvideox()

    def model_fn(z, t):
        alpha, sigma = (broadcast(c, z) for c in sched.alpha_sigma(t))
        x0_hat = mu + alpha * s**2 / (alpha**2 * s**2 + sigma**2) * (z - alpha * mu)
        return (alpha * z - x0_hat) / sigma

    def exact(x_T, t_last):
        # The PF-ODE keeps (z_t - alpha mu) / sqrt(alpha^2 s^2 + sigma^2) constant; at t=999 that is x_T.
        a, sg = sched.alpha_sigma_float(t_last)
        return mu + a * s**2 / math.sqrt(a**2 * s**2 + sg**2) * x_T

    return sched, model_fn, exact


def test_dpmpp_2m_is_second_order_and_beats_ddim_on_gaussian_data():
    sched, model_fn, exact = gaussian_setup()
    x_T = randn((4, 64), torch.Generator().manual_seed(0), dtype=torch.float64)
    errors = {}
    for n in (10, 20, 40):
        # A fixed end point (t=99) so that refining the grid converges to one ODE solution. (With "trailing"
        # spacing the last timestep moves with n and the last step's log-SNR jump stays large.)
        ts = torch.linspace(999, 99, n).round().long()
        target = exact(x_T, 99)
        for name, sampler in (("ddim", sample_ddim), ("dpm", sample_dpmpp_2m)):
            errors[name, n] = (sampler(model_fn, x_T, sched, ts, progress=False) - target).abs().max().item()
    for n in (10, 20, 40):
        assert errors["dpm", n] < errors["ddim", n] / 3, errors
    # halving the step: DDIM error ~ /2 (first order), DPM-Solver++(2M) ~ /4 (second order)
    assert 1.8 < errors["ddim", 20] / errors["ddim", 40] < 2.3, errors
    assert errors["dpm", 20] / errors["dpm", 40] > 3.5, errors


@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("num_steps", [10, 50])
def test_ddim_matches_diffusers_cogvideox_ddim_step_by_step(dtype, atol, num_steps):
    sched = NoiseSchedule.cogvideox()
    ref = diffusers.CogVideoXDDIMScheduler(**cogvideox_diffusers_kwargs())
    ref.set_timesteps(num_steps)
    x_T = randn(SHAPE, torch.Generator().manual_seed(0), dtype=dtype)

    expected, x = [], x_T.clone()
    for t in ref.timesteps:
        x = ref.step(toy_model(x, t.expand(x.shape[0])), t, x, return_dict=False)[0]
        expected.append(x)

    got = []
    out = sample_ddim(
        toy_model,
        x_T,
        sched,
        timesteps_for(sched, num_steps),
        callback=lambda d: got.append(d["x"]),
        progress=False,
    )
    assert len(got) == num_steps and out.dtype == dtype
    for i, (a, b) in enumerate(zip(got, expected)):
        assert (a - b).abs().max().item() <= atol, f"step {i}"
    torch.testing.assert_close(out, expected[-1], atol=atol, rtol=0)


def betas_of(sched):
    """Betas reproducing sched.alphas_cumprod (to feed a diffusers scheduler that has no SNR shift)."""
    ab = sched.alphas_cumprod
    return (1 - ab / torch.cat([ab.new_ones(1), ab[:-1]])).tolist()


@pytest.mark.parametrize("eta", [0.5, 1.0])
def test_ddim_with_eta_matches_diffusers_ddim_scheduler(eta):
    """Stochastic DDIM (CogVideoXDDIMScheduler ignores eta): matched config DDIMScheduler(prediction_type=
    "v_prediction", timestep_spacing="trailing", clip_sample=False, set_alpha_to_one=True) with our
    zero-terminal-SNR, SNR-shifted alpha_bar as trained_betas (float32 there), same per-step noise."""
    num_steps = 10
    sched = NoiseSchedule.cogvideox()
    ref = diffusers.DDIMScheduler(
        num_train_timesteps=1000,
        trained_betas=betas_of(sched),
        prediction_type="v_prediction",
        timestep_spacing="trailing",
        clip_sample=False,
        set_alpha_to_one=True,
    )
    ref.set_timesteps(num_steps)
    x_T = randn(SHAPE, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(5)
    noises = [randn(SHAPE, g) for _ in range(num_steps - 1)] + [torch.zeros(SHAPE)]
    expected, x = [], x_T.clone()
    for i, t in enumerate(ref.timesteps):
        x = ref.step(toy_model(x, t.expand(x.shape[0])), t, x, eta=eta, variance_noise=noises[i]).prev_sample
        expected.append(x)
    got = []
    sample_ddim(
        toy_model,
        x_T,
        sched,
        timesteps_for(sched, num_steps),
        eta=eta,
        generator=torch.Generator().manual_seed(5),
        callback=lambda d: got.append(d["x"]),
        progress=False,
    )
    for i, (a, b) in enumerate(zip(got, expected)):
        assert (a - b).abs().max().item() <= 1e-4, f"step {i}"


@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("snr_shift_scale", [1.0, 3.0])
def test_dpmpp_2m_sde_matches_diffusers_cogvideox_dpm_step_by_step(monkeypatch, dtype, atol, snr_shift_scale):
    """eta=1 is CogVideoX's SDE-DPM-Solver++(2M). diffusers draws its noise inside `step` (twice on
    second-order steps, keeping the second), so we feed it the per-step noise our sampler draws."""
    num_steps = 10
    sched = NoiseSchedule.cogvideox(snr_shift_scale)
    ref = diffusers.CogVideoXDPMScheduler(**cogvideox_diffusers_kwargs(snr_shift_scale))
    ref.set_timesteps(num_steps)
    x_T = randn(SHAPE, torch.Generator().manual_seed(0), dtype=dtype)
    g = torch.Generator().manual_seed(5)
    noises = [randn(SHAPE, g, dtype=dtype) for _ in range(num_steps - 1)]  # one per non-final step
    step = {"i": 0}

    def fake_randn_tensor(shape, generator=None, device=None, dtype=None, layout=None):
        return noises[step["i"]] if step["i"] < len(noises) else torch.zeros(shape, dtype=dtype)

    monkeypatch.setattr("diffusers.schedulers.scheduling_dpm_cogvideox.randn_tensor", fake_randn_tensor)
    expected, x, old_x0 = [], x_T.clone(), None
    timesteps = ref.timesteps
    for i, t in enumerate(timesteps):
        step["i"] = i
        v = toy_model(x, t.expand(x.shape[0]))
        x, old_x0 = ref.step(v, old_x0, t, timesteps[i - 1] if i > 0 else None, x, return_dict=False)
        expected.append(x)

    got = []
    sample_dpmpp_2m(
        toy_model,
        x_T,
        sched,
        timesteps_for(sched, num_steps),
        eta=1.0,
        generator=torch.Generator().manual_seed(5),
        callback=lambda d: got.append(d["x"]),
        progress=False,
    )
    for i, (a, b) in enumerate(zip(got, expected)):
        assert (a - b).abs().max().item() <= atol, f"step {i}"


@pytest.mark.parametrize("snr_shift_scale", [1.0, 3.0])
def test_dpmpp_2m_ode_matches_diffusers_dpm_solver_multistep(snr_shift_scale):
    """eta=0 is the ODE DPM-Solver++(2M). Matched config: DPMSolverMultistepScheduler(prediction_type=
    "v_prediction", algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint",
    lower_order_final=True, final_sigmas_type="zero", timestep_spacing="trailing"), with our (SNR-shifted)
    alpha_bar passed as trained_betas. Without zero terminal SNR: diffusers' DPMSolverMultistepScheduler
    replaces alpha_bar_{T-1} = 0 by 2**-24, which changes the first step by design."""
    num_steps = 10
    sched = NoiseSchedule(snr_shift_scale=snr_shift_scale)
    ref = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=1000,
        trained_betas=betas_of(sched),
        prediction_type="v_prediction",
        algorithm_type="dpmsolver++",
        solver_order=2,
        solver_type="midpoint",
        lower_order_final=True,
        final_sigmas_type="zero",
        timestep_spacing="trailing",
    )
    ref.set_timesteps(num_steps)
    assert ref.timesteps.tolist() == timesteps_for(sched, num_steps).tolist()
    x_T = randn(SHAPE, torch.Generator().manual_seed(0))
    expected, x = [], x_T.clone()
    for t in ref.timesteps:
        x = ref.step(toy_model(x, t.expand(x.shape[0])), t, x).prev_sample
        expected.append(x)
    got = []
    sample_dpmpp_2m(
        toy_model,
        x_T,
        sched,
        timesteps_for(sched, num_steps),
        callback=lambda d: got.append(d["x"]),
        progress=False,
    )
    for i, (a, b) in enumerate(zip(got, expected)):
        assert (a - b).abs().max().item() <= 1e-4, f"step {i}"


@pytest.mark.parametrize("sampler", [sample_ddim, sample_dpmpp_2m])
def test_stochastic_samplers_are_seeded(sampler):
    sched = NoiseSchedule.cogvideox()
    x_T = randn(SHAPE, torch.Generator().manual_seed(0))
    ts = timesteps_for(sched, 5)

    def run(seed):
        return sampler(
            toy_model, x_T, sched, ts, eta=1.0, generator=torch.Generator().manual_seed(seed), progress=False
        )

    a, b, c = run(1), run(1), run(2)
    assert torch.equal(a, b)
    assert (a - c).abs().max().item() > 1e-3
    # deterministic samplers ignore the generator
    d1 = sampler(toy_model, x_T, sched, ts, generator=torch.Generator().manual_seed(1), progress=False)
    d2 = sampler(toy_model, x_T, sched, ts, generator=torch.Generator().manual_seed(2), progress=False)
    assert torch.equal(d1, d2)


def test_sampler_passes_int_timesteps_and_casts_low_precision_outputs():
    sched = NoiseSchedule.cogvideox()
    seen = []

    def bf16_model(x, t):
        seen.append((t.dtype, tuple(t.shape), int(t[0])))
        return toy_model(x, t).to(torch.bfloat16)

    x_T = randn(SHAPE, torch.Generator().manual_seed(0))
    out = sample_dpmpp_2m(bf16_model, x_T, sched, timesteps_for(sched, 4), progress=False)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert seen == [(torch.int64, (2,), t) for t in (999, 749, 499, 249)]


# ------------------------------------------------------------------------------------------------- losses
def test_loss_zero_for_perfect_model_and_equals_sat_x0_weighted_form():
    sched = NoiseSchedule.cogvideox()
    g = torch.Generator().manual_seed(0)
    x0 = randn(SHAPE, g)
    noise = randn(SHAPE, g)
    t = torch.tensor([999, 3])  # both ends: zero SNR, and a tiny sigma where 1/sigma^2 is large

    def oracle(z, tt, **cond):
        return sched.v_target(x0, noise, tt)

    assert v_prediction_loss(oracle, x0, None, sched, t=t, noise=noise)["loss"].item() < 1e-10

    out = v_prediction_loss(toy_model, x0, {}, sched, t=t, noise=noise)
    # SAT: x0_hat = alpha z - sigma v_hat, loss = mean(1 / (1 - alpha_bar) * (x0_hat - x0)^2)
    x0d, nd = x0.double(), noise.double()
    alpha, sigma = (broadcast(c, x0d) for c in sched.alpha_sigma(t))
    z = alpha * x0d + sigma * nd
    x0_hat = alpha * z - sigma * toy_model(z, t)
    sat = ((x0_hat - x0d) ** 2 / sigma**2).flatten(1).mean(1)
    torch.testing.assert_close(out["loss_per_sample"].double(), sat, rtol=1e-4, atol=0)
    assert out["loss"].item() == pytest.approx(sat.mean().item(), rel=1e-4)
    assert out["t"].tolist() == [999, 3]


def test_loss_is_seeded_and_passes_conditioning():
    sched = NoiseSchedule.cogvideox()
    x0 = randn(SHAPE, torch.Generator().manual_seed(0))
    received = {}

    def model(z, t, text=None):
        received["text"], received["t"] = text, t
        return toy_model(z, t) + text.mean()

    def run(seed):
        return v_prediction_loss(
            model, x0, {"text": torch.ones(2, 3)}, sched, torch.Generator().manual_seed(seed)
        )

    a, b, c = run(1), run(1), run(2)
    assert torch.equal(a["loss"], b["loss"]) and torch.equal(a["t"], b["t"])
    assert a["loss"].item() != c["loss"].item()
    assert received["text"].shape == (2, 3) and received["t"].dtype == torch.int64
    assert a["t"].min() >= 0 and a["t"].max() <= 999


def test_loss_mask_excludes_padded_frames():
    sched = NoiseSchedule()
    g = torch.Generator().manual_seed(0)
    x0, noise = randn(SHAPE, g), randn(SHAPE, g)
    t = torch.tensor([100, 600])

    def wrong_on_last_frame(z, tt):
        v = sched.v_target(x0, noise, tt).clone()
        v[:, :, -1] += 10.0  # the model is only wrong on the (padded) last frame
        return v

    mask = torch.ones(2, 1, SHAPE[2], 1, 1, dtype=torch.bool)
    assert v_prediction_loss(wrong_on_last_frame, x0, None, sched, t=t, noise=noise)["loss"].item() > 1.0
    mask[:, :, -1] = False
    assert (
        v_prediction_loss(wrong_on_last_frame, x0, None, sched, t=t, noise=noise, mask=mask)["loss"].item()
        < 1e-10
    )
    # partial mask: the per-sample mean is over counted elements only
    mask = torch.ones(2, 1, SHAPE[2], 1, 1, dtype=torch.bool)
    mask[0, :, 0] = False
    out = v_prediction_loss(wrong_on_last_frame, x0, None, sched, t=t, noise=noise, mask=mask)
    assert out["loss_per_sample"][0].item() == pytest.approx(100.0, rel=1e-5)  # only the wrong frame counts
    assert out["loss_per_sample"][1].item() == pytest.approx(50.0, rel=1e-5)
    with pytest.raises(VidgenError, match="mask of shape"):
        v_prediction_loss(wrong_on_last_frame, x0, None, sched, t=t, noise=noise, mask=torch.ones(3, 1))


def test_timestep_sampling_modes():
    g = torch.Generator().manual_seed(0)
    t = sample_timesteps(4096, 1000, g)
    assert t.min() >= 0 and t.max() <= 999 and t.float().std() > 250
    for rank in range(4):  # CogVideoX explicit uniform sampling: rank k of 4 draws from [250k, 250(k+1))
        t = sample_timesteps(64, 1000, g, "stratified_rank", rank=rank, world_size=4)
        assert t.min() >= 250 * rank and t.max() < 250 * (rank + 1)
        assert len(set(t.tolist())) > 20
    t = sample_timesteps(5, 1000, g, "stratified_slot", rank=1, world_size=2)  # strata 5..9 of 10
    assert [int(x) // 100 for x in t] == [5, 6, 7, 8, 9]
    assert sample_timesteps(8, 1000, g, "stratified_rank").tolist() != []  # no process group: rank 0 of 1
    with pytest.raises(VidgenError, match="rank=4"):
        sample_timesteps(2, 1000, g, "stratified_rank", rank=4, world_size=4)
    with pytest.raises(VidgenError, match="'bogus'"):
        sample_timesteps(2, 1000, g, "bogus")


# ----------------------------------------------------------------------------------------------- guidance
class CountingModel:
    """v = 0.1 x + emb.sum(-1) (per sample); records the batch size of each call."""

    def __init__(self):
        self.batch_sizes = []

    def __call__(self, x, t, emb, flag=None):
        self.batch_sizes.append(x.shape[0])
        assert x.shape[0] == t.shape[0] == emb.shape[0]
        return 0.1 * x + emb.sum(-1).view(-1, *([1] * (x.ndim - 1)))


def test_cfg_single_batched_forward_and_formula():
    g = torch.Generator().manual_seed(0)
    x, t = randn(SHAPE, g), torch.tensor([500, 500])
    cond, uncond = {"emb": randn((2, 8), g), "flag": True}, {"emb": randn((2, 8), g), "flag": True}
    model = CountingModel()
    guided = cfg_model_fn(model, cond, uncond, guidance_scale=6.0)(x, t)
    assert model.batch_sizes == [4]  # one forward of batch 2B
    v_c, v_u = model(x, t, **cond), model(x, t, **uncond)
    torch.testing.assert_close(guided, v_u + 6.0 * (v_c - v_u))

    model = CountingModel()
    out = cfg_model_fn(model, cond, None, guidance_scale=1.0)(x, t)
    assert model.batch_sizes == [2]  # scale 1: conditional pass only
    torch.testing.assert_close(out, v_c)

    # one negative-prompt embedding for the whole batch
    model = CountingModel()
    neg = {"emb": uncond["emb"][:1], "flag": True}
    out = cfg_model_fn(model, cond, neg, guidance_scale=3.0)(x, t)
    v_n = model(x, t, emb=neg["emb"].expand(2, 8))
    torch.testing.assert_close(out, v_n + 3.0 * (v_c - v_n))


def test_cfg_errors():
    model = CountingModel()
    emb = torch.zeros(2, 8)
    with pytest.raises(VidgenError, match="guidance_scale=-1"):
        cfg_model_fn(model, {"emb": emb}, {"emb": emb}, -1.0)
    with pytest.raises(VidgenError, match="same model inputs"):
        cfg_model_fn(model, {"emb": emb}, {"other": emb}, 5.0)
    with pytest.raises(VidgenError, match="pad prompt embeddings"):
        cfg_model_fn(model, {"emb": emb}, {"emb": torch.zeros(2, 9)}, 5.0)
    with pytest.raises(VidgenError, match="num_steps"):
        cfg_model_fn(model, {"emb": emb}, {"emb": emb}, 5.0, dynamic=True)
    with pytest.raises(VidgenError, match="needs uncond"):
        cfg_model_fn(model, {"emb": emb}, None, 5.0)


class WeakModel(CountingModel):
    """A different model: v = 0.3 x - emb.mean(-1)."""

    def __call__(self, x, t, emb, flag=None):
        self.batch_sizes.append(x.shape[0])
        return 0.3 * x - emb.mean(-1).view(-1, *([1] * (x.ndim - 1)))


def test_autoguidance_formula_and_calls():
    """v = v_u + w (v_c - v_u) + a (v_c - v_weak), the weak model called once on the conditional inputs."""
    g = torch.Generator().manual_seed(1)
    x, t = randn(SHAPE, g), torch.tensor([300, 300])
    cond, uncond = {"emb": randn((2, 8), g)}, {"emb": randn((2, 8), g)}
    model, weak = CountingModel(), WeakModel()
    out = cfg_model_fn(model, cond, uncond, 4.0, weak_model=weak, autoguidance_scale=2.5)(x, t)
    assert model.batch_sizes == [4] and weak.batch_sizes == [2]
    v_c, v_u, v_w = model(x, t, **cond), model(x, t, **uncond), weak(x, t, **cond)
    torch.testing.assert_close(out, v_u + 4.0 * (v_c - v_u) + 2.5 * (v_c - v_w))

    # guidance 1: Karras et al.'s pure autoguidance D_weak + (1 + a)(D - D_weak)
    model, weak = CountingModel(), WeakModel()
    out = cfg_model_fn(model, cond, None, 1.0, weak_model=weak, autoguidance_scale=2.0)(x, t)
    assert model.batch_sizes == [2] and weak.batch_sizes == [2]
    torch.testing.assert_close(out, v_w + 3.0 * (v_c - v_w))

    # scale 0: plain CFG and the weak model is never run
    model, weak = CountingModel(), WeakModel()
    out = cfg_model_fn(model, cond, uncond, 4.0, weak_model=weak, autoguidance_scale=0.0)(x, t)
    assert weak.batch_sizes == []
    torch.testing.assert_close(out, v_u + 4.0 * (v_c - v_u))


def test_autoguidance_errors():
    model, emb = CountingModel(), torch.zeros(2, 8)
    with pytest.raises(VidgenError, match="needs a weak model"):
        cfg_model_fn(model, {"emb": emb}, {"emb": emb}, 5.0, autoguidance_scale=1.0)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(VidgenError, match="autoguidance_scale="):
            cfg_model_fn(model, {"emb": emb}, {"emb": emb}, 5.0, weak_model=WeakModel(), autoguidance_scale=bad)


def test_dynamic_cfg_matches_cogvideox_pipeline_formula():
    """A model whose cond output is 1 and uncond output 0 returns exactly the guidance scale."""
    g_scale, n = 6.0, 50

    def model(x, t, emb):
        return torch.ones_like(x) * emb.view(-1, *([1] * (x.ndim - 1)))

    x = torch.zeros(4, 2, 3)
    t = torch.tensor([999, 979, 500, 19])
    ones, zeros = torch.ones(4), torch.zeros(4)
    out = cfg_model_fn(model, {"emb": ones}, {"emb": zeros}, g_scale, dynamic=True, num_steps=n)(x, t)
    # diffusers CogVideoXPipeline(use_dynamic_cfg=True), with t the scheduler timestep:
    expected = [1 + g_scale * (1 - math.cos(math.pi * ((n - tt) / n) ** 5.0)) / 2 for tt in t.tolist()]
    torch.testing.assert_close(
        out[:, 0, 0].double(), torch.tensor(expected, dtype=torch.float64), atol=1e-5, rtol=0
    )

    # the smooth variant: 1 + g at the noisiest step, decreasing to ~1 at the end
    ts = timesteps_for(NoiseSchedule(), n)
    w = dynamic_guidance_scale(g_scale, ts, "cosine")
    assert w[0].item() == pytest.approx(1 + g_scale) and w[-1].item() < 1.001
    assert bool((w[1:] <= w[:-1]).all())
    # equals diffusers PR #13172's loop-index form for trailing spacing
    by_index = [1 + g_scale * (1 - math.cos(math.pi * ((n - i) / n) ** 5.0)) / 2 for i in range(n)]
    torch.testing.assert_close(w, torch.tensor(by_index, dtype=torch.float64))


def test_cfg_guided_sampling_end_to_end_under_bf16_autocast():
    """Guided DDIM through a bf16 model under CPU autocast: float32 result, finite, seeded."""
    sched = NoiseSchedule.cogvideox()
    lin = torch.nn.Linear(SHAPE[1] + 8, SHAPE[1])

    def model(x, t, emb):
        feats = torch.cat(
            [x.movedim(1, -1), emb.view(x.shape[0], 1, 1, 1, 8).expand(*x.movedim(1, -1).shape[:-1], 8)], -1
        )
        return lin(feats).movedim(-1, 1)

    g = torch.Generator().manual_seed(0)
    cond, uncond = {"emb": randn((2, 8), g)}, {"emb": torch.zeros(2, 8)}
    fn = cfg_model_fn(model, cond, uncond, 5.0, dynamic="cogvideox", num_steps=4)
    x_T = randn(SHAPE, torch.Generator().manual_seed(1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a = sample_ddim(fn, x_T, sched, timesteps_for(sched, 4), progress=False)
        b = sample_ddim(fn, x_T, sched, timesteps_for(sched, 4), progress=False)
    assert a.dtype == torch.float32 and torch.isfinite(a).all() and torch.equal(a, b)
