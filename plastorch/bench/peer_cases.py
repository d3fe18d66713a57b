"""The peers' implementations of the benchmark cases, driven through their public APIs.

Each builder returns a :class:`~plastorch.bench.common.Contender`; when the peer
is not installed, cannot import, or cannot express the case, the contender has
no ``fn`` and its ``status`` says why. What each one times:

- SpikingJelly: ``STDPLearner.step(on_grad=True)`` after the forward pass that
  its monitors record (single step ``"s"`` or multi-step ``"m"``, which loops
  over the steps of the window); traces decay by Euler inside ``step``.
- BindsNET: ``Connection.update()`` (``PostPre``) with the nodes' spikes ``s``
  and traces ``x`` set beforehand (BindsNET updates traces in the nodes' forward
  pass, which is not timed); a window is ``T`` such updates.
- inferno: the ``STDP`` trainer's update (``trainer()``) and the connection's
  updater applying it, after a forward pass of a ``Serial(LinearDense, LIF)``
  layer that its monitors record. Its delay-adjusted trainers
  (``DelayAdjustedSTDP`` / ``DelayAdjustedSTDPD``) are timed with the forward pass
  of each step included, as inferno updates after every step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from .common import Config, Contender, Replay
from .peers import load_peer

__all__ = [
    "bindsnet_diehl_cook",
    "bindsnet_diehl_cook_presenter",
    "bindsnet_stdp",
    "inferno_delay_window",
    "inferno_stdp_dense",
    "peer_rows",
    "spikingjelly_stdp",
]

LR = 1e-3
TAU = 20.0


def _unavailable(name: str, status: str) -> Contender:
    peer = load_peer(name)
    return Contender(peer.label, "peer", None, status=status if peer.available else peer.status)


def _peer_or_status(name: str, config: Config):
    peer = load_peer(name)
    if name not in config.peers:
        return peer, Contender(peer.label, "peer", None, status="skipped (--peers)")
    if not peer.available:
        return peer, Contender(peer.label, "peer", None, status=peer.status)
    return peer, None


# SpikingJelly's learners with the suite's STDP: traces of TAU, both rates LR (the sign
# of its depression is built in)
_SPIKINGJELLY_STDP = dict(
    tau_pre=TAU, tau_post=TAU, f_pre=lambda weight: LR, f_post=lambda weight: LR
)


def spikingjelly_stdp(
    config: Config,
    layer: nn.Module,
    pres: list[Tensor],
    posts: list[Tensor],
    *,
    step_mode: str,
    warm: int = 2,
) -> Contender:
    """SpikingJelly ``STDPLearner`` on ``layer`` (Linear, Conv1d, Conv2d; no groups/dilation)."""
    peer, missing = _peer_or_status("spikingjelly", config)
    if missing is not None:
        return missing
    if isinstance(layer, nn.Conv3d):
        return Contender(peer.label, "peer", None, status="unsupported: no Conv3d learner")
    if isinstance(layer, nn.Conv2d | nn.Conv1d) and (
        layer.groups != 1 or any(d != 1 for d in layer.dilation)
    ):
        return Contender(
            peer.label, "peer", None, status="unsupported: STDP needs groups=1 and dilation=1"
        )
    if next(layer.parameters()).dtype != torch.float32:
        return Contender(peer.label, "peer", None, status="not compared (float32 only here)")
    return _replayed(
        peer,
        layer,
        lambda source: peer.module.STDPLearner(
            "m" if step_mode == "multi" else "s", layer, source, **_SPIKINGJELLY_STDP
        ),
        pres,
        posts,
        lambda learner: learner.step(on_grad=True),
        warm,
    )


def _replayed(peer, layer, make_learner, pres, posts, step, warm, pick=lambda x: x) -> Contender:
    """A peer learner on ``layer`` fed through a :class:`Replay` source: ``setup`` runs the
    layer and the source on the next recorded step (their hooks record), ``step(learner)``
    is what is timed; ``pick`` maps a recorded step to what the learner takes."""
    source = Replay()
    learner = make_learner(source)
    index = [0]

    def setup() -> None:
        i = index[0] % len(pres)
        index[0] += 1
        with torch.no_grad():
            source.value = pick(posts[i])
            source(layer(pick(pres[i])))

    def fn() -> None:
        step(learner)

    for _ in range(warm):
        setup()
        fn()
    layer.weight.grad = None
    return Contender(peer.label, "peer", fn, setup)


def spikingjelly_mstdpet(
    config: Config, layer: nn.Linear, pres: list[Tensor], posts: list[Tensor], reward: float
) -> Contender:
    """SpikingJelly ``MSTDPETLearner`` (single step, unbatched ``[in]`` / ``[out]``, one
    scalar reward per step) on ``layer``; ``pres`` / ``posts`` are ``[1, ...]`` steps."""
    peer, missing = _peer_or_status("spikingjelly", config)
    if missing is not None:
        return missing
    return _replayed(
        peer,
        layer,
        lambda source: peer.module.MSTDPETLearner(
            "s", layer, source, tau_trace=TAU, **_SPIKINGJELLY_STDP
        ),
        pres,
        posts,
        lambda learner: learner.step(reward, on_grad=True),
        20,
        pick=lambda step: step[0],  # unbatched
    )


def bindsnet_stdp(
    config: Config,
    kind: str,
    pres: list[Tensor],
    posts: list[Tensor],
    traces_pre: list[Tensor],
    traces_post: list[Tensor],
    *,
    window: bool = False,
    weight_dependent: bool = False,
    **conv,
) -> Contender:
    """BindsNET ``PostPre`` on a ``Connection`` / ``Conv2dConnection`` / ``Conv3dConnection``.

    With ``weight_dependent``, ``WeightDependentPostPre`` on a dense ``Connection`` with
    weights in ``[0, 1]`` (soft bounds: LTP times ``wmax - w``, LTD times ``w - wmin``,
    then the clamp to the range).

    ``pres``/``posts`` are ``[B, ...]`` steps (or ``[T, B, ...]`` windows when
    ``window``), ``traces_*`` the matching traces BindsNET's nodes would hold.
    ``kind`` is ``"dense"``, ``"conv2d"`` or ``"conv3d"``; ``conv`` holds
    ``kernel_size``, ``padding`` and ``stride``.
    """
    peer, missing = _peer_or_status("bindsnet", config)
    if missing is not None:
        return missing
    if pres[0].dtype != torch.float32:
        return Contender(peer.label, "peer", None, status="not compared (float32 only here)")
    from bindsnet.learning import PostPre, WeightDependentPostPre
    from bindsnet.network.nodes import Input, LIFNodes
    from bindsnet.network.topology import Connection, Conv2dConnection, Conv3dConnection

    step_shape_pre = pres[0].shape[1:] if not window else pres[0].shape[2:]
    step_shape_post = posts[0].shape[1:] if not window else posts[0].shape[2:]
    batch = pres[0].shape[0] if not window else pres[0].shape[1]
    source = Input(shape=tuple(step_shape_pre), traces=True, tc_trace=TAU)
    target = LIFNodes(shape=tuple(step_shape_post), traces=True, tc_trace=TAU)
    source.set_batch_size(batch)
    target.set_batch_size(batch)
    device = pres[0].device
    source.to(device)
    target.to(device)
    common = dict(update_rule=PostPre, nu=(LR, LR), reduction=torch.sum)
    if weight_dependent:
        if kind != "dense":
            raise ValueError(f"weight_dependent is for kind='dense', got {kind!r}")
        common.update(update_rule=WeightDependentPostPre, wmin=0.0, wmax=1.0)
    if kind == "dense":
        connection = Connection(source, target, **common)
    elif kind == "conv2d":
        connection = Conv2dConnection(source, target, **conv, **common)
    elif kind == "conv3d":
        connection = Conv3dConnection(source, target, **conv, **common)
    else:
        raise ValueError(f"kind must be 'dense', 'conv2d' or 'conv3d', got {kind!r}")
    connection.to(device)
    index = [0]
    bool_pres = [p.bool() for p in pres]
    bool_posts = [p.bool() for p in posts]

    def set_step(i: int, t: int | None) -> None:
        pick = (lambda x: x) if t is None else (lambda x: x[t])
        source.s, target.s = pick(bool_pres[i]), pick(bool_posts[i])
        source.x, target.x = pick(traces_pre[i]), pick(traces_post[i])

    if not window:

        def setup() -> None:
            i = index[0] % len(pres)
            index[0] += 1
            set_step(i, None)

        def fn() -> None:
            connection.update(learning=True)

        return Contender(peer.label, "peer", fn, setup)

    def fn_window() -> None:
        i = index[0] % len(pres)
        index[0] += 1
        for t in range(pres[i].shape[0]):
            set_step(i, t)
            connection.update(learning=True)

    return Contender(peer.label + f" ({pres[0].shape[0]} updates)", "peer", fn_window)


def _inferno_layer(n_in: int, n_out: int, batch: int, **connection):
    """``Serial(LinearDense(n_in, n_out, dt=1, delta-current synapse, **connection), LIF)``
    with a default updater, as the inferno contenders time it."""
    from inferno.neural import LIF, DeltaCurrent, LinearDense, Serial

    dense = LinearDense(
        n_in,
        n_out,
        1.0,
        synapse=DeltaCurrent.partialconstructor(1.0),
        batch_size=batch,
        **connection,
    )
    dense.updater = dense.defaultupdater()
    neuron = LIF(
        n_out,
        1.0,
        rest_v=-65.0,
        reset_v=-65.0,
        thresh_v=-52.0,
        refrac_t=2.0,
        time_constant=20.0,
        batch_size=batch,
    )
    return Serial(dense, neuron)


def _attach(trainer, layer, device) -> None:
    """Register inferno ``layer``'s cell with ``trainer``, both on ``device``, training."""
    trainer.register_cell("layer", layer.cell)
    for module in (layer, trainer):
        module.to(device)
        module.train()


def inferno_stdp_dense(config: Config, pres: list[Tensor], n_out: int) -> Contender:
    """inferno ``STDP`` trainer on ``Serial(LinearDense, LIF)``: the update and its application."""
    peer, missing = _peer_or_status("inferno", config)
    if missing is not None:
        return missing
    if pres[0].dtype != torch.float32:
        return Contender(peer.label, "peer", None, status="not compared (float32 only here)")
    from inferno.learn import STDP as InfernoSTDP

    batch, n_in = pres[0].shape
    layer = _inferno_layer(n_in, n_out, batch, weight_init=lambda w: torch.rand_like(w) * 0.5)
    trainer = InfernoSTDP(LR, -LR, TAU, TAU, batch_reduction=torch.sum)
    _attach(trainer, layer, pres[0].device)
    index = [0]

    def setup() -> None:
        i = index[0] % len(pres)
        index[0] += 1
        with torch.no_grad():
            layer(pres[i])

    def fn() -> None:
        trainer()
        layer.cell.updater()

    for _ in range(2):
        setup()
        fn()
    return Contender(peer.label, "peer", fn, setup)


def inferno_delay_window(
    config: Config, pres: list[Tensor], n_out: int, max_delay: float, *, learn: str
) -> Contender:
    """inferno's delay-adjusted trainer over a window, one forward pass and update per step.

    ``learn`` is ``"weights"`` (``DelayAdjustedSTDP``) or ``"delays"``
    (``DelayAdjustedSTDPD``), on a ``Serial(LinearDense(delay=max_delay), LIF)`` layer
    with delays drawn uniformly from ``[0, max_delay]``; ``pres`` are ``[T, B, in]``.
    inferno evaluates its window on every synapse at every step, so its cost does not
    depend on how often the LIF neurons fire.
    """
    peer, missing = _peer_or_status("inferno", config)
    label = f"{peer.label} {'DelayAdjustedSTDP' if learn == 'weights' else 'DelayAdjustedSTDPD'}"
    if missing is not None:
        return Contender(label, "peer", None, status=missing.status)
    if pres[0].dtype != torch.float32:
        return Contender(label, "peer", None, status="not compared (float32 only here)")
    from inferno.learn import DelayAdjustedSTDP, DelayAdjustedSTDPD

    steps, batch, n_in = pres[0].shape
    generator = config.generator(7)
    layer = _inferno_layer(
        n_in,
        n_out,
        batch,
        delay=max_delay,
        weight_init=lambda w: torch.rand(w.shape, generator=generator).to(w) * 0.5,
        delay_init=lambda d: torch.rand(d.shape, generator=generator).to(d) * max_delay,
    )
    if learn == "weights":
        trainer = DelayAdjustedSTDP(LR, -LR, TAU, TAU, batch_reduction=torch.sum)
    else:
        trainer = DelayAdjustedSTDPD(-LR, LR, TAU, TAU, batch_reduction=torch.sum)
    _attach(trainer, layer, pres[0].device)
    index = [0]

    def fn() -> None:
        window = pres[index[0] % len(pres)]
        index[0] += 1
        for t in range(steps):
            with torch.no_grad():
                layer(window[t])
            trainer()
            layer.cell.updater()

    return Contender(label + f" ({steps} steps, forward included)", "peer", fn)


def bindsnet_diehl_cook_presenter(
    *,
    norm: float,
    intensity: float,
    theta_plus: float,
    time_steps: int = 250,
    n_neurons: int = 100,
    record: bool = False,
    device: torch.device | str = "cpu",
) -> Callable[[Tensor, bool], Tensor | None]:
    """``present(image, learn)`` for BindsNET's ``DiehlAndCook2015`` on 8x8 images.

    Poisson input at ``intensity`` Hz per unit pixel, one ``network.run`` of
    ``time_steps`` per image, learning when ``learn``; returns the excitatory
    spike count per neuron if ``record`` (a monitor), else ``None``. BindsNET must
    be loadable (:func:`~plastorch.bench.peers.load_peer`).
    """
    from bindsnet.encoding import poisson
    from bindsnet.models import DiehlAndCook2015
    from bindsnet.network.monitors import Monitor

    network = DiehlAndCook2015(
        n_inpt=64,
        n_neurons=n_neurons,
        exc=22.5,
        inh=17.5,
        dt=1.0,
        norm=norm,
        theta_plus=theta_plus,
        inpt_shape=(1, 8, 8),
        device=str(device),
    )
    monitor = None
    if record:
        monitor = Monitor(network.layers["Ae"], state_vars=["s"], time=time_steps)
        network.add_monitor(monitor, name="Ae_spikes")
    mode = [None]

    def present(image: Tensor, learn: bool) -> Tensor | None:
        if mode[0] is not learn:
            network.train(learn)
            mode[0] = learn
        spikes = poisson(datum=image.view(1, 8, 8) * intensity, time=time_steps, dt=1.0)
        network.run(inputs={"X": spikes.unsqueeze(1).to(device)}, time=time_steps)
        counts = None if monitor is None else monitor.get("s").sum(0).reshape(-1).float()
        network.reset_state_variables()
        return counts

    return present


def bindsnet_diehl_cook(config: Config, images: Tensor, steps: int) -> Contender:
    """BindsNET's ``DiehlAndCook2015`` model trained on one sample per ``network.run``."""
    peer, missing = _peer_or_status("bindsnet", config)
    if missing is not None:
        return missing
    present_image = bindsnet_diehl_cook_presenter(
        norm=6.4, intensity=63.75, theta_plus=0.05, time_steps=steps, device=images.device
    )
    cursor = [0]

    def present() -> None:
        present_image(images[cursor[0] % images.shape[0]], True)
        cursor[0] += 1

    return Contender(peer.label + ", batch 1", "peer", present, items_per_call=1)


def peer_rows(
    config: Config, builders: dict[str, Callable[[], Contender] | str]
) -> list[Contender]:
    """Contenders for every peer: built by ``builders[name]`` or a status row.

    A string in ``builders`` is the status of a peer that cannot run the case
    (e.g. ``"unsupported: ..."``); peers without an entry are "not benchmarked".
    """
    rows = []
    for name in ("spikingjelly", "bindsnet", "inferno"):
        builder = builders.get(name, "not benchmarked for this case")
        rows.append(_unavailable(name, builder) if isinstance(builder, str) else builder())
    return rows
