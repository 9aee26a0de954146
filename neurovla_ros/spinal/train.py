"""``neurovla train spinal``: learn the spinal network's weights (reproduces weights.npz).

Imitation with surrogate-gradient BPTT (torch, CPU), then DAgger in the MuJoCo world:

1. Behaviour cloning: the teacher (PD + URDF friction feed-forward, :mod:`.encoding`) drives
   the arm along random minimum-jerk motions in ``sim.world.World``; every tick the normalised
   joint signals ``z`` and the teacher's normalised torque are recorded. Each joint's sequence
   is one training sample (the weights are shared by all joints).
2. The network (:class:`TorchSpinal`, the same arithmetic as :class:`.lif.SpinalNet`, with a
   fast-sigmoid surrogate derivative for the spike) is trained by BPTT through time windows:
   the readout must reproduce the teacher's command (Huber loss) while firing little.
3. DAgger: the numpy network itself (inside the full :class:`.controller.SpinalController`)
   drives the arm, mixed with the teacher at a decreasing ratio; the states it visits are
   labelled by the teacher and added to the data; training continues.
4. The result is checked in closed loop against the PD baseline and the teacher on held-out
   motions and written with its figures in ``meta_*`` entries.

Deterministic for a given ``--seed`` (single torch thread, seeded generators).
"""
from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

from ..common.servo import JointGains
from . import lif
from .encoding import signal_table
from .motion import moving_mask

U_CAP = 3.0       # training targets are clipped to this many normalised units
X_MAX = 4.0       # encoder channel clip (same as encoding.Encoder)


# ---------------------------------------------------------------- torch network
def _torch():
    import torch
    return torch


class _Spike:
    """Heaviside forward, fast-sigmoid derivative backward (slope ``k``)."""

    fn = None

    @classmethod
    def get(cls, k: float = 5.0):
        if cls.fn is None:
            torch = _torch()

            class SpikeFn(torch.autograd.Function):
                @staticmethod
                def forward(ctx, v):
                    ctx.save_for_backward(v)
                    return (v > 1.0).to(v.dtype)

                @staticmethod
                def backward(ctx, g):
                    (v,) = ctx.saved_tensors
                    return g / (1.0 + k * (v - 1.0).abs()) ** 2

            cls.fn = SpikeFn.apply
        return cls.fn


def make_torch_net(p: lif.NetParams):
    torch = _torch()
    nn = torch.nn
    base_meta = dict(p.meta)

    class TorchSpinal(nn.Module):
        """Same dynamics as lif.SpinalNet (batch of joint sequences)."""

        def __init__(self):
            super().__init__()
            self.w_in = nn.Parameter(torch.tensor(p.w_in, dtype=torch.float32))
            self.w_rec = nn.Parameter(torch.tensor(p.w_rec, dtype=torch.float32))
            self.w_out = nn.Parameter(torch.tensor(p.w_out, dtype=torch.float32))
            b = np.clip(p.beta, 1e-3, 1 - 1e-3)
            self.beta_logit = nn.Parameter(torch.tensor(np.log(b / (1 - b)), dtype=torch.float32))
            self.register_buffer('mask', torch.tensor(p.w_rec != 0, dtype=torch.float32))
            table = signal_table(float(base_meta.get('fine_gain', 0.0)))
            self.register_buffer('sig_src', torch.tensor(table[:, 0], dtype=torch.long))
            self.register_buffer('sig_gain', torch.tensor(table[:, 1], dtype=torch.float32))
            self.beta_out = float(p.beta_out)
            self.substeps = int(p.substeps)
            self.n_layer1 = p.n_layer1

        def beta(self):
            return torch.sigmoid(self.beta_logit).clamp(0.3, 0.995)

        def forward(self, z):
            """z (B, T, 3) normalised signals -> readout (B, T), spikes per neuron and substep
            in each tick (B, T)."""
            spike = _Spike.get()
            z = z.index_select(-1, self.sig_src) * self.sig_gain    # the input signals
            x = torch.cat([z.clamp(0, X_MAX), (-z).clamp(0, X_MAX)], dim=-1)
            bsz, steps, _ = x.shape
            h = self.w_in.shape[1]
            w_rec = self.w_rec * self.mask
            beta = self.beta()
            i_in = x @ self.w_in                       # (B, T, H)
            v = x.new_zeros(bsz, h)
            s = x.new_zeros(bsz, h)
            y = x.new_zeros(bsz)
            ys, rates = [], []
            for t in range(steps):
                total = 0.0
                for _ in range(self.substeps):
                    cur = i_in[:, t] + s @ w_rec
                    y = self.beta_out * y + s @ self.w_out
                    v = beta * v + cur
                    s = spike(v)
                    v = v - s.detach()
                    total = total + s.mean(1)
                ys.append(y)
                rates.append(total / self.substeps)
            return torch.stack(ys, 1), torch.stack(rates, 1)

        def to_params(self, meta=None) -> lif.NetParams:
            meta = {**base_meta, **(meta or {})}
            with torch.no_grad():
                return lif.NetParams(
                    w_in=self.w_in.double().numpy().copy(),
                    w_rec=(self.w_rec * self.mask).double().numpy().copy(),
                    w_out=self.w_out.double().numpy().copy(),
                    beta=self.beta().double().numpy().copy(), beta_out=self.beta_out,
                    theta=1.0, substeps=self.substeps, n_layer1=self.n_layer1,
                    meta=dict(meta or {}))

    return TorchSpinal()


# ---------------------------------------------------------------- data
def targets(z: np.ndarray, gains: JointGains) -> np.ndarray:
    """Teacher command in normalised units for signals z (T, 3, J), clipped for training."""
    u = gains.normalised_teacher(z)
    return np.clip(u, -U_CAP, U_CAP)


def hindsight_targets(out: dict, qd_ref: np.ndarray, gains: JointGains, weight: float = 1.0,
                      dt: float = 1e-3) -> np.ndarray:
    """Labels relabelled toward the reference, in normalised units (T, J), clipped.

    The teacher wants each joint to accelerate as ``a* = qdd_des + (kp e + kd e') / m``
    (the reference's acceleration plus its PD correction) and adds a model of the rest (URDF
    friction). In hindsight a rollout shows what the rest really was: the torque applied at
    tick k minus ``m`` times the acceleration it produced, ``d = tau_k - m (qd_k+1 - qd_k) /
    dt`` (friction, the other joints, the pose's inertia: everything the joint's own model
    misses). The label ``m a* + d`` is the torque that would have given the teacher's error
    dynamics exactly; ``weight`` blends from the teacher (0) to it (1). For any rollout, the
    network's own (DAgger) included.
    """
    z, qd, tau = out['z'], out['qd'], out['tau']
    unit = gains.tau_unit
    accel = np.empty_like(qd)
    accel[:-1] = np.diff(qd, axis=0) / dt
    accel[-1] = accel[-2]
    model_rest = gains.feedforward(qd_ref, 0.0) / unit       # the teacher's friction model
    wanted = z[:, 0] + z[:, 1] + z[:, 2] - model_rest        # m a* (normalised)
    rest = (tau - gains.inertia * accel) / unit               # d in hindsight
    u = (1 - weight) * gains.normalised_teacher(z) + weight * (wanted + rest)
    return np.clip(u, -U_CAP, U_CAP)


def rest_ticks(qd_ref: np.ndarray, qd: np.ndarray, threshold: float = 0.05) -> np.ndarray:
    """Ticks at rest as the controller counts them (reference and arm slower than
    ``threshold`` [rad/s] on every joint): (T,) bool."""
    return ~(moving_mask(qd_ref, threshold) | moving_mask(qd, threshold))


def windows(z: np.ndarray, u: np.ndarray, rest: np.ndarray, length: int, stride: int):
    """Per-joint windows: z (T, 3, J), u (T, J), rest (T,) -> (N, length, 3), (N, length),
    (N, length)."""
    zs, us, rs = [], [], []
    for j in range(z.shape[2]):
        for s0 in range(0, len(z) - length + 1, stride):
            zs.append(z[s0:s0 + length, :, j])
            us.append(u[s0:s0 + length, j])
            rs.append(rest[s0:s0 + length])
    return tuple(np.array(a, np.float32) for a in (zs, us, rs))


def episode_windows(out: dict, qd_ref: np.ndarray, gains: JointGains, length: int,
                    hindsight: float = 0.0):
    """The training windows of one recorded rollout (half-overlapping), labelled by the
    teacher or, with ``hindsight`` > 0, toward the reference (``hindsight_targets``)."""
    u = (hindsight_targets(out, qd_ref, gains, hindsight) if hindsight > 0
         else targets(out['z'], gains))
    return windows(out['z'], u, rest_ticks(qd_ref, out['qd']), length, length // 2)


def tracking_kernel(omega: float, length: int, dt: float = 1e-3) -> np.ndarray:
    """Impulse response (``length`` ticks, sum 1) from a torque error to the tracking error it
    causes under the joint servo: ``omega^2 / (s + omega)^2`` (``kp = m w^2``, ``kd = 2 m w``),
    one tick late."""
    t = np.arange(length) * dt
    h = t * np.exp(-omega * t)
    return h / h.sum()


def train_epochs(net, opt, data, epochs: int, batch: int, warmup: int, rng,
                 spike_cost: float, rest_spike_cost: float, lf_weight: float = 0.0,
                 kernel=None, bar=None):
    """Adam on the Huber loss to the teacher, plus ``lf_weight`` times the Huber loss of the
    error filtered by ``kernel`` (what the servo makes of it: ``tracking_kernel``), plus the
    firing: ``spike_cost`` times the mean rate and ``rest_spike_cost`` times the mean rate at
    rest (``data`` = z, u, rest)."""
    torch = _torch()
    F = torch.nn.functional
    data_z, data_u, data_r = data
    n = len(data_z)
    if lf_weight > 0:
        k = torch.tensor(np.ascontiguousarray(kernel[::-1]), dtype=torch.float32).view(1, 1, -1)
    losses = []
    for _ in range(epochs):
        order = rng.permutation(n)
        for b0 in range(0, n - batch + 1, batch):
            idx = order[b0:b0 + batch]
            z = torch.from_numpy(data_z[idx])
            u = torch.from_numpy(data_u[idx])
            rest = torch.from_numpy(data_r[idx])
            y, rates = net(z)
            loss = F.huber_loss(y[:, warmup:], u[:, warmup:], delta=0.5)
            rate = rates.mean()
            rest_rate = (rates * rest).sum() / rest.sum().clamp(min=1.0)
            total = loss + spike_cost * rate + rest_spike_cost * rest_rate
            if lf_weight > 0:
                d = F.pad((y - u)[:, None, warmup:], (k.shape[-1] - 1, 0))
                lf = F.conv1d(d, k)[:, 0]
                total = total + lf_weight * F.huber_loss(lf, torch.zeros_like(lf), delta=0.5)
            opt.zero_grad()
            total.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            losses.append(loss.item())
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f'{loss.item():.4f}', rate=f'{rate.item():.3f}')
    return float(np.mean(losses[-10:])) if losses else float('nan')


# ---------------------------------------------------------------- motions
def disturbed(policy, gains: JointGains, rng, sigma: float, hold: float = 0.05,
              dt: float = 1e-3):
    """``policy`` plus a random torque (DART, Laskey et al. 2017: the teacher's data then show
    it recovering from errors the network will make): per joint a level of normal spread
    ``sigma`` normalised units, redrawn every ``hold`` [s]."""
    every = max(1, int(round(hold / dt)))
    state = {'k': 0, 'tau': np.zeros(len(gains.kp))}

    def wrapped(q, qd, effort, q_des, qd_des, t):
        if state['k'] % every == 0:
            state['tau'] = rng.normal(0.0, sigma, len(gains.kp)) * gains.tau_unit
        state['k'] += 1
        return policy(q, qd, effort, q_des, qd_des, t) + state['tau']
    return wrapped


def training_motions(seed: int, episodes: int, episode_s: float, dagger: int, eval_s: float):
    """Every reference motion a training run uses, drawn before it starts from the training's
    own motion streams (``motion.motion_rng``): ``episodes`` teacher episodes, ``dagger`` rounds
    of ``max(2, episodes // 2)`` episodes, the closed-loop check. Returns (teacher episodes,
    DAgger rounds, check, every waypoint drawn), each motion a (q, qd) pair."""
    from .motion import motion_rng, random_motion
    rng, points = motion_rng('train', seed), []
    teacher = [random_motion(rng, episode_s, waypoints=points) for _ in range(episodes)]
    rounds = [[random_motion(rng, episode_s, waypoints=points)
               for _ in range(max(2, episodes // 2))] for _ in range(dagger)]
    check = random_motion(motion_rng('train_check', seed), eval_s, waypoints=points)
    return teacher, rounds, check, points


# what the weights' meta records of the motions (training_motions' arguments)
MOTION_META = ('seed', 'episodes', 'episode_s', 'dagger', 'eval_s')


def training_waypoints(meta: dict) -> np.ndarray | None:
    """Every waypoint of the motions used by the training run that wrote ``meta`` (the weights'
    meta), (N, 6); None where the meta does not record them (weights of an older training)."""
    if not all(k in meta for k in MOTION_META):
        return None
    *_, points = training_motions(int(meta['seed']), int(meta['episodes']),
                                  float(meta['episode_s']), int(meta['dagger']),
                                  float(meta['eval_s']))
    return np.array(points)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog='neurovla train spinal', description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--out', default=lif.WEIGHTS_FILE, help='weights file to write (.npz)')
    ap.add_argument('--episodes', type=int, default=8, help='teacher episodes')
    ap.add_argument('--episode-s', type=float, default=8.0, help='episode length [s]')
    ap.add_argument('--epochs', type=int, default=4, help='behaviour-cloning epochs')
    ap.add_argument('--dagger', type=int, default=3, help='DAgger rounds')
    ap.add_argument('--dagger-epochs', type=int, default=1, help='epochs after each round')
    ap.add_argument('--window', type=int, default=160, help='BPTT window [ticks]')
    ap.add_argument('--batch', type=int, default=128)
    ap.add_argument('--lr', type=float, default=3e-3)
    ap.add_argument('--spike-cost', type=float, default=0.002, help='cost of the mean rate')
    ap.add_argument('--rest-spike-cost', type=float, default=1.0,
                    help='cost of the mean rate at rest (the arm and its reference still)')
    ap.add_argument('--substeps', type=int, default=2)
    ap.add_argument('--e-ref', type=float, default=0.02,
                    help='position error of one normalised unit [rad]')
    ap.add_argument('--fine-gain', type=float, default=8.0,
                    help='gain of the fine error channels (0 = none; encoding.signal_table)')
    ap.add_argument('--eval-s', type=float, default=6.0, help='held-out evaluation length [s]')
    ap.add_argument('--lf-weight', type=float, default=0.0,
                    help='weight of the loss on the torque error as the servo filters it')
    ap.add_argument('--disturb', type=float, default=0.0,
                    help='random torque added in every second teacher rollout [normalised units]')
    ap.add_argument('--hindsight', type=float, default=1.0,
                    help='labels from the teacher (0) to the torque that, in hindsight, gives '
                         "the teacher's error dynamics (1): hindsight_targets")
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)

    import torch
    from tqdm import tqdm

    from ..sim.world import World
    from .controller import SpinalConfig, SpinalController
    from .evaluate import NetworkPolicy, pd_policy, rmse, rollout, teacher_policy

    t_start = time.monotonic()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(args.seed)      # shuffling only: the motions have their own
    disturb_rng = np.random.default_rng([args.seed, 1])
    teacher_eps, dagger_eps, (qr_check, vr_check), _ = training_motions(
        args.seed, args.episodes, args.episode_s, args.dagger, args.eval_s)
    world = World(seed=args.seed, n_objects=0)
    cfg = SpinalConfig(reflex_enabled=False)
    table = signal_table(args.fine_gain)
    params = lif.init_params(n_in=2 * len(table), substeps=args.substeps, seed=args.seed)
    params.meta.update(e_ref=args.e_ref, fine_gain=args.fine_gain)
    ctrl = SpinalController(params, cfg)
    gains = ctrl.gains
    enc = ctrl.encoder

    def log(msg):
        tqdm.write(f'[train spinal {time.monotonic() - t_start:5.0f}s] {msg}', file=sys.stderr)

    # 1. teacher data
    log(f'gains kp {np.round(gains.kp, 1)} kd {np.round(gains.kd, 2)}')
    zs = []
    for qr, vr in tqdm(teacher_eps, desc='teacher rollouts', file=sys.stderr):
        pol = teacher_policy(gains)
        if args.disturb > 0 and len(zs) % 2:        # every second episode
            pol = disturbed(pol, gains, disturb_rng, args.disturb)
        out = rollout(world, qr, vr, pol, record_z=True, encoder=enc)
        zs.append(episode_windows(out, vr, gains, args.window, args.hindsight))
    data = [np.concatenate(parts) for parts in zip(*zs)]
    log(f'{len(data[0])} windows of {args.window} ticks')

    # 2. behaviour cloning
    net = make_torch_net(params)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    warm = 20
    omega = float(np.median(2 * gains.kp / gains.kd))       # the servo's bandwidth [rad/s]
    costs = (args.spike_cost, args.rest_spike_cost, args.lf_weight,
             tracking_kernel(omega, args.window))
    n_batches = len(data[0]) // args.batch
    with tqdm(total=args.epochs * n_batches, desc='BPTT (cloning)', file=sys.stderr) as bar:
        loss = train_epochs(net, opt, data, args.epochs, args.batch, warm, rng, *costs,
                            bar=bar)
    log(f'cloning loss {loss:.4f}')

    # 3. DAgger
    for it, episodes in enumerate(dagger_eps):
        mix = 0.5 * (1 - (it + 1) / (args.dagger + 1))
        ctrl = SpinalController(net.to_params(), cfg)
        pol = NetworkPolicy(ctrl, mix_teacher=mix)
        new = []
        for qr, vr in tqdm(episodes, desc=f'DAgger {it + 1} rollouts', file=sys.stderr):
            pol.reset()
            out = rollout(world, qr, vr, pol, record_z=True, encoder=enc)
            new.append(episode_windows(out, vr, gains, args.window, args.hindsight))
        data = [np.concatenate([d, *parts]) for d, parts in zip(data, zip(*new))]
        for g in opt.param_groups:
            g['lr'] = args.lr * 0.5 ** (it + 1)
        n_batches = len(data[0]) // args.batch
        with tqdm(total=args.dagger_epochs * n_batches, desc=f'BPTT (DAgger {it + 1})',
                  file=sys.stderr) as bar:
            loss = train_epochs(net, opt, data, args.dagger_epochs, args.batch, warm, rng,
                                *costs, bar=bar)
        log(f'DAgger {it + 1}: mix {mix:.2f}, {len(data[0])} windows, loss {loss:.4f}')

    # 4. closed-loop check on motions of its own stream
    params = net.to_params()
    qr, vr = qr_check, vr_check
    mask = moving_mask(vr)
    ctrl = SpinalController(params, cfg)
    pol = NetworkPolicy(ctrl)
    ctrl.set_reference(qr[0], vr[0], now=0.0)
    ctrl.mode = 'follow'
    r_net = rmse(rollout(world, qr, vr, pol)['err'], mask)
    r_pd = rmse(rollout(world, qr, vr, pd_policy(gains))['err'], mask)
    r_teacher = rmse(rollout(world, qr, vr, teacher_policy(gains))['err'], mask)
    rest, motion = ctrl.firing_rates()
    meta = {**{k: getattr(args, k) for k in MOTION_META}, 'e_ref': args.e_ref,
            'hindsight': args.hindsight,
            'fine_gain': args.fine_gain, 'loss': loss, 'rmse_net': r_net, 'rmse_pd': r_pd,
            'rmse_teacher': r_teacher, 'ratio_pd': r_net / r_pd, 'ratio_teacher': r_net / r_teacher,
            'firing_rest': rest, 'firing_motion': motion,
            'train_s': time.monotonic() - t_start}
    params.meta = meta
    params.save(args.out)
    log(f'tracking RMSE network {r_net * 1e3:.3f} mrad, PD {r_pd * 1e3:.3f}, teacher '
        f'{r_teacher * 1e3:.3f} (ratio to PD {r_net / r_pd:.3f}, to the teacher '
        f'{r_net / r_teacher:.3f}); firing rest {rest:.2f} Hz, motion {motion:.2f} Hz')
    log(f'wrote {args.out} in {time.monotonic() - t_start:.0f} s')
    if not math.isfinite(r_net):
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
