"""The headline comparisons on one CUDA GPU, in one run (``benchmarks/gpu.sh``).

Sections, each independent (a missing peer, model library or method gives rows
marked skipped with the reason, never a crash):

* ``kernels`` (:mod:`.kernels`): attribkit's gradient and CAM methods against their
  floors and against Captum / pytorch-grad-cam / TorchCAM on resnet50;
* ``attention`` (:mod:`.attention`): the attention family and AttnLRP on deit_small;
* ``lrp`` (:mod:`.lrp`): LRP against Zennit;
* ``pixel_flipping`` (:mod:`.pixel_flipping`): pixel flipping against Quantus;
* ``dataset`` (:mod:`.dataset`): ``explain_dataset`` throughput against the bare loop.

Sizes are in :mod:`.config`, the timing of one group in :mod:`.measure`, the
outputs in :mod:`.report`; :mod:`.run` is the command line.
"""
