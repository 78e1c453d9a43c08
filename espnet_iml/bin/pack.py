"""python -m espnet_iml.bin.pack: espnet2.bin.pack with iml_spikeformer registered."""

from espnet_iml.bin.launch import launch

if __name__ == "__main__":
    launch("espnet2.bin.pack")
