"""python -m espnet_iml.bin.st_inference: espnet2.bin.st_inference with iml_spikeformer."""

from espnet_iml.bin.launch import launch

if __name__ == "__main__":
    launch("espnet2.bin.st_inference")
