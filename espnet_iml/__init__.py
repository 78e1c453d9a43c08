"""espnet_iml: IML-Spikeformer, a spiking Transformer encoder for ESPnet2.

Importing the package makes ``encoder: iml_spikeformer`` available to every ESPnet2 task
that takes a speech encoder (see espnet_iml.register). Importing it does not import ESPnet.
"""

from espnet_iml.register import NAME, install_import_hook

__version__ = "0.1.0"

install_import_hook()

__all__ = ["NAME", "__version__"]
