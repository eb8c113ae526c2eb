"""Layer-wise relevance propagation as gradient overrides: rules, composites, canonizers.

- :mod:`~attribkit.torch.lrp.rules`: the rules and the autograd functions applying them;
- :mod:`~attribkit.torch.lrp.composites`: which rule each layer type gets;
- :mod:`~attribkit.torch.lrp.canonizers`: BatchNorm merging, ResNet residual sums;
- :mod:`~attribkit.torch.lrp.transformer_rules`: the rules of AttnLRP and CP-LRP in
  gradient form (linear layers, products, LayerNorm/RMSNorm, activations; sums and the
  softmax keep their gradient);
- :mod:`~attribkit.torch.lrp.transformer_mode`: the call-scoped mode that routes a
  transformer's functional calls (attention, normalisation, sums) through them;
- :mod:`~attribkit.torch.lrp.engine`: the overrides for the duration of a call;
- :mod:`~attribkit.torch.lrp.kernel`: the ``lrp`` method.

Documentation: ``docs/lrp.md``.
"""
