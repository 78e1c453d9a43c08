"""Speed and memory benchmarks: what they build and run, how they measure, how they report.

- ``models``: the sizes, the encoder of each benchmark row and the batch
- ``train_step``: a timed training step and its peak memory
- ``rtf``: inference real-time factor (encoder, full beam search, folded vs training form)
- ``report``: the markdown tables of train_step and rtf
- ``gpu``, ``gpu_report``: the paper-scale GPU measurements (fp32 / bf16) and their tables

The command lines are ``espnet_iml.bin.benchmark`` and ``espnet_iml.bin.gpu_benchmark``.
"""
