"""What the pre/post model sees of a (scan, network) pair: tensors and summary features.

Input: ``network_inputs(comps, assignment)`` (``core.tasks.networks.matching``) gives, per
network, the matched ICA map resampled onto ``core.anatomy.atlas.model_grid()`` (sign applied)
and its z-scored time course. This module turns that into

* **tensors for the stage-1 encoders** (``core.models.network_encoder``): the map scaled
  to unit standard deviation over the brain (:func:`normalise_map`) and the time course
  resampled to TR 2 s (:func:`resample_timecourse`), then cut into fixed-length windows
  (:func:`timecourse_windows`);
* **conventional summary features** (:func:`summary_features`), documented one by one in
  :data:`MAP_FEATURES` and :data:`TC_FEATURES`: the inputs of the baseline classifier and
  the "original ICA features" that stage 2 adds to the embeddings;
* **a flat table of rows** (:class:`NetworkRows`), one row per (scan, network), with the
  labels and patient ids that cross-validation splits on.

Why the map is rescaled: ICA cannot tell how a component's size splits between its map
and its time course (any factor can move from one to the other), and MELODIC, CanICA and
our own ICA scale maps differently. Dividing by the map's standard deviation over the
brain removes that arbitrary factor while keeping 0 = "no loading" (the map is not
centred), so thresholds such as z > 2 mean the same for every source.

Why the time course is resampled: the convolution kernels of the 1D encoder and the
spectral bands below are defined in seconds; a scan at TR 0.8 s must look like one at
TR 2 s. The band-limited (FFT) resampling removes what lies above the new Nyquist
frequency (0.25 Hz) instead of aliasing it.

Why no variance / amplitude feature of the time course: ``network_inputs`` z-scores the
time course (and the ICA scale is arbitrary anyway), so its variance is always 1; ALFF
here is therefore the *share* of amplitude in the resting-state band, not an absolute one.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import signal, stats

from ...errors import NeuroreviewError
from ...models.network_encoder import MODEL_TR_S, TC_LENGTH

__all__ = [
    "FEATURE_NAMES",
    "MAP_FEATURES",
    "MODEL_TR_S",
    "TC_FEATURES",
    "TC_LENGTH",
    "GridContext",
    "NetworkInputError",
    "NetworkRows",
    "ScanInputs",
    "build_rows",
    "map_features",
    "model_context",
    "normalise_map",
    "resample_timecourse",
    "summary_features",
    "timecourse_features",
    "timecourse_windows",
]


class NetworkInputError(NeuroreviewError):
    """The network inputs of a scan are missing a network, have the wrong grid or are empty."""


#: Map features: name -> what it measures (computed on the map after :func:`normalise_map`).
MAP_FEATURES: dict[str, str] = {
    "map_peak": "99.5th percentile of the map over the brain: how strongly the core loads",
    "map_mean_in": "mean map value inside the network's template (template >= 0.1 of its max)",
    "map_mean_out": "mean map value in the brain outside the template (< 0.02): spill-over",
    "map_extent": "share of brain voxels with map > 2: spatial extent of the network",
    "map_dice": "Dice overlap of (map > 2) with the template region: network integrity",
    "map_corr": "Pearson correlation of the map with the template over the brain",
    "map_laterality": "(L - R) / (L + R) of the positive loading above 2, by world x (RAS)",
    "map_skew": "skewness of the map over the brain (ICA components have heavy positive tails)",
}
#: Time-course features: name -> what it measures (on the series resampled to TR 2 s).
TC_FEATURES: dict[str, str] = {
    "tc_alff": "mean spectral amplitude in 0.01-0.08 Hz (of a z-scored series: a relative ALFF)",
    "tc_falff": "amplitude in 0.01-0.08 Hz over the amplitude in 0-0.25 Hz (fALFF)",
    "tc_slow5": "share of power in slow-5 (0.01-0.027 Hz)",
    "tc_slow4": "share of power in slow-4 (0.027-0.073 Hz)",
    "tc_slow3": "share of power in slow-3 (0.073-0.198 Hz)",
    "tc_peak_hz": "frequency of the highest spectral power (Welch)",
    "tc_ac1": "lag-1 autocorrelation at TR 2 s: smoothness of the series",
}
FEATURE_NAMES: tuple[str, ...] = (*MAP_FEATURES, *TC_FEATURES)

_TEMPLATE_IN, _TEMPLATE_OUT, _Z = 0.1, 0.02, 2.0


@dataclass(frozen=True)
class GridContext:
    """The grid the maps are on, with the network templates and the brain mask there.

    Attributes
    ----------
    affine : numpy.ndarray
        (4, 4) voxel -> world (RAS mm).
    shape : tuple of int
        Grid shape; every map must have it.
    templates : numpy.ndarray
        (n_networks, *shape) template maps, max 1 (``core.anatomy.atlas.template_maps``).
    mask : numpy.ndarray
        Boolean brain mask (grey-matter probability above 1 %, which at 6 mm covers the
        cortex and deep grey matter with their partial-volume rim).
    networks : tuple of str
        Network names in template order.
    """

    affine: np.ndarray
    shape: tuple[int, int, int]
    templates: np.ndarray
    mask: np.ndarray
    networks: tuple[str, ...]

    @classmethod
    def for_grid(cls, affine: np.ndarray, shape: tuple[int, int, int]) -> GridContext:
        """Templates and brain mask of ``core.anatomy.atlas`` on any grid (tests use tiny ones)."""
        from ...anatomy import atlas

        shape = tuple(int(n) for n in shape)
        return cls(np.asarray(affine, float), shape, atlas.template_maps(affine, shape),
                   atlas.grey_matter_probability(affine, shape) > 0.01, tuple(atlas.NETWORKS))

    def network_index(self, name: str) -> int:
        """Index of a network name (its template row and the encoder's network id)."""
        try:
            return self.networks.index(name)
        except ValueError:
            raise NetworkInputError(
                f"Unknown network {name!r}; expected one of {', '.join(self.networks)}."
            ) from None


@functools.lru_cache(maxsize=1)
def model_context() -> GridContext:
    """The :class:`GridContext` of ``core.anatomy.atlas.model_grid()`` (computed once)."""
    from ...anatomy import atlas

    return GridContext.for_grid(*atlas.model_grid())


def normalise_map(network_map: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The map divided by its standard deviation over ``mask``, 0 outside it (float32).

    Not centred, so 0 keeps meaning "no loading"; see the module docstring. A map that is
    constant over the mask (nothing to learn from) comes back as zeros.
    """
    m = np.nan_to_num(np.asarray(network_map, dtype=np.float64))
    values = m[mask]
    scale = float(values.std()) if values.size else 0.0
    out = np.zeros(m.shape, dtype=np.float32)
    if scale > 1e-12:
        out[mask] = (values / scale).astype(np.float32)
    return out


def resample_timecourse(tc: np.ndarray, tr_s: float, target_tr_s: float = MODEL_TR_S) -> np.ndarray:
    """Band-limited (FFT) resampling from ``tr_s`` to ``target_tr_s``, re-z-scored (float32).

    The series is linearly detrended before the FFT so that the implicit periodic
    extension has no jump at the ends.
    """
    x = np.nan_to_num(np.asarray(tc, dtype=np.float64).reshape(-1))
    if x.size < 4:
        raise NetworkInputError(f"A time course of {x.size} samples is too short to use.")
    if not tr_s or tr_s <= 0:
        raise NetworkInputError(f"The repetition time {tr_s!r} s is not a positive number.")
    x = signal.detrend(x)
    n_new = max(4, int(round(x.size * float(tr_s) / target_tr_s)))
    if n_new != x.size:
        x = signal.resample(x, n_new)
    sd = x.std()
    return ((x - x.mean()) / sd if sd > 1e-12 else x * 0.0).astype(np.float32)


def timecourse_windows(tc: np.ndarray, length: int = TC_LENGTH, n: int = 1, rng: np.random.Generator | None = None
                       ) -> np.ndarray:
    """``n`` windows of ``length`` samples, (n, length) float32.

    With ``rng``: random starts (training augmentation); without: evenly spaced starts
    covering the series (inference averages their embeddings). A series shorter than
    ``length`` is extended by mirroring its ends (no spectral jump, unlike zero padding).
    """
    x = np.asarray(tc, dtype=np.float32).reshape(-1)
    if x.size < length:
        total = length - x.size
        x = np.pad(x, (total // 2, total - total // 2), mode="symmetric")
    span = x.size - length
    if rng is not None:
        starts = rng.integers(0, span + 1, size=n)
    else:
        starts = np.round(np.linspace(0, span, n)).astype(int) if n > 1 else np.array([span // 2])
    return np.stack([x[s:s + length] for s in starts])


def map_features(map_z: np.ndarray, template: np.ndarray, context: GridContext) -> np.ndarray:
    """The :data:`MAP_FEATURES` of one normalised map, in that order (float64)."""
    mask = context.mask
    v = map_z[mask].astype(np.float64)
    t = template[mask].astype(np.float64)
    inside, outside = t >= _TEMPLATE_IN, t < _TEMPLATE_OUT
    supra = v > _Z
    dice_den = supra.sum() + inside.sum()
    x_world = (np.argwhere(mask) @ context.affine[:3, :3].T + context.affine[:3, 3])[:, 0]
    pos = np.where(supra, v, 0.0)
    left, right = float(pos[x_world < 0].sum()), float(pos[x_world > 0].sum())
    corr = np.corrcoef(v, t)[0, 1] if v.std() > 0 and t.std() > 0 else 0.0
    skew = float(stats.skew(v)) if v.std() > 0 else 0.0
    return np.array([
        float(np.percentile(v, 99.5)) if v.size else 0.0,
        float(v[inside].mean()) if inside.any() else 0.0,
        float(v[outside].mean()) if outside.any() else 0.0,
        float(supra.mean()) if v.size else 0.0,
        float(2 * (supra & inside).sum() / dice_den) if dice_den else 0.0,
        float(corr),
        (left - right) / (left + right) if left + right > 0 else 0.0,
        skew,
    ])


def _band(freqs: np.ndarray, values: np.ndarray, low: float, high: float) -> float:
    sel = (freqs >= low) & (freqs < high)
    return float(values[sel].sum()) if sel.any() else 0.0


def timecourse_features(tc_2s: np.ndarray) -> np.ndarray:
    """The :data:`TC_FEATURES` of a series already at TR 2 s, in that order (float64).

    The spectrum is a Welch estimate (64-sample segments, half overlap): smoother than a
    raw periodogram on 150 samples, and fine enough (0.0078 Hz) to tell slow-5 from slow-4.
    """
    x = np.asarray(tc_2s, dtype=np.float64).reshape(-1)
    fs = 1.0 / MODEL_TR_S
    freqs, power = signal.welch(x, fs=fs, nperseg=min(64, x.size), detrend="linear")
    amp = np.sqrt(power)
    total_power = float(power[freqs > 0].sum()) or 1.0
    total_amp = float(amp[freqs > 0].sum()) or 1.0
    band = (freqs >= 0.01) & (freqs <= 0.08)
    ac1 = float(np.corrcoef(x[:-1], x[1:])[0, 1]) if x.size > 2 and x.std() > 0 else 0.0
    return np.array([
        float(amp[band].mean()) if band.any() else 0.0,
        float(amp[band].sum()) / total_amp,
        _band(freqs, power, 0.01, 0.027) / total_power,
        _band(freqs, power, 0.027, 0.073) / total_power,
        _band(freqs, power, 0.073, 0.198) / total_power,
        float(freqs[1:][np.argmax(power[1:])]) if freqs.size > 1 else 0.0,
        ac1 if np.isfinite(ac1) else 0.0,
    ])


def summary_features(map_z: np.ndarray, tc_2s: np.ndarray, network: str, context: GridContext) -> np.ndarray:
    """:data:`FEATURE_NAMES` of one (scan, network): map features then time-course features."""
    template = context.templates[context.network_index(network)]
    return np.concatenate([map_features(map_z, template, context), timecourse_features(tc_2s)])


@dataclass
class ScanInputs:
    """One scan's network inputs, with what is known about it.

    Attributes
    ----------
    inputs : dict
        ``{network: (map on the model grid, z-scored time course)}`` from ``network_inputs``.
    tr_s : float
        Repetition time of the time courses.
    patient : str
        Patient id (cross-validation keeps a patient's scans together).
    state : str or None
        ``'pre'``, ``'post'`` or None when unknown (a scan to predict).
    source : str
        Where the scan came from, for messages and reports.
    """

    inputs: Mapping[str, tuple[np.ndarray, np.ndarray]]
    tr_s: float
    patient: str = ""
    state: str | None = None
    source: str = ""

    @property
    def label(self) -> int:
        """1 for post, 0 for pre, -1 when unknown."""
        return {"pre": 0, "post": 1}.get(self.state or "", -1)

    @property
    def n_volumes(self) -> int:
        """Time points of the time courses (0 when there are none)."""
        return max((int(np.asarray(tc).size) for _, tc in self.inputs.values()), default=0)


@dataclass
class NetworkRows:
    """One row per (scan, network): what stage 1, stage 2 and the baseline consume.

    Attributes
    ----------
    maps : numpy.ndarray
        (N, X, Y, Z) float32 normalised maps.
    timecourses : numpy.ndarray
        (N, L) float32 series at TR 2 s, each mirrored to the longest length (``lengths``
        holds the true one) so that they stack; windows are cut within ``lengths``.
    lengths : numpy.ndarray
        (N,) samples of each resampled series.
    networks : numpy.ndarray
        (N,) network index (template order).
    features : numpy.ndarray
        (N, F) :data:`FEATURE_NAMES`.
    labels : numpy.ndarray
        (N,) 1 post, 0 pre, -1 unknown.
    groups : numpy.ndarray
        (N,) patient id (str).
    scans : numpy.ndarray
        (N,) index of the scan in the list the rows were built from.
    """

    maps: np.ndarray
    timecourses: np.ndarray
    lengths: np.ndarray
    networks: np.ndarray
    features: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    scans: np.ndarray
    network_names: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return int(self.labels.size)

    def subset(self, index: np.ndarray) -> NetworkRows:
        """The rows at ``index`` (integer or boolean)."""
        index = np.asarray(index)
        return NetworkRows(self.maps[index], self.timecourses[index], self.lengths[index],
                           self.networks[index], self.features[index], self.labels[index],
                           self.groups[index], self.scans[index], self.network_names)

    def windows(self, row: int, n: int, length: int = TC_LENGTH,
                rng: np.random.Generator | None = None) -> np.ndarray:
        """(n, length) windows of row ``row``'s time course (see :func:`timecourse_windows`)."""
        return timecourse_windows(self.timecourses[row, :self.lengths[row]], length, n, rng)


def build_rows(scans: Sequence[ScanInputs], context: GridContext | None = None,
               networks: Sequence[str] | None = None) -> NetworkRows:
    """Rows of every scan x network, in scan order then network order.

    Parameters
    ----------
    scans : sequence of ScanInputs
    context : GridContext, optional
        Defaults to :func:`model_context` (the model grid).
    networks : sequence of str, optional
        Which networks to take (default: all of ``context.networks``); every scan must
        have each of them.

    Raises
    ------
    NetworkInputError
        If a scan lacks a network, a map is not on the context's grid, or a time
        course is too short.
    """
    context = context or model_context()
    names = tuple(networks) if networks is not None else context.networks
    maps, tcs, nets, feats, labels, groups, scan_ids = [], [], [], [], [], [], []
    for s, scan in enumerate(scans):
        for name in names:
            if name not in scan.inputs:
                raise NetworkInputError(f"The scan {scan.source or s} has no {name} network.")
            network_map, tc = scan.inputs[name]
            network_map = np.asarray(network_map)
            if network_map.shape != context.shape:
                raise NetworkInputError(
                    f"The {name} map of {scan.source or s} has shape {network_map.shape}, not the "
                    f"model grid {context.shape}; resample it with network_inputs first."
                )
            z = normalise_map(network_map, context.mask)
            tc_2s = resample_timecourse(tc, scan.tr_s)
            maps.append(z)
            tcs.append(tc_2s)
            nets.append(context.network_index(name))
            feats.append(summary_features(z, tc_2s, name, context))
            labels.append(scan.label)
            groups.append(str(scan.patient))
            scan_ids.append(s)
    if not maps:
        raise NetworkInputError("There are no scans to build network rows from.")
    lengths = np.array([t.size for t in tcs])
    longest = max(int(lengths.max()), TC_LENGTH)
    stacked = np.stack([np.pad(t, (0, longest - t.size), mode="symmetric") for t in tcs]).astype(np.float32)
    return NetworkRows(
        maps=np.stack(maps), timecourses=stacked, lengths=lengths, networks=np.array(nets, dtype=np.int64),
        features=np.array(feats, dtype=np.float64), labels=np.array(labels, dtype=np.int64),
        groups=np.array(groups, dtype=object), scans=np.array(scan_ids, dtype=np.int64),
        network_names=context.networks,
    )
