"""The multi-seed model comparison of local/compare.sh: collect each run's numbers
(espnet_iml.compare.collect) and report them as one markdown table and a plot
(espnet_iml.compare.report). The CLI is espnet_iml.bin.compare.
"""
