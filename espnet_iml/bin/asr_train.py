"""python -m espnet_iml.bin.asr_train: espnet2.bin.asr_train with iml_spikeformer."""

from espnet_iml.bin.launch import launch

if __name__ == "__main__":
    launch("espnet2.bin.asr_train")
