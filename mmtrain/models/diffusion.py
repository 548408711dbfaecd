"""Gaussian diffusion over users' interaction rows (DiffRec/DiffMM family): schedule, forward noising, the MLP
denoiser with a sinusoidal timestep embedding, the SNR-weighted reconstruction loss and the reverse sampler.

Equations (docs/models/mdmns.md, DiffMM ``GaussianDiffusion``/``Denoise``), ``T`` = ``steps``::

    v_t   = linspace(s·min, s·max, T)_t            (the *variance*: ᾱ'_t = 1 − v_t)
    β_0   = 1 − ᾱ'_0,  β_t = min(1 − ᾱ'_t/ᾱ'_{t−1}, 0.999);  with beta_fixed β_0 := 1e-4
    ᾱ_t   = Π_{s≤t} (1 − β_s)                      (differs from ᾱ' only through the fixed β_0)
    x_t   = √ᾱ_t x₀ + √(1 − ᾱ_t) ε                 (q_sample)
    x̂₀    = f_θ(dropout(x_t) ‖ W_e emb(t))          (denoiser; emb = [cos(t·ω), sin(t·ω)], ω_j = 10000^(−j/(d/2)))
    L_t   = w_t · mean_j (x₀ − x̂₀)²_j,  w_t = SNR(t−1) − SNR(t) (w_0 = 1),  SNR(t) = ᾱ_t / (1 − ᾱ_t)
    p_sample: x ← x₀ (or q_sample(x₀, s−1) for s sampling steps); for t = T−1 … 0:
              x ← c1_t x̂₀(x, t) + c2_t x  (+ σ_t ε for t > 0 with sampling noise)
              c1_t = β_t √ᾱ_{t−1} / (1 − ᾱ_t),  c2_t = (1 − ᾱ_{t−1}) √(1 − β_t) / (1 − ᾱ_t)

As in the reference, the reverse loop always runs all T steps, whatever the number of sampling steps.

Memory: the schedule is O(T). A denoiser with hidden sizes ``dims`` = [h] has ``(N + d_t)·h + h·N`` weights
(≈ 2·N·h; N = number of items, 13.4M for N = 6,710 and h = 1,000), and a forward pass over a block of B rows
holds ``[B, N]`` inputs/outputs and ``[B, h]`` hidden activations.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

Denoise = Callable[..., torch.Tensor]


def make_betas(
    noise_scale: float, noise_min: float, noise_max: float, steps: int, beta_fixed: bool = True
) -> torch.Tensor:
    """The float64 β schedule: linearly spaced variances ``1 − ᾱ'`` turned into per-step betas."""
    if noise_scale <= 0 or steps < 1:
        raise ValueError(f"a diffusion needs noise_scale > 0 and steps >= 1 (got {noise_scale}, {steps})")
    variance = np.linspace(noise_scale * noise_min, noise_scale * noise_max, steps, dtype=np.float64)
    alpha_bar = 1.0 - variance
    betas = [1.0 - alpha_bar[0]]
    betas += [min(1.0 - alpha_bar[i] / alpha_bar[i - 1], 0.999) for i in range(1, steps)]
    out = torch.tensor(betas, dtype=torch.float64)
    if beta_fixed:
        out[0] = 1e-4
    return out


class GaussianDiffusion:
    """A fixed diffusion schedule (float64 constants on ``device``) and the operations that use it."""

    def __init__(
        self,
        noise_scale: float,
        noise_min: float,
        noise_max: float,
        steps: int,
        beta_fixed: bool = True,
        device: torch.device | str = "cpu",
    ):
        self.steps = int(steps)
        self.betas = make_betas(noise_scale, noise_min, noise_max, steps, beta_fixed).to(device)
        alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(alphas, 0)
        one = torch.ones(1, dtype=torch.float64, device=self.betas.device)
        self.alphas_cumprod_prev = torch.cat([one, self.alphas_cumprod[:-1]])
        self.sqrt_alphas_cumprod = self.alphas_cumprod.sqrt()
        self.sqrt_one_minus_alphas_cumprod = (1.0 - self.alphas_cumprod).sqrt()
        denominator = 1.0 - self.alphas_cumprod
        self.posterior_variance = self.betas * (1.0 - self.alphas_cumprod_prev) / denominator
        first = self.posterior_variance[1:2] if self.steps > 1 else self.posterior_variance[:1]
        self.posterior_log_variance_clipped = torch.cat([first, self.posterior_variance[1:]]).log()
        self.posterior_mean_coef1 = self.betas * self.alphas_cumprod_prev.sqrt() / denominator
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * alphas.sqrt() / denominator

    @staticmethod
    def _rows(values: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``values[t]`` as a float32 column that broadcasts over the rows' items."""
        return values[t.to(values.device)].float().to(t.device).unsqueeze(1)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """``x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε`` row by row (``t`` holds one step per row)."""
        if noise is None:
            noise = torch.randn_like(x0)
        return (
            self._rows(self.sqrt_alphas_cumprod, t) * x0
            + self._rows(self.sqrt_one_minus_alphas_cumprod, t) * noise
        )

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio ``ᾱ_t / (1 − ᾱ_t)`` (float64)."""
        ab = self.alphas_cumprod[t.to(self.alphas_cumprod.device)]
        return ab / (1.0 - ab)

    def loss_weights(self, t: torch.Tensor) -> torch.Tensor:
        """``SNR(t − 1) − SNR(t)``, and 1 at ``t = 0`` (float32, on ``t``'s device)."""
        weight = self.snr((t - 1).clamp(min=0)) - self.snr(t)
        weight = torch.where(t.to(weight.device) == 0, torch.ones_like(weight), weight)
        return weight.float().to(t.device)

    def training_losses(
        self,
        denoiser: Denoise,
        x0: torch.Tensor,
        t: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-row ``w_t · mean((x₀ − x̂₀)²)`` and the prediction ``x̂₀``, for uniform random steps ``t`` and
        Gaussian ``noise`` unless given. The caller adds any conditioning loss on ``x̂₀``."""
        if t is None:
            t = torch.randint(0, self.steps, (x0.shape[0],), generator=generator, device=x0.device)
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x0_hat = denoiser(self.q_sample(x0, t, noise), t)
        mse = (x0 - x0_hat).pow(2).mean(1)
        return self.loss_weights(t) * mse, x0_hat

    @torch.no_grad()
    def p_sample(
        self,
        denoiser: Denoise,
        x0: torch.Tensor,
        sampling_steps: int = 0,
        sampling_noise: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The reverse chain from ``x₀`` (``sampling_steps = 0``) or from ``x₀`` noised to step
        ``sampling_steps − 1``; the denoiser runs without input dropout."""
        n = x0.shape[0]
        if sampling_steps == 0:
            x = x0
        else:
            t = torch.full((n,), sampling_steps - 1, dtype=torch.long, device=x0.device)
            x = self.q_sample(x0, t, torch.randn(x0.shape, generator=generator, device=x0.device))
        for i in reversed(range(self.steps)):
            t = torch.full((n,), i, dtype=torch.long, device=x0.device)
            out = denoiser(x, t, dropout=False)
            x = out.mul_(float(self.posterior_mean_coef1[i])).add_(
                x, alpha=float(self.posterior_mean_coef2[i])
            )
            if sampling_noise and i > 0:
                scale = math.exp(0.5 * float(self.posterior_log_variance_clipped[i]))
                x = x + scale * torch.randn(x.shape, generator=generator, device=x.device)
        return x


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """``[cos(t·ω), sin(t·ω)]`` with ``ω_j = exp(−ln(10000)·j/(dim//2))``, zero-padded to ``dim`` when odd."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t.float().unsqueeze(1) * freqs.unsqueeze(0)
    emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=1)
    return emb


def _init_linear(layer: nn.Linear) -> None:
    """Reference initialisation: weights N(0, 2/(fan_in + fan_out)), biases N(0, 0.001²)."""
    fan_out, fan_in = layer.weight.shape
    nn.init.normal_(layer.weight, 0.0, math.sqrt(2.0 / (fan_in + fan_out)))
    nn.init.normal_(layer.bias, 0.0, 0.001)


class Denoiser(nn.Module):
    """MLP ``N + d_t → dims[-1] → … → dims[0] → … → dims[-1] → N`` (reference ``in_dims``/``out_dims``), tanh
    after every layer but the last.

    The input is the (optionally L2-normalised, dropped-out) noisy row concatenated with a linear map of the
    timestep embedding. ``dims = [1000]`` gives the reference ``N + 10 → 1000 → N``.
    """

    def __init__(
        self, n_items: int, dims: list[int], emb_size: int = 10, norm: bool = False, dropout: float = 0.5
    ):
        super().__init__()
        self.emb_size, self.norm, self.dropout = emb_size, norm, dropout
        self.emb_layer = nn.Linear(emb_size, emb_size)
        in_sizes = [n_items + emb_size, *reversed(dims)]
        out_sizes = [*dims, n_items]
        self.in_layers = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(in_sizes[:-1], in_sizes[1:], strict=True)
        )
        self.out_layers = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(out_sizes[:-1], out_sizes[1:], strict=True)
        )
        for layer in (self.emb_layer, *self.in_layers, *self.out_layers):
            _init_linear(layer)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, dropout: bool = True, rng: torch.Generator | None = None
    ) -> torch.Tensor:
        """``x̂₀`` for noisy rows ``x [B, N]`` at steps ``t [B]``; ``dropout`` applies the input dropout, its mask
        drawn from ``rng``.

        The first layer is applied to ``[x ‖ emb]`` as ``x W_xᵀ + (emb W_eᵀ + b)`` (no ``[B, N + d_t]`` copy),
        and the dropout mask is drawn with ``rand`` (cheaper than ``bernoulli`` on CPU); same distribution."""
        emb = self.emb_layer(timestep_embedding(t, self.emb_size))
        if self.norm:
            x = F.normalize(x, dim=1)
        if dropout and self.dropout > 0:
            keep = torch.rand(x.shape, generator=rng, device=x.device) >= self.dropout
            x = torch.where(keep, x / (1.0 - self.dropout), 0.0) if self.dropout < 1 else torch.zeros_like(x)
        first, n = self.in_layers[0], x.shape[1]
        h = torch.tanh(torch.addmm(F.linear(emb, first.weight[:, n:], first.bias), x, first.weight[:, :n].T))
        for layer in self.in_layers[1:]:
            h = torch.tanh(layer(h))
        last = len(self.out_layers) - 1
        for i, layer in enumerate(self.out_layers):
            h = layer(h)
            if i != last:
                h = torch.tanh(h)
        return h
