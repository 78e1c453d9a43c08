"""python -m espnet_iml.bin.tokenize_text: espnet2.bin.tokenize_text without the nltk noise."""

from espnet_iml.bin.launch import launch

if __name__ == "__main__":
    launch("espnet2.bin.tokenize_text")
