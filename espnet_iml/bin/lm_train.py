"""python -m espnet_iml.bin.lm_train: espnet2.bin.lm_train, without nltk's download noise.

The LM needs nothing of ours; asr.sh runs it through the same launcher as the other ESPnet
programs so that its log and screen stay free of the offline nltk errors.
"""

from espnet_iml.bin.launch import launch

if __name__ == "__main__":
    launch("espnet2.bin.lm_train")
