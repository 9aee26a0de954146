"""Leaky integrate-and-fire network of the spinal layer: numpy inference, ROS-free.

One small spiking segment per joint, the same weights for every joint (the inputs and the
output are normalised per joint by :mod:`neurovla_ros.spinal.encoding`). All joints run as one
batch, so a tick costs a fixed handful of numpy calls whatever the number of joints.

Dynamics, per substep (``substeps`` substeps per control tick of 1 ms):

    v[t] = beta * v[t-1] + I_in + W_rec^T s[t-1]    membrane potential (dimensionless)
    s[t] = v[t] > theta                              spike (0 or 1)
    v[t] = v[t] - theta * s[t]                       reset by subtraction
    y[t] = beta_out * y[t-1] + w_out^T s[t]          readout: non-resetting leaky integrator

``beta = exp(-dt_sub / tau_mem)``. ``I_in = W_in^T x`` is the input current of the tick (the
encoded inputs are held for the whole tick). ``W_rec`` only connects the first hidden layer to
the second one (a feed-forward layer with one substep of synaptic delay); the input also
reaches the second layer directly (a residual path), and both layers feed the readout.
Membrane potentials and the readout carry over from one tick to the next. With no bias
currents and zero input the network is silent and its readout decays to zero.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

WEIGHTS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'weights.npz')
# An input channel counts as an input event (for the synaptic-operation count) when it carries
# more than 1/64 of a normalised unit: graded input events of 6-bit resolution; weaker inputs
# would send nothing on event-driven hardware.
INPUT_EVENT = 1.0 / 64.0


@dataclass
class NetParams:
    """Weights and constants of one joint segment (shared by all joints)."""
    w_in: np.ndarray           # (C, H) input channel -> hidden current
    w_rec: np.ndarray          # (H, H) hidden spikes -> hidden current (layer 1 -> layer 2)
    w_out: np.ndarray          # (H,)   hidden spikes -> readout
    beta: np.ndarray           # (H,)   membrane decay per substep, 0..1
    beta_out: float            # readout decay per substep, 0..1
    theta: float = 1.0         # firing threshold
    substeps: int = 2          # substeps per control tick
    n_layer1: int = 32         # hidden neurons of layer 1 (the rest are layer 2)
    meta: dict = field(default_factory=dict)

    @property
    def n_in(self) -> int:
        return self.w_in.shape[0]

    @property
    def n_hidden(self) -> int:
        return self.w_in.shape[1]

    def fanout(self) -> np.ndarray:
        """Outgoing synapses of each hidden neuron (non-zero recurrent + readout weights)."""
        return (np.count_nonzero(self.w_rec, axis=1) + (self.w_out != 0)).astype(float)

    def save(self, path: str) -> None:
        meta = {f'meta_{k}': np.asarray(v) for k, v in self.meta.items()}
        np.savez_compressed(path, w_in=self.w_in, w_rec=self.w_rec, w_out=self.w_out,
                            beta=self.beta, beta_out=self.beta_out, theta=self.theta,
                            substeps=self.substeps, n_layer1=self.n_layer1, **meta)

    @classmethod
    def load(cls, path: str = WEIGHTS_FILE) -> 'NetParams':
        with np.load(path) as z:
            meta = {k[5:]: z[k].item() if z[k].ndim == 0 else z[k] for k in z.files
                    if k.startswith('meta_')}
            p = cls(w_in=z['w_in'].astype(float), w_rec=z['w_rec'].astype(float),
                    w_out=z['w_out'].astype(float), beta=z['beta'].astype(float),
                    beta_out=float(z['beta_out']), theta=float(z['theta']),
                    substeps=int(z['substeps']), n_layer1=int(z['n_layer1']), meta=meta)
        p.validate()
        return p

    def validate(self) -> None:
        c, h = self.w_in.shape
        if self.w_rec.shape != (h, h) or self.w_out.shape != (h,) or self.beta.shape != (h,):
            raise ValueError(f'inconsistent weight shapes: w_in {self.w_in.shape}, '
                             f'w_rec {self.w_rec.shape}, w_out {self.w_out.shape}, '
                             f'beta {self.beta.shape}')
        for name in ('w_in', 'w_rec', 'w_out', 'beta'):
            if not np.all(np.isfinite(getattr(self, name))):
                raise ValueError(f'{name} contains NaN or inf')
        if not (np.all((self.beta >= 0) & (self.beta < 1)) and 0 <= self.beta_out < 1):
            raise ValueError('decays beta and beta_out must lie in [0, 1)')
        if self.theta <= 0 or self.substeps < 1 or not 0 < self.n_layer1 <= h:
            raise ValueError(f'bad theta {self.theta}, substeps {self.substeps} or '
                             f'n_layer1 {self.n_layer1}')


class SpinalNet:
    """The batched LIF network with preallocated state; ``tick(x)`` -> readout per joint.

    State arrays are laid out neurons x joints (H, J) so that every substep is a handful of
    in-place numpy calls on contiguous buffers: one matrix product gives the synaptic current
    of every neuron (input + layer 1 -> layer 2), the readout increment and the event counts.
    Spikes reach the readout and layer 2 one substep after they are emitted.

    Counters (since the last ``reset_counters``): ``ticks``, ``spikes`` (hidden spikes),
    ``sops`` (synaptic operations: each hidden spike times its fan-out, plus each input channel
    above ``INPUT_EVENT`` times its fan-out at every substep). ``tick_spikes`` (H, J) holds each
    neuron's spikes in the last tick when ``record`` is true (for rasters; off in the control loop).
    """

    def __init__(self, params: NetParams, n_joints: int = 6, record: bool = False):
        params.validate()
        self.p = params
        j, h, c = n_joints, params.n_hidden, params.n_in
        self.n_joints, self.record = j, record
        # one matrix for [W_rec | W_in] -> hidden current, w_out -> readout, fan-out, ones
        wt = np.zeros((h + 3, h + c))
        wt[:h, :h] = params.w_rec.T / params.theta
        wt[:h, h:] = params.w_in.T / params.theta
        wt[h, :h] = params.w_out
        wt[h + 1, :h] = params.fanout()
        wt[h + 2, :h] = 1.0
        self._wt = wt
        self._wt_t = np.ascontiguousarray(wt.T)    # by source neuron: the C core's layout
        self._beta = np.ascontiguousarray(np.repeat(params.beta[:, None], j, 1))
        self._theta = np.ones((h, j))              # potentials are scaled so theta = 1
        self._substeps = int(params.substeps)
        self._in_ops = float(h * params.substeps)
        self._sa = np.zeros((h + c, j))            # [spikes of last substep ; input]
        self.s = self._sa[:h]
        self._x = self._sa[h:]
        self._sb = np.zeros((h, j), bool)
        self._xb = np.zeros((c, j), bool)
        self._cat = np.zeros((h + 3, j))           # [current ; readout incr ; sops ; spikes]
        self._i = self._cat[:h]
        # readout membranes and event counters in one block: rows [y ; sops ; spikes]
        self._out = np.zeros((3, j))
        self._decay = np.ones((3, j))
        self._decay[0] = float(params.beta_out)
        self._inc = self._cat[h:]
        self.v = np.zeros((h, j))                  # membrane potentials / theta
        self.y = self._out[0]                      # readout membranes
        self.tick_spikes = np.zeros((h, j))
        self._counts = np.zeros(2)                 # [ticks, input synaptic operations]
        self.reset_counters()

    # ---- state ----
    def reset(self) -> None:
        """Silence the network: zero membranes, spikes and readout."""
        self.v.fill(0.0)
        self._sa.fill(0.0)
        self.y.fill(0.0)
        self.tick_spikes.fill(0.0)

    def reset_counters(self) -> None:
        self._counts.fill(0.0)
        self._out[1:].fill(0.0)

    @property
    def ticks(self) -> int:
        return int(self._counts[0])

    @property
    def spikes(self) -> float:
        """Hidden spikes since the last ``reset_counters`` (counted when delivered)."""
        return math.fsum(self._out[2].tolist())

    @property
    def sops(self) -> float:
        """Synaptic operations since the last ``reset_counters``."""
        return math.fsum(self._out[1].tolist()) + float(self._counts[1])

    # ---- one control tick ----
    def tick(self, x: np.ndarray) -> np.ndarray:
        """Advance one tick with the encoded input ``x`` (C, J) >= 0; return the readout (J,).

        The returned array is the network's own buffer: copy it to keep it.
        """
        v, s, sb, beta, theta = self.v, self.s, self._sb, self._beta, self._theta
        wt, sa, cat, i = self._wt, self._sa, self._cat, self._i
        out, decay, inc = self._out, self._decay, self._inc
        np.copyto(self._x, x)
        rec = self.record
        if rec:
            self.tick_spikes.fill(0.0)
        for _ in range(self._substeps):
            np.dot(wt, sa, out=cat)
            out *= decay            # readout leaks; the counters do not
            out += inc              # readout increment, synaptic operations, spikes
            v *= beta
            v += i
            np.greater(v, theta, out=sb)
            np.copyto(s, sb)
            v -= s
            if rec:
                self.tick_spikes += s
        np.greater(x, INPUT_EVENT, out=self._xb)
        self._counts[0] += 1.0
        self._counts[1] += np.count_nonzero(self._xb) * self._in_ops
        return self.y

    # ---- figures ----
    @property
    def n_neurons(self) -> int:
        return self.n_joints * self.p.n_hidden

    def firing_rate(self, tick_s: float = 1e-3) -> float:
        """Mean hidden firing rate since the last counter reset [spikes / neuron / s]."""
        return self.spikes / max(1, self.ticks) / self.n_neurons / tick_s

    def sops_per_s(self, tick_s: float = 1e-3) -> float:
        return self.sops / max(1, self.ticks) / tick_s


def init_params(n_in: int = 6, n_layer1: int = 32, n_layer2: int = 16, substeps: int = 2,
                tau_mem_ms=(2.0, 12.0), tau_out_ms: float = 4.0, tick_ms: float = 1.0,
                seed: int = 0) -> NetParams:
    """Random initial weights (training starts here): diverse membrane time constants."""
    rng = np.random.default_rng(seed)
    h = n_layer1 + n_layer2
    dt = tick_ms / substeps
    tau = np.exp(rng.uniform(np.log(tau_mem_ms[0]), np.log(tau_mem_ms[1]), h))
    w_rec = np.zeros((h, h))
    w_rec[:n_layer1, n_layer1:] = rng.normal(0, 1 / np.sqrt(n_layer1), (n_layer1, n_layer2))
    return NetParams(w_in=rng.normal(0, 1.0, (n_in, h)) * 0.5, w_rec=w_rec,
                     w_out=rng.normal(0, 0.02, h), beta=np.exp(-dt / tau),
                     beta_out=float(np.exp(-dt / tau_out_ms)), substeps=substeps,
                     n_layer1=n_layer1)
