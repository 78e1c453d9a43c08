"""python -m espnet_iml.bin.s2t_train: espnet2.bin.s2t_train with iml_spikeformer."""

from espnet_iml.bin.launch import launch

if __name__ == "__main__":
    launch("espnet2.bin.s2t_train")
