"""Run an espnet2.bin command with iml_spikeformer registered.

Every ``python -m espnet_iml.bin.<task>_<train|inference>`` is this, applied to
``espnet2.bin.<task>_<train|inference>``: all ESPnet arguments pass through unchanged.
Processes that ESPnet spawns for multi-GPU training re-import the entry module, which
imports espnet_iml first, so they register too.
"""

import io
import runpy
import sys

import espnet_iml  # noqa: F401  (installs the registration hook)


def quiet_nltk() -> None:
    # espnet2's text frontends ask nltk to download data at import; without a network
    # each attempt prints an error block that is noise for ASR users.
    try:
        import nltk
    except ImportError:
        return
    download = nltk.download

    def quiet_download(*args, **kwargs):
        kwargs.setdefault("quiet", True)
        kwargs.setdefault("print_error_to", io.StringIO())
        return download(*args, **kwargs)

    nltk.download = quiet_download


def launch(espnet_module: str) -> None:
    """Run ``espnet_module`` (e.g. "espnet2.bin.asr_train") as ``__main__`` with sys.argv."""
    quiet_nltk()
    sys.argv[0] = espnet_module
    runpy.run_module(espnet_module, run_name="__main__", alter_sys=False)
