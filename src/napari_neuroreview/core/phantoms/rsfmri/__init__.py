"""Simulated resting-state fMRI: networks on the MNI grey matter, before and after surgery.

The networks workflow (issue 4) imitates a study of hypothalamic hamartoma surgery: 56
patients scanned at rest before and six months after, five networks (motor, vision,
language, frontal, temporal) recovered by ICA and classified pre or post. No such data can
be downloaded here, so :func:`make_bold_case` simulates a 4D BOLD scan from what nilearn
ships offline: the MNI152 2009 tissue maps (the anatomy, as for the T1 and SWI phantoms)
and the Seitzman 2018 ROI table (the networks, :mod:`napari_neuroreview.core.anatomy.atlas`).

What a scan is made of, voxel ``v`` and volume ``t`` (``S0`` the baseline):

``S(v, t) = S0(v) * (1 + sum_n a_n m_n(v) x_n(t) + physiology + drift + motion signal)``
``          - grad S0(v) . u(v, t)``, then spin-history, then thermal noise and magnitude.

1. *Baseline.* T2*-weighted EPI contrast from the partial-volume tissue fractions
   (CSF 1.4 > grey 1.0 > white 0.8) times a smooth receive-coil bias field; 3 mm
   isotropic by default, stored LAS (as FSL does), TR 2 s, 150 volumes. The brain sits in
   air; by default voxels less than half brain are zeroed, as after brain extraction.
2. *Networks* (:mod:`.networks`). Eight networks: the five targets and three nuisance
   networks (default mode, dorsal attention, cingulo-opercular) that ICA must also
   separate. Each is a set of nodes (ROI balls, 7 mm radius, blurred 6 mm) on the grey
   matter, with the person's own variation: node positions jittered (~3 mm), loadings
   scaled (log-normal, sd 0.3), amplitude 1.5-2.5 % at the map's peak.
3. *Network time courses* (:mod:`.signals`). Per network, slow on/off blocks and fast
   random events of neural activity, each convolved with the canonical double-gamma HRF
   (nilearn's ``spm_hrf``), mixed by the network's slow share.
4. *Physiology* (:mod:`.signals`). Cardiac (~1.1 Hz, strongest in CSF) and respiratory
   (~0.27 Hz, with an inferior-superior gradient) cycles aliased by TR = 2 s, sampled at
   each slice's time in an interleaved acquisition; a slow global fluctuation in grey
   matter; linear and quadratic drift with a smooth spatial gradient.
5. *Motion* (:mod:`.signals`). Six rigid parameters (random walk, drift, 0-3 jerks); the
   displacement enters to first order (``S0(r - u) ~ S0(r) - grad S0 . u``, exact enough
   for sub-voxel motion, and giving the familiar rim artefacts at tissue edges); each jerk
   darkens the slices acquired after it by 3-6 % (spin history) for that volume and half
   that the next; the global signal drops 0.5 % per mm of framewise displacement.
6. *Noise.* White complex Gaussian noise (1.4 % of grey matter: temporal SNR ~70 before
   physiology) and the magnitude, stored as int16 (grey matter ~300).

Patients and states: a patient's individual variation is drawn from ``patient_seed``
and shared by the pre- and post-operative scans; the scan's own randomness (activity,
physiology, motion, noise) from ``(patient_seed, state)``. The surgery effect (what
differs between the states, how strongly, and why no single summary feature shows it
well) is documented in :mod:`.effect`. Ground truth (every parameter, the true maps and
time courses) is returned beside the image and written beside it by
:func:`write_bold_cohort`; nothing in the image depends on reading it.

Where things are
----------------
:mod:`.networks`   individual variation and individual maps
:mod:`.signals`    time courses, physiology, drift, motion
:mod:`.effect`     the surgery effect
:mod:`.case`       :func:`make_bold_case`, :class:`BoldCase`, :func:`patient_networks`
:mod:`.cohort`     :func:`write_bold_cohort`, :func:`load_bold_truth`, the sample writer
"""

from __future__ import annotations

from .case import STATES, BoldCase, make_bold_case, patient_networks
from .cohort import RSFMRI_SAMPLE, load_bold_truth, session_dir, write_bold_cohort, write_rsfmri_sample
from .effect import NODE_CHANGE, SLOW_DIRECTION, SLOW_SHIFT, apply_effect, effect_pattern
from .networks import NUISANCE_NETWORKS, NetworkState, PatientNetworks

__all__ = [
    "NODE_CHANGE",
    "NUISANCE_NETWORKS",
    "RSFMRI_SAMPLE",
    "SLOW_DIRECTION",
    "SLOW_SHIFT",
    "STATES",
    "BoldCase",
    "NetworkState",
    "PatientNetworks",
    "apply_effect",
    "effect_pattern",
    "load_bold_truth",
    "make_bold_case",
    "patient_networks",
    "session_dir",
    "write_bold_cohort",
    "write_rsfmri_sample",
]
