"""Data-side tools of the espnet_iml recipes (Kaldi/ESPnet-style, without Kaldi).

Each job is one module, runnable as ``python -m espnet_iml.recipe.<module> --help``; the
command-line contract the stage driver (egs2/TEMPLATE/asr1/asr.sh) relies on is in
``espnet_iml/recipe/README.md``. Shared pieces: ``kvfile`` (Kaldi key-value files),
``common`` (errors, logging, stamps, process pools), ``audio`` (reading wav.scp entries).
"""
