"""Diffusion maths shared by every diffusion model in vidgen: noise schedules, the v-prediction loss,
samplers (DDIM, DPM-Solver++(2M) and its SDE variant) and classifier-free guidance. See each module's docstring."""

from vidgen.diffusion.guidance import cfg_model_fn, dynamic_guidance_scale
from vidgen.diffusion.losses import sample_timesteps, v_prediction_loss
from vidgen.diffusion.rng import rand, randint, randn
from vidgen.diffusion.samplers import SAMPLERS, sample_ddim, sample_dpmpp_2m, timesteps_for
from vidgen.diffusion.schedules import NoiseSchedule

__all__ = [
    "SAMPLERS",
    "NoiseSchedule",
    "cfg_model_fn",
    "dynamic_guidance_scale",
    "rand",
    "randint",
    "randn",
    "sample_ddim",
    "sample_dpmpp_2m",
    "sample_timesteps",
    "timesteps_for",
    "v_prediction_loss",
]
