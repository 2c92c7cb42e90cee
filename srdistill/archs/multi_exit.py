"""The multi-exit architecture interface: what a network provides so that srdistill can train, evaluate, export,
run, ablate and benchmark its exits without knowing its layers.

A multi-exit network is a plain BasicSR network (its trunk of ``num_block`` residual blocks and its own upsampling
tail, same parameter names) with extra tails branched off intermediate blocks. :class:`MultiExitNet` is the mixin that
carries everything generic: the one-pass forward over all outputs, the trunk features, exit-gradient scaling, hint
adapters, the standalone network of each exit (built through BasicSR's ``ARCH_REGISTRY`` and loaded strictly), and
the parameter count of each exit. An architecture file (``*_arch.py`` in this folder) subclasses it together with the
BasicSR network and defines the few methods marked "architecture" below; ``docs/architecture.md`` lists them.
"""
import re
from collections import OrderedDict

import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

EXIT_HEADS = ('full', 'light')  # the network's own upsampling tail on every exit (the paper's), or a light one


def validate_exits(exits, num_block):
    """Check an ``exits`` list and return it as a tuple of ints.

    Args:
        exits (list[int] | tuple[int] | None): Depths (number of residual blocks, 1-based) after which an exit branches.
        num_block (int): Residual blocks in the trunk; the trunk's own output is the deepest exit and is not listed.

    Returns:
        tuple[int]: The exits, ascending.

    Raises:
        ValueError: If the list is not strictly ascending integers in ``[1, num_block - 1]``.
    """
    exits = tuple(exits or ())
    if any(isinstance(e, bool) or not isinstance(e, int) for e in exits):
        raise ValueError(f'exits must be a list of integers (block depths), got {list(exits)}.')
    if len(set(exits)) != len(exits):
        raise ValueError(f'exits must not repeat a depth, got {list(exits)}.')
    if list(exits) != sorted(exits):
        raise ValueError(f'exits must be in ascending order, got {list(exits)}.')
    bad = [e for e in exits if not 1 <= e < num_block]
    if bad:
        raise ValueError(f'exits must lie in [1, num_block - 1] = [1, {num_block - 1}] (the trunk output after block '
                         f'{num_block} is always the final exit), got {bad} in {list(exits)}.')
    return exits


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; the gradient is multiplied by ``scale`` on the way back."""

    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


def scale_grad(x, scale):
    """``x`` unchanged, its gradient times ``scale`` (no-op at 1)."""
    return x if scale == 1 else _ScaleGrad.apply(x, scale)


def _identity_conv1x1(num_feat):
    conv = nn.Conv2d(num_feat, num_feat, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(num_feat).view(num_feat, num_feat, 1, 1))
        conv.bias.zero_()
    return conv


def multi_exit_archs():
    """The registered multi-exit architectures: classes of ``ARCH_REGISTRY`` that subclass :class:`MultiExitNet` and
    can carry exits (a pruned network has the interface but one output: ``HAS_EXITS = False``)."""
    import srdistill.archs  # noqa: F401 (registers every *_arch.py)
    return {name: cls for name, cls in ARCH_REGISTRY
            if isinstance(cls, type) and issubclass(cls, MultiExitNet) and cls.HAS_EXITS}


def standalone_archs():
    """Registered networks that can read their own options from a state dict (``opt_from_state_dict``): the
    multi-exit architectures and the standalone exits that are not a BasicSR network (e.g. the light-head ones)."""
    import srdistill.archs  # noqa: F401
    return {name: cls for name, cls in ARCH_REGISTRY if isinstance(cls, type) and hasattr(cls, 'opt_from_state_dict')}


def network_opt_from_state_dict(state):
    """``network_g`` options (``type`` + arguments) of the registered network that ``state`` belongs to, or None.

    Each architecture recognises its own state dicts (:meth:`MultiExitNet.opt_from_state_dict`), including plain
    BasicSR ones (a multi-exit network with no exits) and its standalone exits.
    """
    for cls in standalone_archs().values():
        opt = cls.opt_from_state_dict(state)
        if opt is not None and _shapes_match(opt, state):
            return opt
    return None


def _shapes_match(opt, state):
    """Whether the tensors the network of ``opt`` shares with ``state`` have the same shapes: names alone do not tell
    an architecture from its pruned variant (same layer names, other widths). Missing or extra names are left to the
    checks after it (hint adapters) and to the strict load, which name them."""
    try:
        with torch.device('meta'):
            expected = build_network(opt).state_dict()
    except ValueError:  # options read from another architecture's shapes (e.g. a scale that is not one)
        return False
    return all(tuple(expected[k].shape) == tuple(state[k].shape) for k in expected.keys() & state.keys())


def trunk_options(state):
    """``num_in_ch``, ``num_feat`` and ``num_block`` of the trunk every multi-exit network has (``conv_first``, then
    residual blocks ``body.<i>`` with ``conv1``), read from a state dict; None when it has no such trunk."""
    if 'conv_first.weight' not in state:
        return None
    blocks = sorted({int(m.group(1)) for k in state if (m := re.match(r'body\.(\d+)\.conv1\.weight$', k))})
    if not blocks or blocks != list(range(len(blocks))):
        return None
    num_feat, num_in_ch = (int(s) for s in state['conv_first.weight'].shape[:2])
    return dict(num_in_ch=num_in_ch, num_feat=num_feat, num_block=len(blocks))


def exit_options(state):
    """The options every multi-exit state dict shows the same way: ``exits`` (from ``exit_tails.<k>``), and
    ``exit_head: light`` / ``hint_adapters: true`` when its tails are light heads / it has adapters."""
    opt = dict(exits=sorted({int(m.group(1)) for k in state if (m := re.match(r'exit_tails\.(\d+)\.', k))}))
    if any(re.match(r'exit_tails\.\d+\.conv\.weight$', k) for k in state):  # LightHead's only layer
        opt['exit_head'] = 'light'
    if any(k.startswith('hint_adapters.') for k in state):
        opt['hint_adapters'] = True
    return opt


def build_network(net_opt):
    """The network of ``net_opt`` (``{'type': ..., **arguments}``), through BasicSR's ``ARCH_REGISTRY``."""
    kwargs = {k: v for k, v in net_opt.items() if k != 'type'}
    return ARCH_REGISTRY.get(net_opt['type'])(**kwargs)


class MultiExitNet:
    """Mixin of a multi-exit network; subclass it first, then the BasicSR network (``class X(MultiExitNet, EDSR)``).

    Outputs are named by depth: the exit after block 8 is ``8``, the final output of a 32-block trunk is ``32``.

    The architecture's ``__init__`` builds the BasicSR network, then calls :meth:`init_exits`. It defines:

    - ``arch_opt`` (dict, set by :meth:`init_exits`): the arguments that rebuild it (meta copies, checkpoints);
    - :meth:`embed`, :meth:`final_output`, :meth:`make_exit_tail` and :meth:`exit_forward`: its forward pass in parts;
    - ``FINAL_TAIL`` (tuple[str]): parameter-name prefixes of its own upsampling tail;
    - ``LIGHT_TAIL`` (str): the light head's module name in its standalone light exit, unique to the architecture;
    - :meth:`exit_network_opt`: the standalone network of an exit (registry name and arguments);
    - :meth:`receptive_radius`: the receptive-field radius of an output, in LR pixels (exact tiles);
    - :meth:`opt_from_state_dict` (classmethod): its options read from a state dict, or None if not its own.

    The trunk is ``self.conv_first`` (plus whatever :meth:`embed` runs) and ``self.body`` (the residual blocks).
    """

    HAS_EXITS = True  # False: the interface without exits (one output, e.g. a pruned network)
    FINAL_TAIL = ()
    LIGHT_TAIL = 'tail'  # the light head's module name in the standalone exit (architectures tell theirs apart by it)

    def init_exits(self, num_feat, num_block, exits, upscale, exit_head='full', hint_adapters=False,
                   exit_grad_scale=1.0, **arch_opt):
        """Add the exit tails (and hint adapters) to the built BasicSR network and record ``arch_opt``.

        Args:
            num_feat (int): Trunk channels.
            num_block (int): Residual blocks in the trunk.
            exits (list[int]): Depths after which an extra exit branches (see :func:`validate_exits`).
            upscale (int): Scale.
            exit_head (str): ``'full'`` (the network's own upsampling tail on every exit) or ``'light'``.
            hint_adapters (bool): A learned 1x1 convolution per exit (``hint_adapters.<k>``, initialised to the
                identity) mapping its features onto the deepest ones, for a FitNets hint loss. Training only.
            exit_grad_scale (float): Multiplies the gradient an exit's tail sends back into the shared trunk; the
                tail's own gradient is unchanged. Training only: outputs are the same for any value.
            **arch_opt: The architecture's other arguments, recorded in ``arch_opt``.
        """
        if not isinstance(num_block, int) or isinstance(num_block, bool) or num_block < 1:
            raise ValueError(f'num_block must be a positive integer, got {num_block}.')
        if exit_head not in EXIT_HEADS:
            raise ValueError(f'exit_head must be one of {list(EXIT_HEADS)}, got {exit_head!r}.')
        if isinstance(exit_grad_scale, bool) or not isinstance(exit_grad_scale, (int, float)) or exit_grad_scale < 0:
            raise ValueError(f'exit_grad_scale must be a number >= 0, got {exit_grad_scale!r}.')
        exits = validate_exits(exits, num_block)
        self.num_feat, self.num_block, self.exits, self.upscale = num_feat, num_block, exits, upscale
        self.exit_head, self.exit_grad_scale = exit_head, float(exit_grad_scale)
        self.num_in_ch = self.conv_first.in_channels
        self.arch_opt = dict(arch_opt, num_feat=num_feat, num_block=num_block, exits=list(exits), upscale=upscale)
        if exit_head != 'full':
            self.arch_opt['exit_head'] = exit_head
        self.exit_tails = nn.ModuleDict({str(k): self.make_exit_tail() for k in exits})
        if hint_adapters:
            if not exits:
                raise ValueError('hint_adapters needs at least one exit (network_g.exits): they map exit features.')
            self.hint_adapters = nn.ModuleDict({str(k): _identity_conv1x1(num_feat) for k in exits})
            self.arch_opt['hint_adapters'] = True

    # ----------------------------------------------------------------------------------------- architecture
    def embed(self, x):
        """Architecture: the trunk before block 1. Returns ``(feat, ctx)``: the features block 1 reads and whatever
        the tails need besides the block's features (e.g. the input for a bilinear skip)."""
        raise NotImplementedError

    def final_output(self, feat, ctx):
        """Architecture: the network's own tail on the features after the last block: the final SR image."""
        raise NotImplementedError

    def make_exit_tail(self):
        """Architecture: a new exit tail (``self.exit_head`` says which), stored as ``exit_tails.<k>``."""
        raise NotImplementedError

    def exit_forward(self, tail, feat, ctx):
        """Architecture: the SR image of exit tail ``tail`` on the features ``feat`` after its block."""
        raise NotImplementedError

    def exit_network_opt(self, depth):
        """Architecture: ``{'type': registry name, **arguments}`` of the standalone network of output ``depth``."""
        raise NotImplementedError

    def receptive_radius(self, depth=None):
        """Architecture: the LR pixels on each side that an SR pixel of output ``depth`` (default: final) reads."""
        raise NotImplementedError

    @classmethod
    def opt_from_state_dict(cls, state):
        """Architecture: ``network_g`` options of the network ``state`` (a state dict) belongs to, or None when it is
        not one of this architecture's (its multi-exit networks, its plain BasicSR network, its standalone exits)."""
        raise NotImplementedError

    # ----------------------------------------------------------------------------------------- generic
    @property
    def depths(self):
        """tuple[int]: Depth of every output, ascending; the last is the final output (``num_block``)."""
        return self.exits + (self.num_block, )

    def _output(self, depth, feat, ctx):
        if depth == self.num_block:
            return self.final_output(feat, ctx)
        return self.exit_forward(self.exit_tails[str(depth)], scale_grad(feat, self.exit_grad_scale), ctx)

    def forward_with_features(self, x):
        """Every output from one pass of the trunk, and the trunk features they branch off.

        Returns:
            tuple[OrderedDict[int, Tensor], list[Tensor]]: ``{depth: SR image}`` as ``forward(x, exit='all')``, and
            the trunk features ``feats[d]`` after residual block ``d`` for ``d = 0..num_block`` (``feats[0]``: what
            block 1 reads), each (N, num_feat, H, W). Feature-level distillation losses read them.
        """
        outputs = OrderedDict()
        feat, ctx = self.embed(x)
        feats = [feat]
        for depth, block in enumerate(self.body, start=1):
            feat = block(feat)
            feats.append(feat)
            if depth in self.depths:
                outputs[depth] = self._output(depth, feat, ctx)
        return outputs, feats

    def forward(self, x, exit=None, return_features=False):  # noqa: A002 (``exit`` is the natural name here)
        """Run the network.

        Args:
            x (Tensor): LR input, (N, num_in_ch, H, W).
            exit (int | str | list[int] | None): ``None`` (default): the final output only; no exit tail runs.
                An int ``k`` (an exit depth or ``num_block``): that output only; only blocks 1..k run.
                ``'all'``: every output from one pass of the trunk. A list of depths: those outputs from one pass
                that stops at the deepest of them.
            return_features (bool): With ``exit='all'``, also return the trunk features (see
                :meth:`forward_with_features`; through ``forward`` so that DDP wrappers see the call).

        Returns:
            Tensor | OrderedDict[int, Tensor]: SR image(s), (N, num_out_ch, H * upscale, W * upscale); for ``'all'``
            (or a list) an ordered dict ``{depth: image}``, shallowest first.
        """
        if return_features:
            if exit != 'all':
                raise ValueError("return_features=True needs exit='all'.")
            return self.forward_with_features(x)
        if exit is None:
            wanted = (self.num_block, )
        elif exit == 'all':
            wanted = self.depths
        elif isinstance(exit, (list, tuple)) and exit and all(e in self.depths for e in exit):
            wanted = tuple(sorted(set(exit)))
        elif not isinstance(exit, (list, tuple)) and exit in self.depths:
            wanted = (exit, )
        else:
            raise ValueError(f"exit must be None, 'all', one of {list(self.depths)} or a list of them, got {exit!r}.")

        outputs = OrderedDict()
        feat, ctx = self.embed(x)
        for depth, block in enumerate(self.body, start=1):
            feat = block(feat)
            if depth in wanted:
                outputs[depth] = self._output(depth, feat, ctx)
                if depth == wanted[-1]:
                    break
        return outputs[wanted[0]] if exit is None or isinstance(exit, int) else outputs

    def exit_param_prefixes(self, depth):
        """Parameter-name prefixes of everything output ``depth`` runs: the trunk up to its block and its tail."""
        trunk = tuple(n.split('.')[0] + '.' for n, _ in self.named_parameters()
                      if not n.startswith(('body.', 'exit_tails.', 'hint_adapters.') + self.FINAL_TAIL))
        blocks = tuple(f'body.{i}.' for i in range(depth))
        tail = self.FINAL_TAIL if depth == self.num_block else (f'exit_tails.{depth}.', )
        return tuple(dict.fromkeys(trunk)) + blocks + tail

    def exit_parameters(self, depth):
        """Parameters used by the output at ``depth``."""
        prefixes = self.exit_param_prefixes(depth)
        return sum(p.numel() for n, p in self.named_parameters() if n.startswith(prefixes))

    def exit_state_dict(self, depth, state=None):
        """The standalone network's state dict of output ``depth`` (see :meth:`exit_network_opt`).

        Args:
            depth (int): An output (an exit, or ``num_block`` for the final one).
            state (dict | None): Weights of this network (e.g. a checkpoint's ``params_ema``). Default: its own.

        Returns:
            OrderedDict: Parameter name -> tensor, in the standalone network's names: the trunk keeps its names, an
            exit's ``exit_tails.<k>.<name>`` becomes the standalone tail's ``<name>`` (a full head: the network's own
            tail names; a light head: ``<LIGHT_TAIL>.<name>``).
        """
        state = self.state_dict() if state is None else state
        prefixes = self.exit_param_prefixes(depth)
        tail = f'exit_tails.{depth}.'
        rename = '' if self.exit_head == 'full' else self.LIGHT_TAIL + '.'
        return OrderedDict((rename + n[len(tail):] if n.startswith(tail) else n, v) for n, v in state.items()
                           if n.startswith(prefixes))

    def exit_network(self, depth, state=None):
        """Output ``depth`` as its standalone network (:meth:`exit_network_opt`), weights loaded strictly, eval mode.

        Its output equals ``self(x, exit=depth)`` (``tests/test_architecture.py`` checks it for every architecture).
        """
        net = build_network(self.exit_network_opt(depth))
        net.load_state_dict(self.exit_state_dict(depth, state), strict=True)
        return net.eval()

    def cut_state_dict(self, depth, state=None):
        """The weight-inherit baseline: the standalone network of depth ``depth`` with the full head, cut out of this
        (deeper) network: the trunk up to block ``depth`` and the *final* tail; exit tails and adapters are dropped.

        It inherits everything it can from the deep network, as a student that inherits the teacher's first layers
        does in CSD's experiments; the result loads into ``exit_network_opt(depth)`` of a full-head network.
        """
        state = self.state_dict() if state is None else state
        trunk = self.exit_param_prefixes(depth)[:-1]
        return OrderedDict((n, v) for n, v in state.items() if n.startswith(trunk + self.FINAL_TAIL))
