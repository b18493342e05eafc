"""Time courses of a simulated resting-state scan: network activity and what else moves the signal.

Every function draws a fixed number of random numbers from the generator it is given,
whatever its parameters, so a scan's other draws do not shift when a parameter changes.

* :func:`network_timecourse` — a network's BOLD time course: neural activity (a mix of
  slow on/off blocks and fast random events, the mix set by ``slow_share``) convolved
  with the canonical (SPM) double-gamma haemodynamic response from nilearn and sampled
  once per TR.
* :func:`physio_regressors` — cardiac (~1.1 Hz) and respiratory (~0.27 Hz) cycles, far
  above the 0.25 Hz Nyquist frequency of TR = 2 s, so they alias onto low frequencies;
  each slice samples them at its own time within the TR (interleaved acquisition), which
  gives the slice-dependent aliasing real data show (RETROICOR's second-order model of the
  waveforms).
* :func:`slow_global` — the slow (0.01-0.05 Hz) global fluctuation of breathing depth and
  CO2 that grey matter follows.
* :func:`drift_basis` — scanner drift: a linear and a quadratic trend.
* :func:`rigid_motion` — head motion: six rigid parameters, a slow random walk with a
  small drift and a few sudden jerks; the volumes of the jerks (spin-history spikes).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

#: Time steps per TR at which neural activity is simulated and convolved.
OVERSAMPLING: int = 16
#: Seconds simulated before the first volume, so the response has settled.
PREROLL_S: float = 32.0
#: Mean duration (s) of one on or off block of slow activity.
BLOCK_DWELL_S: float = 20.0
#: Rate (1/s) of fast neural events.
EVENT_RATE_HZ: float = 0.3


@functools.lru_cache(maxsize=8)
def _hrf(tr_s: float, oversampling: int) -> np.ndarray:
    """SPM's canonical double-gamma HRF sampled every ``tr_s / oversampling`` s (unit sum)."""
    from nilearn.glm.first_level.hemodynamic_models import spm_hrf

    h = np.asarray(spm_hrf(float(tr_s), oversampling=int(oversampling), time_length=32.0), dtype=np.float64)
    h.setflags(write=False)
    return h


def _z(x: np.ndarray) -> np.ndarray:
    sd = float(x.std())
    return (x - x.mean()) / sd if sd > 0 else x - x.mean()


def network_timecourse(rng: np.random.Generator, slow_share: float, n_volumes: int, tr_s: float) -> np.ndarray:
    """A network's BOLD time course, z-scored, one value per volume.

    Two kinds of neural activity are each convolved with the canonical HRF, sampled at
    the start of each TR and z-scored: ``blocks``, a random on/off (telegraph) process
    with exponential dwell times of mean :data:`BLOCK_DWELL_S`, and ``events``, brief
    events at :data:`EVENT_RATE_HZ` with exponential amplitudes. The time course is
    ``sqrt(s) * blocks + sqrt(1 - s) * events`` (z-scored), so ``s = slow_share`` is the
    share of the BOLD variance that is slow: it moves power between < 0.02 Hz (blocks)
    and the HRF's band around 0.03-0.1 Hz (events). The surgery effect shifts it.
    """
    dt = tr_s / OVERSAMPLING
    n_fine = int(math.ceil((n_volumes * tr_s + PREROLL_S) / dt))
    total_s = n_fine * dt
    # Telegraph: a fixed number of dwell draws, enough to cover the run many times over.
    n_dwell = int(math.ceil(total_s / BLOCK_DWELL_S * 4)) + 8
    edges = np.cumsum(rng.exponential(BLOCK_DWELL_S, size=n_dwell)) - rng.uniform(0.0, BLOCK_DWELL_S)
    t = np.arange(n_fine) * dt
    blocks = (np.searchsorted(edges, t) % 2).astype(np.float64)
    hit = rng.random(n_fine) < EVENT_RATE_HZ * dt
    events = np.where(hit, rng.exponential(1.0, size=n_fine), 0.0)
    s = float(np.clip(slow_share, 0.0, 1.0))
    h = _hrf(tr_s, OVERSAMPLING)
    start = int(round(PREROLL_S / dt))
    take = slice(start, start + n_volumes * OVERSAMPLING, OVERSAMPLING)
    slow = _z(np.convolve(blocks, h)[:n_fine][take][:n_volumes])
    fast = _z(np.convolve(events, h)[:n_fine][take][:n_volumes])
    return _z(math.sqrt(s) * slow + math.sqrt(1.0 - s) * fast)


def slice_times(n_slices: int, tr_s: float) -> np.ndarray:
    """Acquisition time (s within the TR) of each slice: interleaved, even slices first."""
    order = list(range(0, n_slices, 2)) + list(range(1, n_slices, 2))
    times = np.empty(n_slices)
    times[order] = np.arange(n_slices) * tr_s / n_slices
    return times


def _smooth_noise(rng: np.random.Generator, n: int, width: int) -> np.ndarray:
    """Gaussian noise low-passed by a moving average of ``width`` samples, unit sd."""
    x = rng.normal(size=n + width)
    y = np.convolve(x, np.ones(width) / width, mode="valid")[:n]
    return _z(y)


def physio_regressors(
    rng: np.random.Generator, n_volumes: int, tr_s: float, n_slices: int
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Cardiac and respiratory signals as each slice samples them.

    Returns
    -------
    cardiac, respiratory : np.ndarray
        (n_slices, n_volumes), unit-scale waveforms (RETROICOR second order:
        ``cos(phi) + a2 cos(2 phi + theta)``) at each slice's acquisition time.
    params : dict
        Mean cardiac and respiratory frequencies (Hz).
    """
    dt = 0.05
    n = int(math.ceil((n_volumes * tr_s + tr_s) / dt)) + 2
    f_card = float(rng.uniform(0.9, 1.3))
    f_resp = float(rng.uniform(0.2, 0.33))
    # Heart and breathing rates wander by a few per cent over tens of seconds.
    card_rate = f_card * (1.0 + 0.04 * _smooth_noise(rng, n, int(20 / dt)))
    resp_rate = f_resp * (1.0 + 0.08 * _smooth_noise(rng, n, int(30 / dt)))
    resp_depth = 1.0 + 0.3 * _smooth_noise(rng, n, int(15 / dt))
    phi_c = 2 * math.pi * np.cumsum(card_rate) * dt + rng.uniform(0, 2 * math.pi)
    phi_r = 2 * math.pi * np.cumsum(resp_rate) * dt + rng.uniform(0, 2 * math.pi)
    theta_c, theta_r = rng.uniform(0, 2 * math.pi, size=2)
    card = np.cos(phi_c) + 0.5 * np.cos(2 * phi_c + theta_c)
    resp = resp_depth * (np.cos(phi_r) + 0.3 * np.cos(2 * phi_r + theta_r))
    t_fine = np.arange(n) * dt
    when = np.arange(n_volumes)[None, :] * tr_s + slice_times(n_slices, tr_s)[:, None]
    cardiac = np.interp(when, t_fine, card)
    respiratory = np.interp(when, t_fine, resp)
    return cardiac, respiratory, {"cardiac_hz": round(f_card, 4), "respiratory_hz": round(f_resp, 4)}


def slow_global(rng: np.random.Generator, n_volumes: int, tr_s: float) -> np.ndarray:
    """Band-limited (0.01-0.05 Hz) global fluctuation, unit sd, one value per volume."""
    n = 2 * n_volumes
    spec = np.fft.rfft(rng.normal(size=n))
    f = np.fft.rfftfreq(n, d=tr_s)
    spec[(f < 0.01) | (f > 0.05)] = 0.0
    return _z(np.fft.irfft(spec, n=n)[:n_volumes])


def drift_basis(n_volumes: int) -> np.ndarray:
    """(2, n_volumes): a linear and a quadratic (Legendre) trend over the run, each in [-1, 1]."""
    u = np.linspace(-1.0, 1.0, n_volumes)
    return np.stack([u, 1.5 * u**2 - 0.5])


def rigid_motion(rng: np.random.Generator, n_volumes: int, tr_s: float) -> tuple[np.ndarray, list[int]]:
    """Head motion over the run: six rigid parameters per volume, and the jerk volumes.

    Translations (mm) along x, y, z and rotations (radians) about x, y, z, relative to the
    first volume: a random walk (0.02 mm and 0.02 deg a volume), a slow linear drift (up to
    0.3 mm / 0.3 deg over the run) and 0-3 sudden jerks of a few tenths of a mm lasting one
    or two volumes, after which the head settles near (not at) where it was, as in a
    cooperative adult at rest. Magnitudes are typical of the "low motion" scans that
    survive quality control (mean framewise displacement ~0.1-0.2 mm).

    Returns
    -------
    params : np.ndarray
        (n_volumes, 6): tx, ty, tz (mm), rx, ry, rz (rad).
    jerks : list of int
        Volumes at which a jerk starts (spin-history spikes are put there).
    """
    deg = math.pi / 180.0
    scale = np.array([1.0, 1.0, 1.0, deg, deg, deg])
    walk = np.cumsum(rng.normal(0.0, 0.02, size=(n_volumes, 6)), axis=0)
    ramp = np.linspace(0.0, 1.0, n_volumes)[:, None] * rng.uniform(-0.3, 0.3, size=6)
    n_jerks = int(min(rng.poisson(1.5), 3))
    when = rng.choice(np.arange(5, max(n_volumes - 3, 6)), size=3, replace=False)[:n_jerks]
    size = rng.normal(0.0, 0.35, size=(3, 6))
    length = rng.integers(1, 3, size=3)
    settle = rng.normal(0.0, 0.1, size=(3, 6))
    params = walk + ramp
    jerks: list[int] = []
    for j in range(n_jerks):
        t0 = int(when[j])
        params[t0 : t0 + int(length[j])] += size[j]
        params[t0 + int(length[j]) :] += settle[j]
        jerks.append(t0)
    params -= params[0]
    return params * scale, sorted(jerks)


def framewise_displacement(params: np.ndarray, head_radius_mm: float = 50.0) -> np.ndarray:
    """Power et al. 2012 framewise displacement (mm) per volume (0 for the first)."""
    d = np.abs(np.diff(params, axis=0))
    fd = d[:, :3].sum(axis=1) + head_radius_mm * d[:, 3:].sum(axis=1)
    return np.concatenate([[0.0], fd])
